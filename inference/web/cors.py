"""CORS for browser clients of the API (the OpenAI JS SDK with `dangerouslyAllowBrowser`).

Origins come from API_CORS_ALLOWED_ORIGINS, empty by default: no browser page on another site may
read API answers unless an admin allows its origin. A preflight (OPTIONS with
Access-Control-Request-Method) from an allowed origin gets 204 with what the SDK sends: the
Authorization header (a bearer key, never cookies, so no Allow-Credentials) and JSON. Any other
origin gets no CORS headers at all, so its browser refuses to hand over the answer.
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpResponse

ALLOWED_METHODS = "GET, POST, HEAD, OPTIONS"
# The OpenAI JS SDK sends these (x-stainless-* describe the SDK build and retry count).
ALLOWED_HEADERS = ("authorization, content-type, openai-organization, openai-project, openai-beta, "
                   "x-stainless-arch, x-stainless-lang, x-stainless-os, x-stainless-package-version, "
                   "x-stainless-retry-count, x-stainless-runtime, x-stainless-runtime-version, "
                   "x-stainless-timeout, x-stainless-helper-method, x-stainless-async, api-key, x-api-key")
EXPOSED_HEADERS = "x-request-id, retry-after, x-should-retry, x-gatehouse-queue-wait-ms"
PREFLIGHT_MAX_AGE = "600"


def allowed_origin(request) -> str | None:
    origin = request.headers.get("Origin")
    if origin and origin in settings.API_CORS_ALLOWED_ORIGINS:
        return origin
    return None


def preflight(request) -> HttpResponse | None:
    """The answer to a CORS preflight, or None when the request is not one."""
    if request.method != "OPTIONS" or "Access-Control-Request-Method" not in request.headers:
        return None
    response = HttpResponse(status=204)
    origin = allowed_origin(request)
    if origin is not None:
        response["Access-Control-Allow-Origin"] = origin
        response["Access-Control-Allow-Methods"] = ALLOWED_METHODS
        response["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
        response["Access-Control-Max-Age"] = PREFLIGHT_MAX_AGE
    response["Vary"] = "Origin"
    return response


def add_headers(request, response) -> None:
    origin = allowed_origin(request)
    if origin is not None:
        response["Access-Control-Allow-Origin"] = origin
        response["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
    if settings.API_CORS_ALLOWED_ORIGINS:
        response["Vary"] = "Origin"
