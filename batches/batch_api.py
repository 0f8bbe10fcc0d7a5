"""The Batch API (/v1/batches), as the OpenAI SDKs call it: create, retrieve, list and cancel.

A batch runs the requests of one input file (batches/files.py), all against the one endpoint it names.
Creating it only records it: the feeder (batches/feeder.py, a Celery task) reads its lines and runs them
on slots nobody else wants. A person may have BATCH_MAX_ACTIVE_PER_PERSON batches that have not finished;
that cap is checked and the row written in one transaction holding a lock on the person's user row, like
the file quota, so two creations at once cannot both slip under it.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Annotated, Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from batches import files, validation
from batches.models import Batch, BatchFile
from common.apierrors import ApiError
from inference.caller import Caller
from inference.openai_api.schemas import parse_body

log = logging.getLogger(__name__)

COMPLETION_WINDOWS = {"24h": dt.timedelta(hours=24)}  # the one window OpenAI offers
METADATA_PAIRS, METADATA_KEY_CHARS, METADATA_VALUE_CHARS = 16, 64, 512
TIMESTAMPS = ("created_at", "in_progress_at", "expires_at", "finalizing_at", "completed_at", "failed_at",
              "expired_at", "cancelling_at", "cancelled_at")


def _epoch(moment: dt.datetime | None) -> int | None:
    return int(moment.timestamp()) if moment is not None else None


def batch_object(batch: Batch) -> dict[str, Any]:
    """OpenAI's Batch object. The output and error files are named once the batch has finished."""
    counts = {"total": batch.total_count, "completed": batch.completed_count, "failed": batch.failed_count}
    return {
        "id": batch.public_id, "object": "batch", "endpoint": batch.endpoint, "errors": batch.errors,
        "input_file_id": batch.input_file_public_id, "completion_window": batch.completion_window,
        "status": batch.status,
        "output_file_id": batch.output_file.public_id if batch.output_file_id else None,
        "error_file_id": batch.error_file.public_id if batch.error_file_id else None,
        **{name: _epoch(getattr(batch, name)) for name in TIMESTAMPS},
        "request_counts": counts, "metadata": batch.metadata,
        "usage": {"input_tokens": batch.input_tokens, "output_tokens": batch.output_tokens,
                  "total_tokens": batch.input_tokens + batch.output_tokens},
    }


def not_found(batch_id: str) -> ApiError:
    return ApiError.not_found(f"No such Batch object: {batch_id}").with_code("batch_not_found")


Key = Annotated[str, StringConstraints(max_length=METADATA_KEY_CHARS)]
Value = Annotated[str, StringConstraints(max_length=METADATA_VALUE_CHARS)]


class BatchCreateRequest(BaseModel):
    """POST /v1/batches's body (OpenAI's create batch). The endpoint and the window are checked after
    parsing, so their errors can list what is accepted."""

    model_config = ConfigDict(extra="ignore")
    input_file_id: str = Field(min_length=1)
    endpoint: str
    completion_window: str
    metadata: dict[Key, Value] | None = Field(default=None, max_length=METADATA_PAIRS)


def check_create(body: BatchCreateRequest) -> None:
    if body.endpoint not in validation.ENDPOINTS:
        raise ApiError.invalid_request(
            f"Invalid value for 'endpoint': {body.endpoint!r}. Expected one of {', '.join(validation.ENDPOINTS)}.",
            param="endpoint")
    if body.completion_window not in COMPLETION_WINDOWS:
        raise ApiError.invalid_request(
            f"Invalid value for 'completion_window': {body.completion_window!r}. Supported: "
            f"{', '.join(COMPLETION_WINDOWS)}.", param="completion_window")


def too_many_active(count: int) -> ApiError:
    cap = settings.BATCH_MAX_ACTIVE_PER_PERSON
    return ApiError(429, f"You have {count} batches that have not finished, and at most {cap} may run at once. "
                         "Wait for one to finish, or cancel one (POST /v1/batches/{batch_id}/cancel).",
                    type="rate_limit_exceeded", code="too_many_active_batches")


