"""The async Redis connection of this process (one per event loop), with tight timeouts.

Every scheduler call goes through it, so when Redis is down a request fails fast with a clean 503
instead of hanging: connecting and each reply give up after REDIS_SOCKET_TIMEOUT (refused connections
fail at once).
"""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis
import redis.exceptions
from django.conf import settings

# What a Redis call fails with when Redis is down or too slow.
REDIS_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)

_clients: dict[int, aioredis.Redis] = {}


def redis_client() -> aioredis.Redis:
    # Connection pools belong to the loop that created them; daphne has one loop, tests may have many.
    key = id(asyncio.get_running_loop())
    client = _clients.get(key)
    if client is None:
        client = aioredis.Redis.from_url(
            settings.REDIS_URL,
            socket_connect_timeout=settings.REDIS_SOCKET_TIMEOUT,
            socket_timeout=settings.REDIS_SOCKET_TIMEOUT,
            decode_responses=True,
            max_connections=256,
        )
        _clients[key] = client
    return client


def pubsub_client() -> aioredis.Redis:
    """A client for one long-lived subscription: no read timeout, since it waits for messages."""
    return aioredis.Redis.from_url(
        settings.REDIS_URL, socket_connect_timeout=settings.REDIS_SOCKET_TIMEOUT, decode_responses=True,
        health_check_interval=10,
    )
