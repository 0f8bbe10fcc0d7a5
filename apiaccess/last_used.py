"""When each API key was last used, kept current without a database write per request.

The hot path records use in Redis: one sorted-set member per key, scored by unix time, written
with ZADD GT so the newest time wins whichever process writes last. A process writes a given key
at most once every RECORD_INTERVAL seconds, so "last used" may lag the real last call by that much.
Celery beat copies the set into ApiKey.last_used_at (`flush`), and pages overlay the Redis figures
(`annotate`) so they are current between flushes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from datetime import UTC, datetime

import redis
from django.db.models import Q

from apiaccess.models import ApiKey
from common.store import keys, scripts
from common.store.client import redis_client, sync_client

log = logging.getLogger(__name__)

RECORD_INTERVAL = 10.0
# Bounds the per-process memory of which keys were written recently; clearing it only costs writes.
_RECORDED_LIMIT = 10_000

_recorded: dict[int, float] = {}  # key id -> when (monotonic) this process last wrote it
_background: set[asyncio.Task] = set()


def note_use(key_id: int) -> None:
    """Record a use of the key from async code; returns at once, the Redis write happens in the background."""
    now = time.monotonic()
    if now - _recorded.get(key_id, float("-inf")) < RECORD_INTERVAL:
        return
    if len(_recorded) >= _RECORDED_LIMIT:
        _recorded.clear()
    _recorded[key_id] = now
    task = asyncio.get_running_loop().create_task(_write(key_id, time.time()))
    _background.add(task)  # keep a reference so the task is not garbage-collected mid-flight
    task.add_done_callback(_background.discard)


async def _write(key_id: int, when: float) -> None:
    try:
        await redis_client().zadd(keys.API_KEY_LAST_USED, {str(key_id): when}, gt=True)
    except (redis.RedisError, OSError):
        _recorded.pop(key_id, None)  # try again on the next request
        log.warning("could not record the last use of API key %s in Redis", key_id)


def record_now(key_id: int) -> None:
    """Record a use from synchronous code (the key API); a Redis failure is logged, never raised."""
    try:
        sync_client().zadd(keys.API_KEY_LAST_USED, {str(key_id): time.time()}, gt=True)
    except (redis.RedisError, OSError):
        log.warning("could not record the last use of API key %s in Redis", key_id)


def forget_recent() -> None:
    _recorded.clear()


def flush() -> int:
    """Copy last-use times from Redis into the database; return how many keys were updated."""
    client = sync_client()
    # Scores as Redis prints them, so the clean-up script can compare them exactly.
    entries = client.zrange(keys.API_KEY_LAST_USED, 0, -1, withscores=True, score_cast_func=_as_text)
    updated = 0
    for member, raw_score in entries:
        when = datetime.fromtimestamp(float(raw_score), tz=UTC)
        newer = Q(last_used_at__isnull=True) | Q(last_used_at__lt=when)
        updated += ApiKey.objects.filter(newer, pk=int(member)).update(last_used_at=when)
    if entries:
        # Drop members that still hold the score copied: a newer use since then stays for next time.
        scripts.get(client, "last_used_forget")(keys=[keys.API_KEY_LAST_USED], args=[item for entry in entries for item in entry])
    return updated


def _as_text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


def latest(key_ids: Iterable[int]) -> dict[int, datetime]:
    """Last uses recorded in Redis and not yet flushed; empty if Redis cannot be reached."""
    ids = list(key_ids)
    if not ids:
        return {}
    try:
        scores = sync_client().zmscore(keys.API_KEY_LAST_USED, [str(i) for i in ids])
    except (redis.RedisError, OSError):
        log.warning("cannot read key last-use times from Redis; showing the database's")
        return {}
    return {i: datetime.fromtimestamp(s, tz=UTC) for i, s in zip(ids, scores, strict=True) if s is not None}


def annotate(api_keys: Iterable[ApiKey]) -> None:
    """Set `last_used` on each key: the newer of the database's figure and Redis's."""
    api_keys = list(api_keys)
    recent = latest(k.pk for k in api_keys)
    for key in api_keys:
        candidates = [t for t in (key.last_used_at, recent.get(key.pk)) if t is not None]
        key.last_used = max(candidates) if candidates else None
