"""What the portal's Batches page shows of a person's batches (batches/portal_views.py renders it).

Plain functions over the ORM, sync: the page is a portal page, not the API's hot path.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from apiaccess import connect
from apiaccess.access import usable_models
from batches.models import Batch, BatchFile

# The page lists this many, newest first; the API's list (client.batches.list()) pages through the rest.
SHOWN = 50

Status = Batch.Status
# (words, badge tone, a line on what it means for the person when the word alone does not say it)
STATUS_WORDS = {
    Status.VALIDATING: ("Validating", "running", "Waiting to start"),
    Status.IN_PROGRESS: ("In progress", "running", ""),
    Status.FINALIZING: ("Finalizing", "running", "Writing the output files"),
    Status.COMPLETED: ("Completed", "done", ""),
    Status.FAILED: ("Failed", "failed", ""),
    Status.EXPIRED: ("Expired", "failed", "Not finished within its completion window"),
    Status.CANCELLING: ("Cancelling", "stopped", "Requests already running finish; the rest do not run"),
    Status.CANCELLED: ("Cancelled", "stopped", ""),
}
CANCELLABLE = (Status.VALIDATING, Status.IN_PROGRESS)  # as batch_api.cancel accepts


@dataclass(frozen=True)
class Download:
    kind: str  # "input", "output" or "errors": the link's words
    file: BatchFile


@dataclass(frozen=True)
class BatchRow:
    batch: Batch
    status: str
    tone: str
    hint: str
    done: int  # answered(batch), the progress bar's value
    counts: str
    downloads: list[Download]
    cancellable: bool
    error: str  # why a failed batch failed, as its errors list says

    @property
    def active(self) -> bool:
        return self.batch.is_active


def answered(batch: Batch) -> int:
    """Requests done: failed ones too, as their answers are in the error file."""
    return batch.completed_count + batch.failed_count


def counts_text(batch: Batch) -> str:
    """The counts in words, as in "120 of 10,000 done, 3 failed"."""
    text = f"{answered(batch):,} of {batch.total_count:,} done"
    return f"{text}, {batch.failed_count:,} failed" if batch.failed_count else text


def first_error(batch: Batch) -> str:
    entries = (batch.errors or {}).get("data") or []
    return entries[0].get("message", "") if entries else ""


def downloads(batch: Batch) -> list[Download]:
    """The input file while it is kept; the output and error files once the batch has finished (only then
    are they written, and a file the batch named may since have been deleted)."""
    found = [Download("input", batch.input_file)] if batch.input_file else []
    if not batch.is_active:
        found += [Download(kind, row) for kind, row in (("output", batch.output_file), ("errors", batch.error_file))
                  if row is not None]
    return found


def batch_row(batch: Batch) -> BatchRow:
    words, tone, hint = STATUS_WORDS[batch.status]
    return BatchRow(batch=batch, status=words, tone=tone, hint=hint, done=answered(batch),
                    counts=counts_text(batch), downloads=downloads(batch), cancellable=batch.status in CANCELLABLE,
                    error=first_error(batch) if batch.status == Status.FAILED else "")


def batch_rows(owner_id: int) -> tuple[list[BatchRow], int]:
    """The person's newest batches, and how many they have in all."""
    batches = Batch.objects.filter(owner_id=owner_id)
    shown = batches.select_related("input_file", "output_file", "error_file").order_by("-pk")[:SHOWN]
    return [batch_row(batch) for batch in shown], batches.count()


def example_line(user) -> str:
    """One line of a requests.jsonl, for the page's how-to: a chat request to a model the person may use."""
    model = connect.pick_models(usable_models(user)).chat or "MODEL"
    return json.dumps({"custom_id": "request-1", "method": "POST", "url": "/v1/chat/completions",
                       "body": {"model": model, "messages": [{"role": "user", "content": "Hello!"}]}})
