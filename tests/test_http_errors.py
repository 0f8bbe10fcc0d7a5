"""The scheduler's errors as the API answers them (inference/web/http_errors.py): status, OpenAI's code, and
the headers the SDKs act on. The limiter's refusals are checked against Redis in tests/test_ratelimit.py."""

from __future__ import annotations

from inference.scheduler.scheduling_errors import (
    NodesUnreachable,
    NoNodeServing,
    QueueFull,
    QueueTimeout,
    StoreUnavailable,
)
from inference.web.http_errors import to_api_error


def test_a_full_queue_is_a_503_that_says_when_to_come_back_to_the_millisecond():
    error = to_api_error(QueueFull("chat:7b", waiting=8, retry_after_ms=1500))
    assert (error.status, error.code, error.type) == (503, "queue_full", "server_error")
    assert "`chat:7b` is full (8 requests waiting)" in error.message
    assert error.headers == {"Retry-After": "2", "retry-after-ms": "1500", "x-gatehouse-queue-depth": "8",
                             "x-gatehouse-queue-wait-ms": "0"}


def test_a_queue_timeout_says_how_long_it_waited():
    error = to_api_error(QueueTimeout("chat:7b", timeout_seconds=300, queue_wait_ms=300_012))
    assert (error.status, error.code) == (503, "queue_timeout")
    assert "waited 300 s in the queue for `chat:7b`" in error.message
    assert error.headers == {"Retry-After": "30", "x-gatehouse-queue-wait-ms": "300012"}


def test_no_node_and_unreachable_nodes_are_503s_with_a_short_retry():
    for refusal in (NoNodeServing("chat:7b"), NodesUnreachable("chat:7b")):
        error = to_api_error(refusal)
        assert error.status == 503 and "`chat:7b`" in error.message
        assert error.headers == {"Retry-After": "10"}


def test_an_unreachable_store_is_a_503_naming_it():
    error = to_api_error(StoreUnavailable("queue"))
    assert (error.status, error.code) == (503, "service_unavailable")
    assert "its queue store (Redis)" in error.message
    assert error.headers == {"Retry-After": "2"}


def test_the_limiters_headers_come_along_with_any_of_them():
    refusal = QueueFull("chat:7b", waiting=1, retry_after_ms=10)
    refusal.limit_headers.update({"x-ratelimit-limit-requests": "60"})  # the pipeline adds a grant's
    assert to_api_error(refusal).headers["x-ratelimit-limit-requests"] == "60"
