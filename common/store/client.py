"""The only place Redis clients are made: the async pooled client of each event loop, a client for a
long-lived subscription, and a sync client for Celery tasks, admin and management code.

Every client honours REDIS_SOCKET_TIMEOUT: Redis sits on the request path, so when it is down or hangs
a call fails fast (a clean 503, a logged warning) instead of stalling: connecting and each reply give
up after REDIS_SOCKET_TIMEOUT (refused connections fail at once).

The async pool is bounded (REDIS_MAX_CONNECTIONS) and blocking: in a burst of thousands of requests a
call waits in the process for a free connection (REDIS_POOL_WAIT_SECONDS at most) rather than failing
as if Redis were down. A connection that broke (Redis restarted) is retried once on a fresh one, by
either client; timeouts are not retried, since a call that timed out may have run.

Clients are kept per settings (URL and timeouts), so a test that overrides them gets its own client.
An asyncio connection belongs to the loop that opened it, and tests (or a management command) may run
several loops in one process, so async clients are kept per loop.

With REDIS_CLUSTER on, REDIS_URL names one node of a Redis Cluster and every client is a cluster client
(redis-py's RedisCluster): it learns the slot map and sends each command, script and pipelined command to
the shard that owns its key. Every script touches keys of one hash tag (common/store/keys.py), so each
runs on one shard.
"""

from __future__ import annotations

import asyncio
import weakref

import redis
import redis.asyncio as aioredis
import redis.asyncio.cluster as aiocluster
import redis.cluster
import redis.exceptions
from django.conf import settings
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff
from redis.connection import parse_url
from redis.retry import Retry

# What a Redis call fails with when Redis is down or too slow.
REDIS_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)

_RETRIED = (redis.exceptions.ConnectionError,)
# A cluster client also retries a call that met a shard in the middle of a failover or slot move.
_CLUSTER_RETRIED = (*_RETRIED, redis.exceptions.ClusterDownError, redis.exceptions.TryAgainError)

_async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple, aioredis.Redis]] = (
    weakref.WeakKeyDictionary()
)
_sync_clients: dict[tuple, redis.Redis] = {}


def _backoff() -> ExponentialBackoff:
    return ExponentialBackoff(cap=0.1, base=0.01)


def redis_client() -> aioredis.Redis:
    """This event loop's client, on a bounded blocking pool."""
    per_loop = _async_clients.setdefault(asyncio.get_running_loop(), {})
    key = (settings.REDIS_URL, settings.REDIS_CLUSTER, settings.REDIS_SOCKET_TIMEOUT, settings.REDIS_MAX_CONNECTIONS,
           settings.REDIS_POOL_WAIT_SECONDS)
    client = per_loop.get(key)
    if client is None and settings.REDIS_CLUSTER:
        # Each shard gets its own pool of at most REDIS_MAX_CONNECTIONS.
        client = per_loop[key] = aiocluster.RedisCluster.from_url(
            settings.REDIS_URL,
            max_connections=settings.REDIS_MAX_CONNECTIONS,
            socket_connect_timeout=settings.REDIS_SOCKET_TIMEOUT,
            socket_timeout=settings.REDIS_SOCKET_TIMEOUT,
            decode_responses=True,
            retry=AsyncRetry(_backoff(), retries=2, supported_errors=_CLUSTER_RETRIED),
        )
    elif client is None:
        pool = aioredis.BlockingConnectionPool.from_url(
            settings.REDIS_URL,
            max_connections=settings.REDIS_MAX_CONNECTIONS,
            timeout=settings.REDIS_POOL_WAIT_SECONDS,
            socket_connect_timeout=settings.REDIS_SOCKET_TIMEOUT,
            socket_timeout=settings.REDIS_SOCKET_TIMEOUT,
            decode_responses=True,
            retry=AsyncRetry(_backoff(), retries=2, supported_errors=_RETRIED),
            retry_on_error=list(_RETRIED),
        )
        client = per_loop[key] = aioredis.Redis(connection_pool=pool)
    return client


async def drop_pooled_connections() -> None:
    """Close every pooled connection of this loop now (Redis restarted: they are all dead), so the next
    calls open fresh ones instead of each finding out on its own."""
    for client in list(_async_clients.get(asyncio.get_running_loop(), {}).values()):
        if isinstance(client, aiocluster.RedisCluster):
            for node in client.get_nodes():
                await node.disconnect()
        else:
            await client.connection_pool.disconnect(inuse_connections=False)


def pubsub_client() -> aioredis.Redis:
    """A new client for one long-lived subscription: connecting gives up after REDIS_SOCKET_TIMEOUT, but
    there is no read timeout, since it waits for messages. The caller closes it.

    On a cluster it is a plain client of the node REDIS_URL names: a message published on any shard
    (PUBLISH, not SPUBLISH) reaches the subscribers of every node, so one node's subscription hears all.
    """
    return aioredis.Redis.from_url(
        settings.REDIS_URL, socket_connect_timeout=settings.REDIS_SOCKET_TIMEOUT, decode_responses=True,
        health_check_interval=10,
    )


def node_pubsub_client(host: str, port: int) -> aioredis.Redis:
    """Like pubsub_client, but for one given node (of a cluster): REDIS_URL's credentials and TLS, this
    address. For sharded subscriptions, which live on the node that owns the channel's slot."""
    options = {**parse_url(settings.REDIS_URL), "host": host, "port": port}
    options.pop("db", None)  # a cluster has only database 0, and pub/sub ignores it
    connection_class = options.pop("connection_class", None)
    if connection_class is not None and issubclass(connection_class, redis.SSLConnection):
        options["ssl"] = True
    return aioredis.Redis(**options, socket_connect_timeout=settings.REDIS_SOCKET_TIMEOUT, decode_responses=True,
                          health_check_interval=10)


def sync_client() -> redis.Redis:
    """The process's synchronous client (thread-safe), for Celery tasks, sync views, admin and commands."""
    key = (settings.REDIS_URL, settings.REDIS_CLUSTER, settings.REDIS_SOCKET_TIMEOUT)
    client = _sync_clients.get(key)
    if client is None and settings.REDIS_CLUSTER:
        client = _sync_clients[key] = redis.cluster.RedisCluster.from_url(
            settings.REDIS_URL,
            socket_connect_timeout=settings.REDIS_SOCKET_TIMEOUT,
            socket_timeout=settings.REDIS_SOCKET_TIMEOUT,
            decode_responses=True,
            retry=Retry(_backoff(), retries=2, supported_errors=_CLUSTER_RETRIED),
        )
    elif client is None:
        client = _sync_clients[key] = redis.Redis.from_url(
            settings.REDIS_URL,
            socket_connect_timeout=settings.REDIS_SOCKET_TIMEOUT,
            socket_timeout=settings.REDIS_SOCKET_TIMEOUT,
            decode_responses=True,
            retry=Retry(_backoff(), retries=2, supported_errors=_RETRIED),
            retry_on_error=list(_RETRIED),
        )
    return client
