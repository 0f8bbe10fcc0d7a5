"""The audit log of staff changes to models, nodes and limits: who changed which fields, from what to what.

A site middleware notes the signed-in staff member of each admin request in a context variable; model
signals then write one AuditEntry per created, changed or deleted row, with the tracked fields that
changed. Changes made without a staff member behind them (the catalogue sync, a management command)
are not staff changes and are not logged here.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import decimal

from django.db.models.signals import post_delete, post_save, pre_save

from apiaccess.limits import LIMIT_FIELDS
from apiaccess.models import Account, ApiKey
from common.hybrid import HybridMiddleware
from inference.models import Model, Node
from portal.models import AuditEntry

TRACKED = {
    Node: ["url", "name", "gpu_memory_bytes", "max_loaded_models", "enabled"],
    Model: ["public_id", "kind", "context_length", "concurrency", "max_queue", "context_overflow", "enabled",
            "pinned"],
    Account: ["priority", *LIMIT_FIELDS],
    ApiKey: ["name", "priority", "expires_at", *LIMIT_FIELDS],
}

_actor: contextvars.ContextVar = contextvars.ContextVar("audit_actor", default=None)


def _plain(value):
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    return value


def _snapshot(instance) -> dict:
    return {name: _plain(getattr(instance, name)) for name in TRACKED[type(instance)]}


def _before(sender, instance, **kwargs):
    if _actor.get() is None or instance.pk is None:
        return
    old = sender.objects.filter(pk=instance.pk).first()
    instance._audit_before = _snapshot(old) if old is not None else None


def _write(instance, action: str, changes: dict) -> None:
    actor = _actor.get()
    AuditEntry.objects.create(actor=actor, actor_username=actor.get_username(), action=action,
                              object_type=instance._meta.label_lower, object_id=str(instance.pk),
                              object_repr=str(instance)[:300], changes=changes)


def _after(sender, instance, created, **kwargs):
    if _actor.get() is None:
        return
    after = _snapshot(instance)
    before = getattr(instance, "_audit_before", None)
    if created or before is None:
        _write(instance, AuditEntry.Action.CREATED, {k: [None, v] for k, v in after.items() if v not in (None, "")})
        return
    changes = {k: [before[k], v] for k, v in after.items() if before[k] != v}
    if changes:
        _write(instance, AuditEntry.Action.CHANGED, changes)


def _deleted(sender, instance, **kwargs):
    if _actor.get() is not None:
        _write(instance, AuditEntry.Action.DELETED, {k: [v, None] for k, v in _snapshot(instance).items()})


def connect_signals() -> None:
    for model in TRACKED:
        pre_save.connect(_before, sender=model, dispatch_uid=f"audit-before-{model._meta.label_lower}")
        post_save.connect(_after, sender=model, dispatch_uid=f"audit-after-{model._meta.label_lower}")
        post_delete.connect(_deleted, sender=model, dispatch_uid=f"audit-deleted-{model._meta.label_lower}")


class AuditActorMiddleware(HybridMiddleware):
    """Note who is making changes through the admin. Only admin paths: elsewhere nobody is audited,
    and looking the user up would cost every page a query."""

    def _actor_of(self, request):
        if not request.path.startswith("/admin/") or request.method in ("GET", "HEAD", "OPTIONS"):
            return None
        user = request.user
        return user if user.is_authenticated and user.is_staff else None

    def __call__(self, request):
        if self.is_async:
            return self._acall(request)
        token = _actor.set(self._actor_of(request))
        try:
            return self.get_response(request)
        finally:
            _actor.reset(token)

    async def _acall(self, request):
        from asgiref.sync import sync_to_async

        token = _actor.set(await sync_to_async(self._actor_of)(request))
        try:
            return await self.get_response(request)
        finally:
            _actor.reset(token)
