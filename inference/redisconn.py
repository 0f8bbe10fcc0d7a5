"""The async Redis connection of this process (one per event loop), with tight timeouts.

Every scheduler call goes through it, so when Redis is down a request fails fast with a clean 503
instead of hanging: connecting and each reply give up after REDIS_SOCKET_TIMEOUT (refused connections
fail at once).

The pool is bounded (REDIS_MAX_CONNECTIONS) and blocking: in a burst of thousands of requests a call
waits in the process for a free connection (REDIS_POOL_WAIT_SECONDS at most) rather than failing as if
Redis were down. A connection that broke (Redis restarted) is retried once on a fresh one; timeouts
are not retried, since a call that timed out may have run.
"""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis
import redis.exceptions
from django.conf import settings
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

# What a Redis call fails with when Redis is down or too slow.
REDIS_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)

_clients: dict[int, aioredis.Redis] = {}


def _retry() -> Retry:
    return Retry(ExponentialBackoff(cap=0.1, base=0.01), retries=2,
                 supported_errors=(redis.exceptions.ConnectionError,))


def redis_client() -> aioredis.Redis:
    # Connection pools belong to the loop that created them; daphne has one loop, tests may have many.
    key = id(asyncio.get_running_loop())
    client = _clients.get(key)
    if client is None:
        pool = aioredis.BlockingConnectionPool.from_url(
            settings.REDIS_URL,
            max_connections=settings.REDIS_MAX_CONNECTIONS,
            timeout=settings.REDIS_POOL_WAIT_SECONDS,
            socket_connect_timeout=settings.REDIS_SOCKET_TIMEOUT,
            socket_timeout=settings.REDIS_SOCKET_TIMEOUT,
            decode_responses=True,
            retry=_retry(),
            retry_on_error=[redis.exceptions.ConnectionError],
        )
        client = _clients[key] = aioredis.Redis(connection_pool=pool)
    return client


async def drop_pooled_connections() -> None:
    """Close every pooled connection now (Redis restarted: they are all dead), so the next calls open
    fresh ones instead of each finding out on its own."""
    client = _clients.get(id(asyncio.get_running_loop()))
    if client is not None:
        await client.connection_pool.disconnect(inuse_connections=False)


def pubsub_client() -> aioredis.Redis:
    """A client for one long-lived subscription: no read timeout, since it waits for messages."""
    return aioredis.Redis.from_url(
        settings.REDIS_URL, socket_connect_timeout=settings.REDIS_SOCKET_TIMEOUT, decode_responses=True,
        health_check_interval=10,
    )
