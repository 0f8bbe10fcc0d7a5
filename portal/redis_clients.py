"""Shared Redis clients: one synchronous client per process, one asyncio client per event loop.

An asyncio connection belongs to the loop that opened it, and tests (or a management command)
may run several loops in one process, so async clients are kept per loop. Timeouts are short:
Redis sits on the request path, and a Redis that hangs must fail a lookup, not stall every request.
"""

from __future__ import annotations

import asyncio
import weakref

import redis
import redis.asyncio
from django.conf import settings

SOCKET_TIMEOUT = 1.0

_sync_clients: dict[str, redis.Redis] = {}
_async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, redis.asyncio.Redis]] = (
    weakref.WeakKeyDictionary()
)


def sync_client() -> redis.Redis:
    url = settings.REDIS_URL
    client = _sync_clients.get(url)
    if client is None:
        client = _sync_clients[url] = redis.Redis.from_url(
            url, socket_timeout=SOCKET_TIMEOUT, socket_connect_timeout=SOCKET_TIMEOUT, decode_responses=True
        )
    return client


def async_client() -> redis.asyncio.Redis:
    url = settings.REDIS_URL
    per_loop = _async_clients.setdefault(asyncio.get_running_loop(), {})
    client = per_loop.get(url)
    if client is None:
        client = per_loop[url] = redis.asyncio.Redis.from_url(
            url, socket_timeout=SOCKET_TIMEOUT, socket_connect_timeout=SOCKET_TIMEOUT, decode_responses=True
        )
    return client
