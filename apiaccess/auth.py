"""Bearer-key authentication for the async API views.

Verified keys are cached in-process for API_KEY_CACHE_SECONDS, so the hot path usually costs one
SHA-256 and a dict lookup. A revoked or expired key stops working within that window in every
process, because each process re-reads the key once its cache entry is older than the window.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from apiaccess import keys
from apiaccess.models import ApiKey, Priority
from portal.apierrors import ApiError

log = logging.getLogger(__name__)

# last_used_at is informational; writing it at most once a minute per key keeps the DB off the hot path.
LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True)
class Principal:
    """Who is calling: the verified key and its owner."""

    key_id: int
    user_id: int
    username: str
    allowed_models: frozenset[str]  # public model ids; empty = every model
    expires_at: datetime | None
    last_used_at: datetime | None
    priority: str = "interactive"  # or "batch": served only when no interactive request waits

    @property
    def is_batch(self) -> bool:
        return self.priority == "batch"

    def may_use(self, public_id: str) -> bool:
        return not self.allowed_models or public_id in self.allowed_models


_cache: dict[str, tuple[float, Principal | None, str]] = {}
# Failed keys are cached too (a client retrying a bad key must not hit the database each time), so
# bound the cache: random keys from a misbehaving client must not grow it without limit.
CACHE_LIMIT = 10_000
_background: set[asyncio.Task] = set()


def clear_cache() -> None:
    _cache.clear()


def bearer_token(request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    # Azure-style clients (and Continue's raw fetch paths) send the key in these headers instead.
    return request.headers.get("api-key") or request.headers.get("x-api-key") or None


async def _load(lookup: str, plain: str) -> tuple[Principal | None, str]:
    api_key = await ApiKey.objects.select_related("user", "user__gatehouse_account").filter(lookup=lookup).afirst()
    if api_key is None or not keys.matches(plain, api_key.digest):
        return None, "Incorrect API key provided."
    if api_key.revoked_at is not None:
        return None, "This API key has been revoked."
    if not api_key.user.is_active:
        return None, "The account that owns this API key is disabled."
    allowed = frozenset([public_id async for public_id in api_key.allowed_models.values_list("public_id", flat=True)])
    principal = Principal(
        key_id=api_key.pk,
        user_id=api_key.user_id,
        username=api_key.user.get_username(),
        allowed_models=allowed,
        expires_at=api_key.expires_at,
        last_used_at=api_key.last_used_at,
        priority=_priority(api_key),
    )
    return principal, ""


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
            "create keys on your account settings page."
        )
    digest = keys.digest_key(plain)
    now = time.monotonic()
    cached = _cache.get(digest)
    if cached is None or now - cached[0] > settings.API_KEY_CACHE_SECONDS:
        lookup = keys.lookup_of(plain)
        principal, reason = (None, "Incorrect API key provided.") if lookup is None else await _load(lookup, plain)
        cached = (now, principal, reason)
        if len(_cache) >= CACHE_LIMIT:
            _cache.clear()
        _cache[digest] = cached
    _, principal, reason = cached
    if principal is None:
        raise ApiError.invalid_api_key(reason)
    if principal.expires_at is not None and principal.expires_at <= timezone.now():
        raise ApiError.invalid_api_key("This API key has expired.")
    _touch(digest, principal)
    return principal


def _touch(digest: str, principal: Principal) -> None:
    now = timezone.now()
    if principal.last_used_at is not None and now - principal.last_used_at < LAST_USED_RESOLUTION:
        return
    stamp, _, reason = _cache[digest]
    _cache[digest] = (stamp, _with_last_used(principal, now), reason)
    task = asyncio.get_running_loop().create_task(_write_last_used(principal.key_id, now))
    _background.add(task)  # keep a reference so the task is not garbage-collected mid-flight
    task.add_done_callback(_background.discard)


def _with_last_used(principal: Principal, when: datetime) -> Principal:
    return Principal(**{**principal.__dict__, "last_used_at": when})


async def _write_last_used(key_id: int, when: datetime) -> None:
    try:
        await ApiKey.objects.filter(pk=key_id).aupdate(last_used_at=when)
    except Exception:  # noqa: BLE001 - bookkeeping must never fail a request
        log.exception("could not record last use of API key %s", key_id)
