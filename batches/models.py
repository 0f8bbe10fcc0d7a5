from __future__ import annotations

import secrets

from django.conf import settings
from django.db import models


def new_file_id() -> str:
    return "file-" + secrets.token_urlsafe(18)


def new_batch_id() -> str:
    return "batch_" + secrets.token_hex(16)


class BatchFile(models.Model):
    """An uploaded file of batch requests (JSONL), checked line by line before it was accepted, or a batch's
    output or error file.

    It belongs to the person, so any of their keys sees it; `key` only records which one uploaded it.
    The bytes live in the "batch_files" storage (settings.STORAGES) under `object_name`.
    """

    class Purpose(models.TextChoices):
        BATCH = "batch", "Batch input"
        BATCH_OUTPUT = "batch_output", "Batch output"

    public_id = models.CharField(max_length=40, unique=True, default=new_file_id, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="batch_files")
    key = models.ForeignKey("apiaccess.ApiKey", on_delete=models.SET_NULL, null=True, blank=True,
                            related_name="batch_files", help_text="The key that uploaded it")
    purpose = models.CharField(max_length=20, choices=Purpose.choices, default=Purpose.BATCH)
    filename = models.CharField(max_length=255)
    bytes = models.BigIntegerField()
    line_count = models.PositiveIntegerField(help_text="Requests in the file (its non-empty lines)")
    endpoints = models.CharField(max_length=200, blank=True, default="",
                                 help_text="The endpoints its lines call, comma-separated (input files)")
    created_at = models.DateTimeField(auto_now_add=True)
    object_name = models.CharField(max_length=500, help_text="Its name in the batch files storage")

    class Meta:
        ordering = ["-pk"]
        indexes = [models.Index(fields=["owner", "purpose"])]

    def __str__(self) -> str:
        return f"{self.public_id} ({self.filename})"


class Batch(models.Model):
    """A batch of requests from an input file, run on slots nobody else wants (batches/feeder.py).

    Its statuses and timestamps are OpenAI's Batch object's. `completed_count` and `failed_count` move in
    the same transaction as the line that finished, so `request_counts` never disagrees with the lines.
    """

    class Status(models.TextChoices):
        VALIDATING = "validating"
        IN_PROGRESS = "in_progress"
        FINALIZING = "finalizing"
        COMPLETED = "completed"
        FAILED = "failed"
        EXPIRED = "expired"
        CANCELLING = "cancelling"
        CANCELLED = "cancelled"

    ACTIVE = (Status.VALIDATING, Status.IN_PROGRESS, Status.FINALIZING, Status.CANCELLING)

    public_id = models.CharField(max_length=40, unique=True, default=new_batch_id, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="batches")
    key = models.ForeignKey("apiaccess.ApiKey", on_delete=models.SET_NULL, null=True, blank=True,
                            related_name="batches", help_text="The key its lines run as")
    input_file = models.ForeignKey(BatchFile, on_delete=models.SET_NULL, null=True, related_name="batches")
    input_file_public_id = models.CharField(max_length=40, help_text="Kept when the input file is deleted")
    endpoint = models.CharField(max_length=40)
    completion_window = models.CharField(max_length=10, default="24h")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.VALIDATING, db_index=True)
    metadata = models.JSONField(null=True, blank=True)
    errors = models.JSONField(null=True, blank=True, help_text="Why the batch failed, as OpenAI's errors list")
    total_count = models.PositiveIntegerField(default=0)
    completed_count = models.PositiveIntegerField(default=0)
    failed_count = models.PositiveIntegerField(default=0)
    input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    output_file = models.ForeignKey(BatchFile, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    error_file = models.ForeignKey(BatchFile, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    in_progress_at = models.DateTimeField(null=True, blank=True)
    finalizing_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)
    expired_at = models.DateTimeField(null=True, blank=True)
    cancelling_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-pk"]
        verbose_name_plural = "batches"
        indexes = [models.Index(fields=["owner", "status"])]

    def __str__(self) -> str:
        return self.public_id

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE


class BatchLine(models.Model):
    """One request of a batch and, once it ran, its answer. A line leaves PENDING exactly once, by a
    conditional update (batches/lines.py), so a line run again after a crash is never written twice."""

    class Status(models.TextChoices):
        PENDING = "pending"
        SUCCEEDED = "succeeded"  # a 2xx answer: the output file
        FAILED = "failed"  # an error answer: the error file
        EXPIRED = "expired"  # not run within the completion window
        CANCELLED = "cancelled"  # not run: the batch was cancelled

    batch = models.ForeignKey(Batch, on_delete=models.CASCADE, related_name="lines")
    index = models.PositiveIntegerField(help_text="Its place among the file's requests, from 0")
    custom_id = models.CharField(max_length=500)
    model = models.CharField(max_length=200)
    body = models.TextField(help_text="The request body, as JSON")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    request_id = models.CharField(max_length=60, blank=True, default="")
    result = models.TextField(blank=True, default="", help_text="The answer's body, or the error, as JSON")
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["batch", "index"]
        constraints = [models.UniqueConstraint(fields=["batch", "index"], name="batch_line_once"),
                       models.UniqueConstraint(fields=["batch", "custom_id"], name="batch_custom_id_once")]
        indexes = [models.Index(fields=["batch", "status", "index"])]

    def __str__(self) -> str:
        return f"{self.batch_id}:{self.custom_id}"