def record_batch(caller: Caller, input_file_id: str, endpoint: str, window: str,
                 metadata: dict[str, str] | None) -> Batch:
    """Sync: check the input file and the cap, and write the batch, in one transaction."""
    with transaction.atomic():
        get_user_model().objects.select_for_update().filter(pk=caller.user_id).exists()
        source = BatchFile.objects.filter(public_id=input_file_id, owner_id=caller.user_id).first()
        if source is None:
            raise files.not_found(input_file_id).with_param("input_file_id")
        if source.purpose != BatchFile.Purpose.BATCH:
            raise ApiError.invalid_request(f"The file {input_file_id} has purpose {source.purpose!r}; a batch "
                                           "needs a file uploaded with purpose 'batch'.", param="input_file_id")
        called = set(filter(None, source.endpoints.split(",")))
        if called - {endpoint}:
            raise ApiError.invalid_request(
                f"The file's lines call {', '.join(sorted(called))}, but the batch's endpoint is {endpoint}: every "
                "line's 'url' must be the batch's endpoint.", param="endpoint")
        active = Batch.objects.filter(owner_id=caller.user_id, status__in=Batch.ACTIVE).count()
        if active >= settings.BATCH_MAX_ACTIVE_PER_PERSON:
            raise too_many_active(active)
        now = timezone.now()
        batch = Batch.objects.create(
            owner_id=caller.user_id, key_id=caller.key_id, input_file=source, input_file_public_id=source.public_id,
            endpoint=endpoint, completion_window=window, metadata=metadata, total_count=source.line_count,
            expires_at=now + COMPLETION_WINDOWS[window])
        transaction.on_commit(wake_feeder)
        return batch


def wake_feeder() -> None:
    """Start the feeder now rather than at its next periodic start (it takes one batch or a hundred)."""
    from batches import tasks  # the Celery app is loaded only where batches are made

    try:
        tasks.feed_batches.apply_async(expires=settings.BATCH_FEED_SECONDS, retry=False)
    except Exception as exc:  # noqa: BLE001 - the batch is recorded; beat starts the feeder on its next round
        log.warning("could not start the batch feeder now (%s); beat will", exc)


async def create_batch(caller: Caller, raw: bytes) -> Batch:
    body = parse_body(BatchCreateRequest, raw)
    check_create(body)
    return await sync_to_async(record_batch)(caller, body.input_file_id, body.endpoint, body.completion_window,
                                             body.metadata)


def _owned(owner_id: int):
    return Batch.objects.filter(owner_id=owner_id).select_related("output_file", "error_file")


async def get_batch(caller: Caller, batch_id: str) -> Batch:
    batch = await _owned(caller.user_id).filter(public_id=batch_id).afirst()
    if batch is None:
        raise not_found(batch_id)
    return batch


def cancel(owner_id: int, batch_id: str) -> Batch:
    """Sync: ask the feeder to stop feeding the batch. Lines already running finish; the rest are cancelled
    and the batch ends `cancelled` (batches/feeder.py). Cancelling twice is not an error."""
    now = timezone.now()
    Batch.objects.filter(owner_id=owner_id, public_id=batch_id,
                         status__in=(Batch.Status.VALIDATING, Batch.Status.IN_PROGRESS)).update(
        status=Batch.Status.CANCELLING, cancelling_at=now)
    batch = _owned(owner_id).filter(public_id=batch_id).first()
    if batch is None:
        raise not_found(batch_id)
    if batch.status not in (Batch.Status.CANCELLING, Batch.Status.CANCELLED):
        raise ApiError(409, f"Cannot cancel a batch with status '{batch.status}'.", code="batch_not_cancellable")
    return batch


async def cancel_batch(caller: Caller, batch_id: str) -> Batch:
    return await sync_to_async(cancel)(caller.user_id, batch_id)


async def list_batches(caller: Caller, *, limit: str | None = None, after: str | None = None) -> dict[str, Any]:
    """The person's batches, newest first, a page of `limit` (default 20, as OpenAI's) after the batch `after`."""
    try:
        count = 20 if limit in (None, "") else int(limit)
    except ValueError:
        count = 0
    if not 1 <= count <= 100:
        raise ApiError.invalid_request(f"Invalid value for 'limit': {limit!r}. Expected an integer from 1 to 100.",
                                       param="limit")
    rows = _owned(caller.user_id)
    if after:
        anchor = await Batch.objects.filter(public_id=after, owner_id=caller.user_id).afirst()
        if anchor is None:
            raise ApiError.invalid_request(f"Invalid value for 'after': no batch {after!r}.", param="after")
        rows = rows.filter(pk__lt=anchor.pk)
    page = [row async for row in rows.order_by("-pk")[:count + 1]]
    data = [batch_object(row) for row in page[:count]]
    return {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None, "has_more": len(page) > count}
