"""Tell every web process that API keys changed, so a revoked key stops working within a second or two.

Each process caches verified keys (apiaccess/auth.py). Instead of a short cache lifetime, which would
mean a database read per key every few seconds, a change to any key (revoked, expiry or models
edited, deleted, owner deactivated) increments one counter in Redis. Each process reads that
counter at most once every API_KEY_REVOCATION_CHECK_SECONDS (one GET per process per second, not
one per request) and drops its cache when the counter moved.

If Redis cannot be reached, `current()` answers None and the cache trusts entries only for one
check interval, so revocation still takes effect in time, at the cost of more database reads.
"""

from __future__ import annotations

import asyncio
import logging
import time

import redis
from django.conf import settings
from django.db import transaction

from common.store import keys
from common.store.client import redis_client, sync_client

log = logging.getLogger(__name__)

def announce_change() -> None:
    """Bump the counter once the current transaction commits (at once outside a transaction).

    After commit, so a process that reloads the key sees the new row, never the old one.
    """
    transaction.on_commit(_bump)


def _bump() -> None:
    try:
        sync_client().incr(keys.API_KEY_GENERATION)
    except redis.RedisError:
        # Nothing to retry here: processes that cannot reach Redis already fall back to a short cache.
        log.exception("could not announce an API key change through Redis")


class _Generation:
    def __init__(self) -> None:
        self.value: int | None = None
        self.checked_at = float("-inf")
        self.locks: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}

    async def current(self) -> int | None:
        if time.monotonic() - self.checked_at < settings.API_KEY_REVOCATION_CHECK_SECONDS:
            return self.value
        lock = self.locks.setdefault(asyncio.get_running_loop(), asyncio.Lock())
        async with lock:  # one GET at a time; requests that waited reuse its answer
            if time.monotonic() - self.checked_at >= settings.API_KEY_REVOCATION_CHECK_SECONDS:
                self.value = await self._read()
                self.checked_at = time.monotonic()
        return self.value

    async def _read(self) -> int | None:
        try:
            return int(await redis_client().get(keys.API_KEY_GENERATION) or 0)
        except (redis.RedisError, OSError):
            log.warning("cannot read the API key generation from Redis; trusting cached keys briefly")
            return None

    def reset(self) -> None:
        self.value = None
        self.checked_at = float("-inf")


_generation = _Generation()
current = _generation.current
reset = _generation.reset
