"""Plumbing shared by the OpenAI-compatible views: method checks, body limits, JSON and error responses."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpResponse
from django.views.decorators.csrf import csrf_exempt

from common.apierrors import ApiError
from inference.scheduler.scheduling_errors import SchedulingError
from inference.web import http_errors

log = logging.getLogger(__name__)

API_PREFIXES = ("/v1/", "/api/", "/ollama/")
OLLAMA_PREFIX = "/ollama/"  # Ollama's native API (inference/ollama_api): its errors are {"error": "..."}


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> HttpResponse:
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    # backslashreplace: text echoed from a client could hold a lone surrogate, which UTF-8 cannot carry;
    # "\ud800" written out is still valid JSON, where a failed encode would be a 500.
    return HttpResponse(body.encode("utf-8", "backslashreplace"), status=status, headers=headers,
                        content_type="application/json")


def error_response(error: ApiError) -> HttpResponse:
    return json_response(error.as_dict(), status=error.status, headers=error.headers)


def ollama_error_response(error: ApiError) -> HttpResponse:
    """An error in Ollama's shape: ollama-python takes `error` as the message, other shapes as raw text."""
    return json_response({"error": error.message}, status=error.status, headers=error.headers)


def is_ollama_path(path: str) -> bool:
    return path.startswith(OLLAMA_PREFIX) or path == "/ollama"


def is_api_path(path: str) -> bool:
    return path.startswith(API_PREFIXES) or path in ("/v1", "/api", "/ollama")


def read_body(request) -> bytes:
    declared = request.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > settings.MAX_REQUEST_BODY_BYTES:
        raise ApiError.payload_too_large(settings.MAX_REQUEST_BODY_BYTES)
    try:
        body = request.body
    except RequestDataTooBig:
        raise ApiError.payload_too_large(settings.MAX_REQUEST_BODY_BYTES) from None
    if len(body) > settings.MAX_REQUEST_BODY_BYTES:
        raise ApiError.payload_too_large(settings.MAX_REQUEST_BODY_BYTES)
    return body


def _openai_error(request, error: ApiError) -> HttpResponse:
    return error_response(error)


def api_endpoint(*methods: str, render: Callable[[Any, ApiError], HttpResponse] = _openai_error):
    """Wrap an async API view: reject other methods with a 405, and answer ApiErrors and the scheduler's
    errors (made API errors by inference/web/http_errors.py) with `render(request, error)`: OpenAI's
    shape by default; the Anthropic and Ollama front protocols pass their own.

    Anything unexpected becomes a 500 that inference/web/middleware.py answers as JSON in the path's
    shape, never an HTML page.
    """

    # HEAD is GET without the body (RFC 9110 9.3.2); the server drops the body of a HEAD answer.
    allowed = (*methods, "HEAD") if "GET" in methods else methods

    def decorator(view):
        @csrf_exempt  # key-authenticated API: no cookies, so no CSRF
        @functools.wraps(view)
        async def wrapper(request, *args, **kwargs):
            if request.method not in allowed:
                return render(request, ApiError.method_not_allowed(request.method, request.path, allowed))
            try:
                return await view(request, *args, **kwargs)
            except ApiError as error:
                return render(request, error)
            except SchedulingError as error:
                return render(request, http_errors.to_api_error(error))

        return wrapper

    return decorator


@csrf_exempt
def missing_v1_prefix(request, *args, **kwargs) -> HttpResponse:
    """An OpenAI route called without /v1: say how to fix the base URL (Continue shows this text)."""
    message = (f"Unknown request URL: {request.method} {request.path}. The API base URL must end in /v1, "
               f"e.g. {request.scheme}://{request.get_host()}/v1{request.path}.")
    return error_response(ApiError.not_found(message))
