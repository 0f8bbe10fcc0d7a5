from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class AuditEntry(models.Model):
    """A change staff made to a model, a node, or someone's limits: who, what, when (portal/audit.py)."""

    class Action(models.TextChoices):
        CREATED = "created", "Created"
        CHANGED = "changed", "Changed"
        DELETED = "deleted", "Deleted"

    at = models.DateTimeField(default=timezone.now, db_index=True)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                              related_name="+")
    actor_username = models.CharField(max_length=150)  # kept when the person is deleted
    action = models.CharField(max_length=20, choices=Action.choices)
    object_type = models.CharField(max_length=100, db_index=True)  # "inference.model", "apiaccess.account", ...
    object_id = models.CharField(max_length=64)
    object_repr = models.CharField(max_length=300)
    changes = models.JSONField(default=dict, blank=True, help_text="field: [before, after]")

    class Meta:
        ordering = ["-at", "-pk"]
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        return f"{self.actor_username} {self.action} {self.object_repr}"
