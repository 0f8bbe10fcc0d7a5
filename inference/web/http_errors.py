"""The one place the scheduler's errors (inference/scheduler/scheduling_errors.py) become API errors: the status,
OpenAI's error body (message, type, code) and the headers the SDKs act on (Retry-After, x-should-retry)
and ours (x-ratelimit-*, x-gatehouse-limit).

A view's are rendered by its decorator (inference/web/api.py `api_endpoint`), a stream's in the stream
(inference/streaming.py); a request's usage record takes the status and code from here too
(inference/accounting/usage.py).
"""

from __future__ import annotations

import math

from common.apierrors import ApiError
from inference.scheduler.scheduling_errors import (
    LimitExceeded,
    NodesUnreachable,
    NoNodeServing,
    QueueFull,
    QueueTimeout,
    SchedulingError,
    StoreUnavailable,
)

LIMIT_NAMES = {
    "requests_per_minute": "requests per minute (RPM)",
    "tokens_per_minute": "tokens per minute (TPM)",
    "concurrent_requests": "concurrent requests",
    "tokens_per_day": "tokens per day",
    "tokens_per_month": "tokens per month",
}


def to_api_error(error: SchedulingError) -> ApiError:
    api_error = _api_error(error)
    api_error.headers.update(error.limit_headers)
    return api_error


def _api_error(error: SchedulingError) -> ApiError:
    if isinstance(error, LimitExceeded):
        return limit_exceeded(error)
    if isinstance(error, QueueFull):
        return queue_full(error)
    if isinstance(error, QueueTimeout):
        api_error = ApiError.backend_unavailable(
            f"Your request waited {error.timeout_seconds} s in the queue for `{error.model}` without getting a "
            f"turn. Please retry later.",
            retry_after=30,
        ).with_code("queue_timeout")
        api_error.headers["x-gatehouse-queue-wait-ms"] = str(error.queue_wait_ms)
        return api_error
    if isinstance(error, NodesUnreachable):
        return ApiError.backend_unavailable(
            f"The GPU servers that serve `{error.model}` are not reachable right now. Please retry shortly.",
            retry_after=10,
        )
    if isinstance(error, NoNodeServing):
        return ApiError.backend_unavailable(
            f"No GPU server is serving `{error.model}` right now. Please retry shortly.", retry_after=10)
    if isinstance(error, StoreUnavailable):
        return ApiError.store_unavailable(
            f"Gatehouse cannot reach its {error.store} store (Redis) right now. Please retry shortly.")
    raise TypeError(f"no API error for {error!r}")


def queue_full(refusal: QueueFull) -> ApiError:
    retry_ms = max(1, refusal.retry_after_ms)
    seconds = -(-retry_ms // 1000)
    error = ApiError.backend_unavailable(
        f"The queue for `{refusal.model}` is full ({refusal.waiting} requests waiting). "
        f"Please retry after {seconds} s, or use another model.",
        retry_after=seconds,
    ).with_code("queue_full")
    # The OpenAI SDKs read retry-after-ms before Retry-After: the reservation to the millisecond.
    error.headers["retry-after-ms"] = str(retry_ms)
    error.headers["x-gatehouse-queue-depth"] = str(refusal.waiting)
    error.headers["x-gatehouse-queue-wait-ms"] = "0"
    return error


def _in_words(ms: int) -> str:
    seconds = math.ceil(ms / 1000)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 2 * 3600:
        return f"{math.ceil(seconds / 60)} min"
    if seconds < 2 * 86400:
        return f"{math.ceil(seconds / 3600)} h"
    return f"{math.ceil(seconds / 86400)} days"


def limit_exceeded(refusal: LimitExceeded) -> ApiError:
    """The 429 for a closed limit: which one, of whom, and when it opens again."""
    whose = "your API key" if refusal.scope == "key" else "your account"
    name, retry_ms = LIMIT_NAMES[refusal.limit], refusal.retry_after_ms
    message = (f"Rate limit reached for {whose} on {name}: limit {refusal.value}. "
               f"Please try again in {_in_words(retry_ms)}.")
    error = ApiError.rate_limited(message, retry_after=math.ceil(retry_ms / 1000))
    if refusal.is_quota:
        error.type = "insufficient_quota"
        error.code = "quota_exceeded"
        error.message = (f"You have used your quota of {refusal.value} {name} for {whose}; "
                         f"it resets in {_in_words(retry_ms)}.")
        # Hours away: the SDKs would retry at once and twice for nothing (openai-python `_should_retry`).
        error.headers["x-should-retry"] = "false"
    else:
        # Under an hour: the SDKs retry 429s and honour Retry-After, which is right for a per-minute limit.
        error.type = "tokens" if "tokens" in refusal.limit else "requests"
    error.headers["x-gatehouse-limit"] = f"{refusal.scope}:{refusal.limit}"
    return error
