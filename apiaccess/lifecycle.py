"""Creating and revoking API keys: the per-person limit, the audit trail and the revocation broadcast.

Every way in (account page, key API, admin, createapikey) goes through these two functions, so the
rules and the audit trail cannot differ between them.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from apiaccess import revocation
from apiaccess.models import ApiKey, KeyEvent, Priority
from inference.models import Model


class KeyLimitReached(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"You already have {limit} active API keys, the most allowed. Revoke one first.")
        self.limit = limit


def active_keys(user) -> QuerySet[ApiKey]:
    now = timezone.now()
    return ApiKey.objects.filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now), user=user,
                                 revoked_at__isnull=True)


def slots_left(user) -> int:
    return max(0, settings.MAX_API_KEYS_PER_USER - active_keys(user).count())


def _username(user) -> str:
    return user.get_username() if user is not None else ""


def _describe(expires_at: datetime | None, models: list[Model]) -> str:
    expiry = f"expires {expires_at:%Y-%m-%d %H:%M} UTC" if expires_at else "never expires"
    scope = "models: " + ", ".join(m.public_id for m in models) if models else "every model"
    return f"{expiry}; {scope}"[:500]


def create_key(owner, *, actor, via: str, name: str = "", expires_at: datetime | None = None,
               allowed_models: Iterable[Model] = (), source_ip: str | None = None,
               enforce_limit: bool = True, priority: str = Priority.INTERACTIVE) -> tuple[ApiKey, str]:
    """Create a key for `owner` on behalf of `actor` (None for a management command).

    Returns the key and its plain text, which exists nowhere else: show it once.
    """
    models = list(allowed_models)
    with transaction.atomic():
        if enforce_limit:
            # Serialise one person's concurrent creations so two requests cannot both take the last slot
            # (SQLite ignores this, but it serialises all writers anyway).
            get_user_model().objects.select_for_update().filter(pk=owner.pk).first()
            if slots_left(owner) == 0:
                raise KeyLimitReached(settings.MAX_API_KEYS_PER_USER)
        api_key, plain = ApiKey.issue(owner, name=name, expires_at=expires_at, allowed_models=models,
                                      priority=priority)
        KeyEvent.objects.create(
            action=KeyEvent.Action.CREATED, via=via, key=api_key, key_label=str(api_key),
            owner=owner, owner_username=_username(owner), actor=actor, actor_username=_username(actor),
            source_ip=source_ip, detail=_describe(expires_at, models),
        )
    return api_key, plain


def revoke_key(api_key: ApiKey, *, actor, via: str, source_ip: str | None = None) -> bool:
    """Revoke the key; False if it was already revoked (then nothing is written)."""
    with transaction.atomic():
        now = timezone.now()
        # A conditional UPDATE claims the revocation, so two concurrent revokes write one event.
        if not ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(revoked_at=now):
            return False
        api_key.revoked_at = now
        KeyEvent.objects.create(
            action=KeyEvent.Action.REVOKED, via=via, key=api_key, key_label=str(api_key),
            owner_id=api_key.user_id, owner_username=_username(api_key.user), actor=actor,
            actor_username=_username(actor), source_ip=source_ip,
        )
        revocation.announce_change()
    return True
