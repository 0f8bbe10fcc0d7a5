from __future__ import annotations

import secrets

from django.conf import settings
from django.db import models


def new_file_id() -> str:
    return "file-" + secrets.token_urlsafe(18)


class BatchFile(models.Model):
    """An uploaded file of batch requests (JSONL), checked line by line before it was accepted.

    It belongs to the person, so any of their keys sees it; `key` only records which one uploaded it.
    The bytes live in the "batch_files" storage (settings.STORAGES) under `object_name`.
    """

    class Purpose(models.TextChoices):
        BATCH = "batch", "Batch input"

    public_id = models.CharField(max_length=40, unique=True, default=new_file_id, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="batch_files")
    key = models.ForeignKey("apiaccess.ApiKey", on_delete=models.SET_NULL, null=True, blank=True,
                            related_name="batch_files", help_text="The key that uploaded it")
    purpose = models.CharField(max_length=20, choices=Purpose.choices, default=Purpose.BATCH)
    filename = models.CharField(max_length=255)
    bytes = models.BigIntegerField()
    line_count = models.PositiveIntegerField(help_text="Requests in the file (its non-empty lines)")
    created_at = models.DateTimeField(auto_now_add=True)
    object_name = models.CharField(max_length=500, help_text="Its name in the batch files storage")

    class Meta:
        ordering = ["-pk"]
        indexes = [models.Index(fields=["owner", "purpose"])]

    def __str__(self) -> str:
        return f"{self.public_id} ({self.filename})"
