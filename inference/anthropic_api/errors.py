"""Errors in Anthropic's shape: `{"type": "error", "error": {"type", "message"}, "request_id"}`.

Gatehouse raises OpenAI-shaped `ApiError`s and the scheduler's domain errors everywhere below the views
(inference/web/http_errors.py makes the latter ApiErrors); the Messages routes answer them in Anthropic's
words, keeping the message and the headers (Retry-After, retry-after-ms, x-should-retry, x-ratelimit-*),
which the `anthropic` SDKs read as the OpenAI ones do. Statuses follow Anthropic's list: a full queue or a
model no server can serve right now (our 503) is its 529 `overloaded_error`, which Claude Code retries
with backoff; a model server's failure (our 502) stays 502, an `api_error`.
"""

from __future__ import annotations

import logging

from django.http import HttpResponse

from common.apierrors import ApiError
from inference.engines.node_errors import request_id
from inference.scheduler.scheduling_errors import SchedulingError
from inference.web import http_errors
from inference.web.api import api_endpoint, json_response

log = logging.getLogger(__name__)

OVERLOADED = 529
# Anthropic's error types by status; other 4xx are `invalid_request_error`, other 5xx `api_error`.
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    OVERLOADED: "overloaded_error",
}
ANTHROPIC_PATHS = ("/v1/messages", "/api/messages")


def is_anthropic_path(path: str) -> bool:
    return path.startswith(ANTHROPIC_PATHS)


def status_of(error: ApiError) -> int:
    return OVERLOADED if error.status == 503 else error.status


def error_body(status: int, message: str) -> dict:
    kind = ERROR_TYPES.get(status) or ("api_error" if status >= 500 else "invalid_request_error")
    return {"type": "error", "error": {"type": kind, "message": message}, "request_id": request_id.get()}


def as_api_error(error: ApiError | SchedulingError) -> ApiError:
    return http_errors.to_api_error(error) if isinstance(error, SchedulingError) else error


def error_response(error: ApiError) -> HttpResponse:
    status = status_of(error)
    return json_response(error_body(status, error.message), status=status, headers=error.headers)


def event_body(error: ApiError) -> dict:
    """The data of an `error` event, for a failure after the stream started (its status line is sent)."""
    return error_body(status_of(error), error.message)


def anthropic_endpoint(*methods: str):
    """Wrap an async Messages API view (inference/web/api.py `api_endpoint`), answering every error in
    Anthropic's shape."""
    return api_endpoint(*methods, render=lambda request, error: error_response(error))
