"""A batch's lines: read from its input file into rows, run one at a time through the request pipeline,
and their answers recorded.

A line runs exactly as the same request sent to its endpoint would (inference/pipeline.py `serve`), as
the batch's key at batch priority: the same limits, queue, usage record and answer. What the scheduler
refused or could not place ran nowhere (scheduling_errors.py), so such a line is simply tried again
later (`Retry`); every other outcome, answer or error, is the line's result.

A line leaves PENDING once, by a conditional update in the transaction that also moves the batch's
counts: if a line is run again (its runner was killed before it recorded the answer, or two runners
overlapped), the second answer finds the line already recorded and is dropped.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from batches import storage, validation
from batches.models import Batch, BatchLine
from common.apierrors import ApiError
from inference import pipeline
from inference.caller import Caller
from inference.scheduler.scheduling_errors import (
    LimitExceeded,
    NodesUnreachable,
    NoNodeServing,
    QueueFull,
    QueueTimeout,
    SchedulingError,
    StoreUnavailable,
)

INSERT_CHUNK = 1000
# How long a line waits before it is tried again, by what kept it from running (seconds), when the
# refusal does not say itself (a limit or a full queue says when to come back).
RETRY_SECONDS = {QueueTimeout: 0.0, StoreUnavailable: 1.0, NodesUnreachable: 5.0, NoNodeServing: 15.0}
# A line turned away because its model had no room yet is routine (it waits behind interactive work):
# such an attempt writes no usage record, so a person's usage and the operators' 503 counts show what
# people sent, not how often the feeder knocked.
NO_ROOM = (QueueFull, QueueTimeout)


class Retry(Exception):
    """The line did not run (nothing of it reached a node): try it again after `seconds`. `scope` says
    what else waits as long: only this line (LINE), every line of its batch (BATCH: a limit of its key
    or person) or every batch line of its model (MODEL: the model's queue is full)."""

    LINE, BATCH, MODEL = "line", "batch", "model"

    def __init__(self, seconds: float, scope: str = LINE) -> None:
        super().__init__(f"retry in {seconds:.1f} s")
        self.seconds = seconds
        self.scope = scope


@dataclass(frozen=True)
class Outcome:
    status_code: int
    body: dict[str, Any]

    @property
    def succeeded(self) -> bool:
        return 200 <= self.status_code < 300

    def tokens(self) -> tuple[int, int]:
        usage = self.body.get("usage") if self.succeeded else None
        if not isinstance(usage, dict):
            return 0, 0
        prompt = usage.get("prompt_tokens", usage.get("input_tokens", 0)) or 0
        completion = usage.get("completion_tokens", usage.get("output_tokens", 0)) or 0
        return int(prompt), int(completion)


def load_lines(batch: Batch) -> int:
    """Sync: copy the input file's requests into the batch's lines (idempotent: a feeder killed halfway
    runs it again and the lines already written stay). Returns how many lines the batch has; OSError
    when the input file is gone (deleted since the batch was created)."""
    if batch.input_file is None:
        raise FileNotFoundError(batch.input_file_public_id)
    handle = storage.open_object(batch.input_file.object_name)
    rows: list[BatchLine] = []
    index = 0
    with handle:
        for number, raw in enumerate(handle, start=1):
            if number == 1 and raw.startswith(validation.BOM):
                raw = raw[len(validation.BOM):]
            if not raw.strip():
                continue
            request = json.loads(raw)
            body = request["body"]
            rows.append(BatchLine(batch=batch, index=index, custom_id=request["custom_id"],
                                  model=str(body.get("model", ""))[:200], body=json.dumps(body)))
            index += 1
            if len(rows) >= INSERT_CHUNK:
                BatchLine.objects.bulk_create(rows, ignore_conflicts=True)
                rows = []
    BatchLine.objects.bulk_create(rows, ignore_conflicts=True)
    return index


def retry_for(error: SchedulingError) -> Retry | None:
    if isinstance(error, LimitExceeded):
        return Retry(error.retry_after_ms / 1000, Retry.BATCH)
    if isinstance(error, QueueFull):
        return Retry(max(error.retry_after_ms / 1000, 0.05), Retry.MODEL)
    for kind, seconds in RETRY_SECONDS.items():
        if isinstance(error, kind):
            return Retry(seconds)
    return None


async def run_line(caller: Caller, endpoint: str, body: str) -> Outcome:
    """Run one line's request; its answer or error as the endpoint would give it. Raises Retry when it
    did not run."""
    from inference.web import http_errors  # the one place scheduling errors become API errors

    protocol = validation.PROTOCOLS[endpoint]
    try:
        response = await pipeline.serve(caller, protocol, lambda: body.encode("utf-8"), unrecorded=NO_ROOM)
    except ApiError as error:
        return Outcome(error.status, error.as_dict())
    except SchedulingError as error:
        retry = retry_for(error)
        if retry is not None:
            raise retry from None
        api_error = http_errors.to_api_error(error)
        return Outcome(api_error.status, api_error.as_dict())
    return Outcome(response.status_code, json.loads(response.content))


def record(line: BatchLine, outcome: Outcome) -> bool:
    """Sync: the line's result and the batch's counts, in one transaction; False if the line already
    had its result (it ran twice) and this one was dropped."""
    status = BatchLine.Status.SUCCEEDED if outcome.succeeded else BatchLine.Status.FAILED
    prompt_tokens, completion_tokens = outcome.tokens()
    with transaction.atomic():
        changed = BatchLine.objects.filter(pk=line.pk, status=BatchLine.Status.PENDING).update(
            status=status, status_code=outcome.status_code, request_id="req_" + secrets.token_hex(16),
            result=json.dumps(outcome.body, ensure_ascii=False), finished_at=timezone.now())
        if changed:
            counter = "completed_count" if outcome.succeeded else "failed_count"
            Batch.objects.filter(pk=line.batch_id).update(**{counter: F(counter) + 1},
                                                          input_tokens=F("input_tokens") + prompt_tokens,
                                                          output_tokens=F("output_tokens") + completion_tokens)
    return bool(changed)


def close_pending(batch: Batch, status: str) -> int:
    """Sync: every line not yet run becomes `status` (expired or cancelled) and counts as failed, so the
    counts add up to the total (also for a batch cancelled before its lines were read)."""
    with transaction.atomic():
        closed = BatchLine.objects.filter(batch=batch, status=BatchLine.Status.PENDING).update(
            status=status, finished_at=timezone.now())
        Batch.objects.filter(pk=batch.pk).update(failed_count=F("total_count") - F("completed_count"))
    return closed
