"""What the scheduler refuses or fails with, in its own terms: which limit of whom, which model's queue,
which store, when to come back. The scheduler (the rate limiter, inference/accounting/ratelimit.py, and the queue,
inference/scheduler/slots.py) raises these and knows nothing of HTTP; inference/web/http_errors.py is the one module
that turns them into API errors (status, OpenAI's error body, Retry-After and the other headers), for
the view decorator and for streams.
"""

from __future__ import annotations

# Limits counted per UTC day or month: once one is used up it stays closed for hours.
QUOTAS = ("tokens_per_day", "tokens_per_month")


class SchedulingError(Exception):
    """A request the scheduler could not take, or lost; nothing of it ran.

    `limit_headers` are the limiter's x-ratelimit-* for the request, which every answer carries: a
    refusal's own, or those of the grant that admitted it (the pipeline adds them, inference/pipeline.py
    `Cleanup`).
    """

    limit_headers: dict[str, str]

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.limit_headers = {}


class StoreUnavailable(SchedulingError):
    """The scheduler's store (Redis) cannot be reached. Not the request's fault and over quickly:
    Redis calls give up within REDIS_SOCKET_TIMEOUT."""

    def __init__(self, store: str) -> None:
        super().__init__(f"the {store} store (Redis) cannot be reached")
        self.store = store  # what it holds, in words: "rate-limit", "queue"


class LimitExceeded(SchedulingError):
    """A limit of the key or of its person is closed: the request was refused before anything ran.

    `scope` is "key" or "person"; `limit` the limit's name (apiaccess/limits.py LIMIT_FIELDS) and
    `value` its value; `retry_after_ms` when it opens again. Its `limit_headers` are those of the scope
    closest to its limits (inference/accounting/ratelimit.py `rate_limit_headers`).
    """

    def __init__(self, scope: str, limit: str, value: int, retry_after_ms: int,
                 limit_headers: dict[str, str] | None = None) -> None:
        super().__init__(f"the {scope}'s {limit} limit ({value}) is reached; it opens in {retry_after_ms} ms")
        self.scope = scope
        self.limit = limit
        self.value = value
        self.retry_after_ms = retry_after_ms
        self.limit_headers = dict(limit_headers or {})

    @property
    def is_quota(self) -> bool:
        return self.limit in QUOTAS


class QueueFull(SchedulingError):
    """The model's queue has no room for all of the request's calls. `retry_after_ms` is a reservation:
    when the queue expects room for it."""

    def __init__(self, model: str, waiting: int, retry_after_ms: int) -> None:
        super().__init__(f"the queue for {model} is full ({waiting} waiting); room in {retry_after_ms} ms")
        self.model = model  # the public id
        self.waiting = waiting
        self.retry_after_ms = retry_after_ms


class QueueTimeout(SchedulingError):
    """A call waited `timeout_seconds` in the queue (QUEUE_TIMEOUT_SECONDS) without getting a slot."""

    def __init__(self, model: str, timeout_seconds: int, queue_wait_ms: int) -> None:
        super().__init__(f"no slot for {model} within {timeout_seconds} s")
        self.model = model
        self.timeout_seconds = timeout_seconds
        self.queue_wait_ms = queue_wait_ms


class NoNodeServing(SchedulingError):
    """No enabled node has the model."""

    def __init__(self, model: str) -> None:
        super().__init__(f"no node serves {model}")
        self.model = model


class NodesUnreachable(SchedulingError):
    """Nodes have the model, but none of them is up."""

    def __init__(self, model: str) -> None:
        super().__init__(f"no node that serves {model} is reachable")
        self.model = model
