from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from apiaccess import keys


class Priority(models.TextChoices):
    INTERACTIVE = "interactive", "Interactive"
    # Batch requests get a slot only when no interactive request for the model waits (or once they
    # have waited BATCH_MAX_WAIT_SECONDS): bulk jobs fill idle GPUs without slowing people down.
    BATCH = "batch", "Batch (served when the GPUs are idle)"


class Account(models.Model):
    """Per-person settings that apply to all of a person's keys."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="gatehouse_account")
    priority = models.CharField(max_length=20, choices=Priority.choices, default=Priority.INTERACTIVE)

    def __str__(self) -> str:
        return f"account of {self.user}"


class ApiKey(models.Model):
    """An API key. The plain key is shown once at creation; only its digest is stored."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100, blank=True)
    lookup = models.CharField(max_length=keys.LOOKUP_LENGTH, unique=True, editable=False)
    digest = models.CharField(max_length=64, editable=False)
    allowed_models = models.ManyToManyField(
        "inference.Model", blank=True, related_name="api_keys", help_text="Empty means every model"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    priority = models.CharField(
        max_length=20, choices=Priority.choices, default=Priority.INTERACTIVE,
        help_text="Batch: this key's requests yield to interactive ones (so does a person marked batch)",
    )

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name or 'key'} ({keys.KEY_PREFIX}{self.lookup}…)"

    @property
    def masked(self) -> str:
        return f"{keys.KEY_PREFIX}{self.lookup}…"

    def is_active(self, now=None) -> bool:
        now = now or timezone.now()
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or self.expires_at > now

    @classmethod
    def issue(cls, user, *, name: str = "", expires_at=None, allowed_models=(),
              priority: str = Priority.INTERACTIVE) -> tuple[ApiKey, str]:
        """Create a key and return it with the plain text, which is never stored."""
        new = keys.generate_key()
        api_key = cls.objects.create(
            user=user, name=name, lookup=new.lookup, digest=new.digest, expires_at=expires_at, priority=priority
        )
        if allowed_models:
            api_key.allowed_models.set(allowed_models)
        return api_key, new.plain
