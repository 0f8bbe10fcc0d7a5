"""Bearer-key authentication for the async API views.

Verified keys are cached in-process, so the hot path usually costs one SHA-256 and a dict lookup.
A cached answer is trusted for up to API_KEY_CACHE_SECONDS, but only while the key generation in
Redis has not moved (apiaccess/revocation.py): revoking or changing any key moves it, and every
process notices within API_KEY_REVOCATION_CHECK_SECONDS. Expiry is checked on every request.
"Last used" goes to Redis, not the database (apiaccess/last_used.py).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from datetime import datetime

from asgiref.sync import sync_to_async
from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from apiaccess import last_used, limits, revocation, verification
from apiaccess.keys import digest_key
from apiaccess.limits import Limits
from apiaccess.models import ApiKey, Priority
from common import siteurl
from common.apierrors import ApiError


@dataclass(frozen=True)
class Principal:
    """Who is calling: the verified key and its owner."""

    key_id: int
    user_id: int
    username: str
    allowed_models: frozenset[str]  # public model ids; empty = every model
    expires_at: datetime | None
    priority: str = "interactive"  # or "batch": served only when no interactive request waits
    key_limits: Limits = Limits()  # this key's own rate limits and quotas
    person_limits: Limits = Limits()  # the owner's, over all of their keys

    @property
    def is_batch(self) -> bool:
        return self.priority == "batch"

    def may_use(self, public_id: str) -> bool:
        return not self.allowed_models or public_id in self.allowed_models


@dataclass(frozen=True)
class _Entry:
    loaded_at: float  # time.monotonic()
    generation: int | None  # the key generation read before loading; None if Redis was unreachable
    principal: Principal | None
    reason: str  # why the key was refused, when principal is None


_cache: dict[str, _Entry] = {}
# Failed keys are cached too (a client retrying a bad key must not hit the database each time), so
# bound the cache: random keys from a misbehaving client must not grow it without limit.
CACHE_LIMIT = 10_000


def clear_cache() -> None:
    _cache.clear()
    revocation.reset()
    last_used.forget_recent()


def account_settings_url(request=None) -> str:
    """Where keys are made: on SITE_URL, or on the host and port this request came in on."""
    return siteurl.base_url(request) + reverse("account")


def bearer_token(request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    # Azure-style clients (and Continue's raw fetch paths) send the key in these headers instead.
    return request.headers.get("api-key") or request.headers.get("x-api-key") or None


def _load(plain: str) -> tuple[Principal | None, str]:
    return _principal(*verification.verify_key(plain))


def batch_principal(key_id: int) -> tuple[Principal | None, str]:
    """Who a batch's lines run as (sync, ORM): its key, at batch priority whatever the key's own, so
    its lines take only slots no interactive request wants. None and why when the key is no longer usable."""
    principal, reason = _principal(*verification.verify_key_id(key_id))
    if principal is None:
        return None, reason
    return dataclasses.replace(principal, priority=Priority.BATCH), ""


def _principal(api_key: ApiKey | None, reason: str) -> tuple[Principal | None, str]:
    if api_key is None:
        return None, reason
    allowed = frozenset(api_key.allowed_models.values_list("public_id", flat=True))
    principal = Principal(
        key_id=api_key.pk,
        user_id=api_key.user_id,
        username=api_key.user.get_username(),
        allowed_models=allowed,
        expires_at=api_key.expires_at,
        priority=_priority(api_key),
        key_limits=limits.key_limits(api_key),
        person_limits=limits.person_limits(getattr(api_key.user, "gatehouse_account", None)),
    )
    return principal, ""


def _fresh(entry: _Entry, now: float, generation: int | None) -> bool:
    age = now - entry.loaded_at
    if age > settings.API_KEY_CACHE_SECONDS:
        return False
    if generation is None or entry.generation is None:
        # Without Redis nobody can tell us about revocations: trust the entry for one check interval only.
        return age < settings.API_KEY_REVOCATION_CHECK_SECONDS
    return entry.generation == generation


def _priority(api_key: ApiKey) -> str:
    account = getattr(api_key.user, "gatehouse_account", None)
    if api_key.priority == Priority.BATCH or (account is not None and account.priority == Priority.BATCH):
        return Priority.BATCH
    return Priority.INTERACTIVE


async def authenticate(request) -> Principal:
    """Return the caller's Principal or raise a 401 ApiError."""
    plain = bearer_token(request)
    if not plain:
        raise ApiError.invalid_api_key(
            "You didn't provide an API key. Send it as 'Authorization: Bearer YOUR_KEY'; "
            f"create keys on your account settings page: {account_settings_url(request)}"
        )
    digest = digest_key(plain)
    # Read the generation before the database, so a change committed after our read moves it past ours.
    generation = await revocation.current()
    now = time.monotonic()
    entry = _cache.get(digest)
    if entry is None or not _fresh(entry, now, generation):
        principal, reason = await sync_to_async(_load)(plain)
        entry = _Entry(loaded_at=now, generation=generation, principal=principal, reason=reason)
        if len(_cache) >= CACHE_LIMIT:
            _cache.clear()
        _cache[digest] = entry
    principal = entry.principal
    if principal is None:
        raise ApiError.invalid_api_key(entry.reason)
    if principal.expires_at is not None and principal.expires_at <= timezone.now():
        raise ApiError.invalid_api_key(verification.EXPIRED)
    last_used.note_use(principal.key_id)
    return principal
