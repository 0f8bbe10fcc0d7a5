from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from apiaccess import keys

LIMIT_HELP = "Empty: the default from settings; 0: no limit"


class Priority(models.TextChoices):
    INTERACTIVE = "interactive", "Interactive"
    # Batch requests get a slot only when no interactive request for the model waits (or once they
    # have waited BATCH_MAX_WAIT_SECONDS): bulk jobs fill idle GPUs without slowing people down.
    BATCH = "batch", "Batch (served when the GPUs are idle)"


class LimitOverrides(models.Model):
    """Rate limits and token quotas that replace the defaults from settings (apiaccess/limits.py).

    Empty: the default applies. 0: no limit.
    """

    requests_per_minute = models.PositiveIntegerField(null=True, blank=True, help_text=LIMIT_HELP)
    tokens_per_minute = models.PositiveIntegerField(null=True, blank=True, help_text=LIMIT_HELP)
    concurrent_requests = models.PositiveIntegerField(null=True, blank=True, help_text=LIMIT_HELP)
    tokens_per_day = models.PositiveIntegerField(null=True, blank=True, help_text=LIMIT_HELP + " (UTC days)")
    tokens_per_month = models.PositiveIntegerField(null=True, blank=True, help_text=LIMIT_HELP + " (UTC months)")

    class Meta:
        abstract = True


class Account(LimitOverrides):
    """Per-person settings that apply to all of a person's keys: priority, and limits over all of them."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="gatehouse_account")
    priority = models.CharField(max_length=20, choices=Priority.choices, default=Priority.INTERACTIVE)

    def __str__(self) -> str:
        return f"account of {self.user}"


class ApiKey(LimitOverrides):
    """An API key. The plain key is shown once at creation; only its digest is stored."""

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        EXPIRED = "expired", "Expired"
        REVOKED = "revoked", "Revoked"

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
        return self.status_at(now) == self.Status.ACTIVE

    def status_at(self, now=None) -> ApiKey.Status:
        now = now or timezone.now()
        if self.revoked_at is not None:
            return self.Status.REVOKED
        if self.expires_at is not None and self.expires_at <= now:
            return self.Status.EXPIRED
        return self.Status.ACTIVE

    @property
    def status(self) -> ApiKey.Status:
        return self.status_at()

    @classmethod
    def issue(cls, user, *, name: str = "", expires_at=None, allowed_models=(),
              priority: str = Priority.INTERACTIVE) -> tuple[ApiKey, str]:
        """Create a key and return it with the plain text, which is never stored.

        Lower level than apiaccess.lifecycle.create_key, which also checks the per-person limit
        and writes the audit trail.
        """
        new = keys.generate_key()
        api_key = cls.objects.create(
            user=user, name=name, lookup=new.lookup, digest=new.digest, expires_at=expires_at, priority=priority
        )
        if allowed_models:
            api_key.allowed_models.set(allowed_models)
        return api_key, new.plain


class KeyEvent(models.Model):
    """The audit trail of API keys: who created or revoked which key, when, and through what."""

    class Action(models.TextChoices):
        CREATED = "created", "Created"
        REVOKED = "revoked", "Revoked"

    class Via(models.TextChoices):
        PORTAL = "portal", "Account settings page"
        API = "api", "Key API"
        ADMIN = "admin", "Admin"
        COMMAND = "command", "Management command"

    at = models.DateTimeField(default=timezone.now, db_index=True)
    action = models.CharField(max_length=20, choices=Action.choices)
    via = models.CharField(max_length=20, choices=Via.choices)
    # Kept when the key or the people are deleted, so the trail still reads.
    key = models.ForeignKey(ApiKey, on_delete=models.SET_NULL, null=True, blank=True, related_name="events")
    key_label = models.CharField(max_length=200)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                              related_name="+")
    owner_username = models.CharField(max_length=150)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                              related_name="+", help_text="Who did it; empty for a management command")
    actor_username = models.CharField(max_length=150, blank=True)
    source_ip = models.GenericIPAddressField(null=True, blank=True)
    detail = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-at", "-pk"]
        verbose_name = "API key event"

    def __str__(self) -> str:
        return f"{self.key_label} {self.action} by {self.actor_username or 'a command'}"


class ExternalIdentity(models.Model):
    """A person's account at the single sign-on provider, found again by its stable subject id."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                             related_name="external_identities")
    issuer = models.CharField(max_length=300)
    subject = models.CharField(max_length=255)
    created_at = models.DateTimeField(auto_now_add=True)
    last_login_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["issuer", "subject"], name="unique_external_identity")]
        verbose_name_plural = "external identities"

    def __str__(self) -> str:
        return f"{self.subject} at {self.issuer}"
