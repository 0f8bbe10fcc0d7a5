"""What every API request used, one row per request, drained from Redis (usage/drain.py)."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class UsageRecord(models.Model):
    class Reason(models.TextChoices):
        OK = "ok", "Answered"
        RATE_LIMITED = "rate_limited", "Rate limited"
        QUOTA = "quota", "Quota exceeded"
        QUEUE_FULL = "queue_full", "Queue full"
        TIMEOUT = "timeout", "Queue timeout"
        BACKEND_ERROR = "backend_error", "Backend error"
        INVALID = "invalid_request", "Invalid request"
        DISCONNECTED = "disconnected", "Client disconnected"

    # The Redis stream entry id: a redelivered entry (a worker died before acknowledging it) is
    # skipped by the unique constraint instead of being counted twice.
    stream_id = models.CharField(max_length=40, unique=True, editable=False)
    at = models.DateTimeField(db_index=True, help_text="When the request arrived")
    # No database constraint: a person or key deleted before their last records are drained must not
    # make the whole batch fail.
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                             db_constraint=False, related_name="+")
    key = models.ForeignKey("apiaccess.ApiKey", on_delete=models.SET_NULL, null=True, blank=True,
                            db_constraint=False, related_name="+")
    model = models.CharField(max_length=200, db_index=True)
    node = models.CharField(max_length=500, blank=True)
    status = models.PositiveSmallIntegerField()
    reason = models.CharField(max_length=20, choices=Reason.choices, db_index=True)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    queue_wait_ms = models.PositiveIntegerField(default=0)
    ttft_ms = models.PositiveIntegerField(null=True, blank=True, help_text="Time to first token")
    duration_ms = models.PositiveIntegerField(default=0)
    gpu_seconds = models.FloatField(default=0, help_text="Ollama's load + prompt evaluation + generation time")
    priority = models.CharField(max_length=20, default="interactive")
    streamed = models.BooleanField(default=False)
    disconnected = models.BooleanField(default=False)

    class Meta:
        ordering = ["-at", "-pk"]
        indexes = [models.Index(fields=["user", "at"]), models.Index(fields=["model", "at"])]

    def __str__(self) -> str:
        return f"{self.model} {self.reason} at {self.at:%Y-%m-%d %H:%M:%S}"

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class DailyUsage(models.Model):
    """Usage records older than USAGE_RAW_RETENTION_DAYS, rolled up per day (usage/rollup.py)."""

    day = models.DateField(db_index=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                             db_constraint=False, related_name="+")
    key = models.ForeignKey("apiaccess.ApiKey", on_delete=models.SET_NULL, null=True, blank=True,
                            db_constraint=False, related_name="+")
    model = models.CharField(max_length=200)
    reason = models.CharField(max_length=20, choices=UsageRecord.Reason.choices)
    requests = models.PositiveIntegerField(default=0)
    prompt_tokens = models.PositiveBigIntegerField(default=0)
    completion_tokens = models.PositiveBigIntegerField(default=0)
    gpu_seconds = models.FloatField(default=0)

    class Meta:
        ordering = ["-day"]
        verbose_name_plural = "daily usage"
        indexes = [models.Index(fields=["user", "day"])]

    def __str__(self) -> str:
        return f"{self.day} {self.model} {self.reason}: {self.requests}"
