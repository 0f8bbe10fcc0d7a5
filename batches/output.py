"""A batch's output and error files, written once every line has its result (or was expired or cancelled).

Both are JSONL in OpenAI's shape, one line per request, in the input file's order:
the output file holds the answers, `{"id", "custom_id", "response": {"status_code", "request_id", "body"},
"error": null}`; the error file holds the requests that failed (`response` with the error's status and
body), and those that never ran (`response: null`, `error: {"code": "batch_expired" | "batch_cancelled"}`).
A file with no lines is not written. The files and the batch's final status are recorded in one transaction.
"""

from __future__ import annotations

import json
import secrets
import tempfile
from typing import IO

from django.db import transaction
from django.utils import timezone

from batches import storage
from batches.models import Batch, BatchFile, BatchLine, new_file_id

NEVER_RAN = {
    BatchLine.Status.EXPIRED: {"code": "batch_expired",
                               "message": "This request could not be executed before the completion window expired."},
    BatchLine.Status.CANCELLED: {"code": "batch_cancelled",
                                 "message": "This request was not executed because the batch was cancelled."},
}
SPOOL_BYTES = 8 * 1024 * 1024


def output_line(line: BatchLine, never_ran: dict[str, dict]) -> dict:
    entry = {"id": "batch_req_" + secrets.token_hex(16), "custom_id": line.custom_id, "response": None, "error": None}
    if line.status in never_ran:
        entry["error"] = never_ran[line.status]
    else:
        entry["response"] = {"status_code": line.status_code, "request_id": line.request_id,
                             "body": json.loads(line.result)}
    return entry


def never_ran_errors(batch: Batch, final_status: str) -> dict[str, dict]:
    """What the error file says of the lines that never ran: a failed batch says why it failed."""
    if final_status != Batch.Status.FAILED or not batch.errors:
        return NEVER_RAN
    why = batch.errors["data"][0]["message"]
    return {**NEVER_RAN, BatchLine.Status.CANCELLED: {
        "code": "batch_failed", "message": f"This request was not executed because the batch failed: {why}"}}


def _write(batch: Batch, statuses: tuple[str, ...], kind: str, never_ran: dict[str, dict]) -> BatchFile | None:
    """Store the lines of `statuses` as a file of the batch's owner; None if there are none."""
    spool: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)
    count = 0
    lines = BatchLine.objects.filter(batch=batch, status__in=statuses).order_by("index")
    for line in lines.iterator(chunk_size=1000):
        spool.write(json.dumps(output_line(line, never_ran), ensure_ascii=False).encode("utf-8", "backslashreplace") + b"\n")
        count += 1
    if not count:
        return None
    file_id = new_file_id()
    size = spool.tell()
    name = storage.save_object(storage.object_name_for(batch.owner_id, file_id), spool)
    return BatchFile(public_id=file_id, owner_id=batch.owner_id, key_id=batch.key_id,
                     purpose=BatchFile.Purpose.BATCH_OUTPUT, filename=f"{batch.public_id}_{kind}.jsonl",
                     bytes=size, line_count=count, object_name=name)


def finish(batch: Batch, final_status: str) -> None:
    """Sync: write the output and error files and move the batch to its final status (completed,
    expired, cancelled or failed), with its timestamp."""
    batch.refresh_from_db(fields=["errors"])
    never_ran = never_ran_errors(batch, final_status)
    output = _write(batch, (BatchLine.Status.SUCCEEDED,), "output", never_ran)
    errors = _write(batch, (BatchLine.Status.FAILED, BatchLine.Status.EXPIRED, BatchLine.Status.CANCELLED), "error",
                    never_ran)
    written = [f for f in (output, errors) if f is not None]
    try:
        with transaction.atomic():
            for row in written:
                row.save()
            now = timezone.now()
            stamp = {Batch.Status.COMPLETED: "completed_at", Batch.Status.EXPIRED: "expired_at",
                     Batch.Status.CANCELLED: "cancelled_at", Batch.Status.FAILED: "failed_at"}[final_status]
            Batch.objects.filter(pk=batch.pk).update(status=final_status, output_file=output, error_file=errors,
                                                     **{stamp: now})
    except BaseException:
        for row in written:
            storage.delete_object(row.object_name)
        raise
