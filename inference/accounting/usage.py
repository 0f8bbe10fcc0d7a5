"""One usage record per API request, written off the hot path to a Redis stream.

When a request ends (answered, refused, failed, or abandoned by its client) the outbox
(inference/accounting/outbox.py) adds one entry to a usage stream (`gh:{usage:<shard>}:stream`), retrying until Redis takes it,
so a busy pool or a Redis restart delays records but loses none. The same script adds to the counters
behind /metrics (inference/accounting/telemetry.py), once: a retry whose first attempt did land adds nothing. A Celery task (usage/drain.py) moves entries into the database
in batches through a consumer group, so nothing is lost while no worker runs: entries wait in the
stream, and an entry is deleted only once its row is committed.

The record's fields are strings (a stream entry is a flat hash): see `UsageLog.fields`.
"""

from __future__ import annotations

import json
import logging
import time
import uuid

from django.conf import settings

from common.apierrors import ApiError
from common.store import keys, scripts
from common.store.client import redis_client
from inference.accounting import outbox, telemetry
from inference.accounting.metering import RequestMeter
from inference.caller import Caller
from inference.scheduler.scheduling_errors import SchedulingError
from inference.web import http_errors

log = logging.getLogger(__name__)

DISCONNECTED = 499  # nginx's status for "the client closed the request"

# Why a request did not get an answer, for the staff pages' "rejections by reason".
OK = "ok"
RATE_LIMITED = "rate_limited"
QUOTA = "quota"
QUEUE_FULL = "queue_full"
TIMEOUT = "timeout"
BACKEND_ERROR = "backend_error"
INVALID = "invalid_request"
CLIENT_LEFT = "disconnected"


def reason_for(error: BaseException) -> tuple[int, str]:
    """(status, reason) of a request that ended with `error`."""
    if isinstance(error, SchedulingError):
        error = http_errors.to_api_error(error)  # the status and code its client got
    if not isinstance(error, ApiError):
        return 500, BACKEND_ERROR
    by_code = {"rate_limit_exceeded": RATE_LIMITED, "quota_exceeded": QUOTA, "queue_full": QUEUE_FULL,
               "queue_timeout": TIMEOUT}
    if error.code in by_code:
        return error.status, by_code[error.code]
    return error.status, BACKEND_ERROR if error.status >= 500 else INVALID


class UsageLog:
    """Collects what one request did and writes its record once, when it ends."""

    def __init__(self, caller: Caller, model: str, *, streamed: bool, meter: RequestMeter) -> None:
        self.caller = caller
        self.model = model
        self.streamed = streamed
        self.meter = meter
        self.at = time.time()
        self.started = time.monotonic()
        self.queue_wait_ms = 0
        self.written = False

    def fields(self, status: int, reason: str, disconnected: bool) -> dict[str, str]:
        first = self.meter.first_part_at
        return {
            "at": f"{self.at:.3f}",
            "user": str(self.caller.user_id),
            "key": str(self.caller.key_id),
            "model": self.model,
            "node": self.meter.node,
            "status": str(status),
            "reason": reason,
            "prompt_tokens": str(self.meter.prompt_tokens),
            "completion_tokens": str(self.meter.completion_tokens),
            "queue_wait_ms": str(self.queue_wait_ms),
            "ttft_ms": "" if first is None else str(int((first - self.started) * 1000)),
            "duration_ms": str(int((time.monotonic() - self.started) * 1000)),
            "gpu_seconds": f"{self.meter.gpu_seconds:.6f}",
            "priority": "batch" if self.caller.is_batch else "interactive",
            "streamed": "1" if self.streamed else "0",
            "disconnected": "1" if disconnected else "0",
        }

    def finish(self, error: BaseException | None = None, *, disconnected: bool = False) -> None:
        """Write the record (once) in the background; the response never waits for it."""
        if self.written or not settings.USAGE_RECORDS_ENABLED:
            return
        self.written = True
        if disconnected:
            status, reason = DISCONNECTED, CLIENT_LEFT
        elif error is not None:
            status, reason = reason_for(error)
        else:
            status, reason = 200, OK
        write_record(self.fields(status, reason, disconnected))


def write_record(fields: dict[str, str]) -> None:
    """Hand one usage record to the outbox, which writes it once, whenever Redis takes it."""
    record_id = uuid.uuid4().hex
    outbox.put(f"usage record {record_id}", lambda: _write(record_id, fields))


class _Commands:
    """Collects the counter updates telemetry makes on a pipeline, for the write script to replay."""

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.commands: list[list] = []

    def _add(self, name: str, key: str, *args: object) -> None:
        if key not in self.keys:
            self.keys.append(key)
        self.commands.append([name, 3 + self.keys.index(key), *(str(a) for a in args)])

    def hincrby(self, key: str, field: str, amount: int = 1) -> None:
        self._add("HINCRBY", key, field, amount)

    def hincrbyfloat(self, key: str, field: str, amount: float) -> None:
        self._add("HINCRBYFLOAT", key, field, repr(float(amount)))

    def expire(self, key: str, seconds: int) -> None:
        self._add("EXPIRE", key, seconds)


MARKER_TTL_MS = 3_600_000


async def _write(record_id: str, fields: dict[str, str]) -> None:
    """The record and the /metrics counters, in one script: both land, or neither, and only once."""
    script = scripts.get(redis_client(), "usage_write")
    shard = keys.usage_shard(record_id)
    commands = _Commands()
    telemetry.add_request(commands, shard, fields)
    flat = [value for pair in fields.items() for value in pair]
    # Trimmed only far beyond what a stopped worker leaves behind in a day or two, so a worker
    # that never comes back cannot fill Redis's memory.
    args = [MARKER_TTL_MS, settings.USAGE_STREAM_MAX_LENGTH, len(flat), *flat, json.dumps(commands.commands)]
    await script(keys=[keys.usage_written(shard, record_id), keys.usage_stream(shard), *commands.keys], args=args)
