"""Check a plain API key against the database. Synchronous (ORM); the async API path calls it
through sync_to_async only when its cache has no fresh answer (apiaccess/auth.py)."""

from __future__ import annotations

from django.utils import timezone

from apiaccess import keys
from apiaccess.models import ApiKey

INCORRECT = "Incorrect API key provided."
REVOKED = "This API key has been revoked."
EXPIRED = "This API key has expired."
OWNER_DISABLED = "The account that owns this API key is disabled."


def verify_key(plain: str) -> tuple[ApiKey | None, str]:
    """The usable key for `plain`, or None and the reason to give the caller.

    The stored digest is compared in constant time; a malformed key never reaches the database.
    """
    lookup = keys.lookup_of(plain)
    if lookup is None:
        return None, INCORRECT
    api_key = ApiKey.objects.select_related("user", "user__gatehouse_account").filter(lookup=lookup).first()
    if api_key is None or not keys.matches(plain, api_key.digest):
        return None, INCORRECT
    return usable(api_key)


def verify_key_id(key_id: int) -> tuple[ApiKey | None, str]:
    """The key with this id if it is still usable (a batch runs as the key that created it), or None and why."""
    api_key = ApiKey.objects.select_related("user", "user__gatehouse_account").filter(pk=key_id).first()
    if api_key is None:
        return None, "The API key that created this batch was deleted."
    return usable(api_key)


def usable(api_key: ApiKey) -> tuple[ApiKey | None, str]:
    if api_key.revoked_at is not None:
        return None, REVOKED
    if not api_key.user.is_active:
        return None, OWNER_DISABLED
    if api_key.expires_at is not None and api_key.expires_at <= timezone.now():
        return None, EXPIRED
    return api_key, ""
