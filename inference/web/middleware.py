"""Middleware that is safe on the async hot path (portal/asgi.py explains why the API path avoids sync middleware): no ORM, no blocking I/O."""

from __future__ import annotations

import uuid

from django.core.exceptions import DisallowedHost

from common.apierrors import SERVER_ERROR, ApiError
from common.hybrid import HybridMiddleware
from inference.anthropic_api.errors import error_response as anthropic_error_response
from inference.anthropic_api.errors import is_anthropic_path
from inference.engines import node_errors as errors
from inference.web import cors
from inference.web.api import error_response, is_api_path, is_ollama_path, ollama_error_response


def new_request_id() -> str:
    return "req_" + uuid.uuid4().hex


def _as_api_error(request, response):
    """Framework error pages (404, 405, 500, even DEBUG's HTML ones) under /v1 and /api become JSON.

    OpenAI clients parse error bodies as JSON (Continue calls JSON.parse on 404 bodies), so an HTML
    page there is a second failure on top of the first.
    """
    if response.status_code < 400 or not is_api_path(request.path):
        return response
    if response.get("Content-Type", "").startswith("application/json"):
        return response
    status = response.status_code
    if status >= 500:
        error = ApiError(status, f"The server had an error processing your request (request id "
                         f"{request.request_id}).", type=SERVER_ERROR)
    elif status == 404:
        error = ApiError.not_found(f"Unknown request URL: {request.method} {request.path}.")
    else:
        error = ApiError(status, response.reason_phrase or "Request failed.")
    replacement = api_error_response(request, error)
    if response.has_header("Allow"):
        replacement["Allow"] = response["Allow"]
    return replacement


def api_error_response(request, error: ApiError):
    """The error in the shape of the API the path belongs to: Ollama's under /ollama, Anthropic's on its
    Messages API paths, OpenAI's elsewhere."""
    if is_anthropic_path(request.path):
        return anthropic_error_response(error)
    return ollama_error_response(error) if is_ollama_path(request.path) else error_response(error)


def host_error(request):
    """A JSON 400 for a Host not in ALLOWED_HOSTS, or None.

    Django checks the host only when something calls request.get_host(), which the API's lean stack
    (portal/asgi.py) never did: any Host reached the views. Links and snippets built from the host
    must not point at an attacker's name, and a server answering every name invites DNS rebinding.
    """
    if not is_api_path(request.path):
        return None  # portal pages: Django's own check (CommonMiddleware) answers with its 400 page
    try:
        request.get_host()
    except DisallowedHost:
        return api_error_response(request, ApiError(400, "Invalid Host header: this server does not answer to "
                                                    "that name.", code="invalid_host"))
    return None


class RequestIdMiddleware(HybridMiddleware):
    """Give every request an id, expose it as `request.request_id` and the `x-request-id` header,
    and make sure API error responses are OpenAI error objects.

    The OpenAI SDKs surface the header on errors (`APIStatusError.request_id`), so users can quote
    it in bug reports and we can find the request in our logs.
    """

    def __call__(self, request):
        if self.is_async:
            return self._acall(request)
        request.request_id = new_request_id()
        response = host_error(request) or _as_api_error(request, self.get_response(request))
        response["x-request-id"] = request.request_id
        return response

    async def _acall(self, request):
        request.request_id = new_request_id()
        errors.request_id.set(request.request_id)  # for messages built below the view (inference/engines/node_errors.py)
        response = host_error(request) or cors.preflight(request)
        if response is None:
            response = _as_api_error(request, await self.get_response(request))
        cors.add_headers(request, response)
        response["x-request-id"] = request.request_id
        return response
