"""Which nodes are down, shared by every process through Redis and mirrored in each process.

A node that refuses connections or times out on the request path is marked down at once (not at the
next poll), so no other request is sent there; the swap actor's health poll brings it back. Every
process learns of both within a moment: through the `gh:nodes` channel, and by re-reading the hash
on each lease-renewal round in case a message was missed.
"""

from __future__ import annotations

import logging

from common.store import keys
from common.store.client import redis_client

log = logging.getLogger(__name__)

_down: set[str] = set()


def is_down(url: str) -> bool:
    return url in _down


def usable(urls: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(url for url in urls if url not in _down)


def apply_message(message: str) -> None:
    state, _, url = message.partition(" ")
    if state == "down":
        _down.add(url)
    elif state == "up":
        _down.discard(url)


def replace_all(urls: set[str]) -> None:
    _down.clear()
    _down.update(urls)


async def refresh() -> None:
    replace_all(set(await redis_client().hkeys(keys.NODES_DOWN)))


async def mark_down(url: str, reason: str) -> None:
    if url not in _down:
        log.warning("taking node %s out: %s", url, reason)
    _down.add(url)
    client = redis_client()
    # The write, then the news: no transaction, which a Redis Cluster cannot give a keyless PUBLISH. A
    # process that misses the message (or dies between the two) still sees the node down at refresh().
    await client.hset(keys.NODES_DOWN, url, reason[:500])
    await client.publish(keys.NODES_CHANNEL, f"down {url}")


async def mark_up(url: str) -> None:
    _down.discard(url)
    client = redis_client()
    if await client.hdel(keys.NODES_DOWN, url):
        log.info("node %s answers again", url)
        await client.publish(keys.NODES_CHANNEL, f"up {url}")


async def down_nodes() -> dict[str, str]:
    return await redis_client().hgetall(keys.NODES_DOWN)
