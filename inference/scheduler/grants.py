"""The grant channels of one web process: where the scheduler scripts say that a waiting ticket of this
process got a slot.

The script that grants a slot publishes it (lua/common.lua, `grant`) with SPUBLISH on a sharded channel
in the model's own slot, `gh:{<model>}:g:<owner>` (keys.grant_channel). On a Redis Cluster a grant so
travels only to the shard that holds the model's queue, and is read there; a plain PUBLISH would be
forwarded over the cluster bus to every node. A process listens on the channel of each model it admits
tickets for, from before its first admission: a grant published before the subscription would be lost
(the broker's renewal round would still find it, a second later).

One connection per Redis node holds the subscriptions of the channels whose slots that node serves (with
one Redis, one connection), and a reader task per connection resolves the grants. A connection that
breaks is opened again with its channels, and then the renewal round runs at once for what was granted
meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

import redis.asyncio.cluster as aiocluster
from django.conf import settings
from redis.connection import parse_url

from common.store import keys
from common.store.client import node_pubsub_client, redis_client

log = logging.getLogger(__name__)

RECONNECT_SECONDS = 0.5
RESEND_SECONDS = 1.0


class GrantListener:
    def __init__(self, owner: str, on_grant: Callable[[str, str], None],
                 on_reconnect: Callable[[], Awaitable[None]]) -> None:
        self.owner = owner
        self.on_grant = on_grant
        self.on_reconnect = on_reconnect
        self._nodes: dict[tuple[str, int], _NodeSubscription] = {}
        self._confirmed: dict[str, asyncio.Event] = {}  # channel -> Redis confirmed the subscription
        self._node_by_channel: dict[str, tuple[str, int]] = {}

    async def listen_for(self, model: str, wait_seconds: float) -> bool:
        """Listen to the grants of `model` (subscribing once); True once Redis confirmed the subscription,
        False if it did not within `wait_seconds`."""
        channel = keys.grant_channel(model, self.owner)
        if channel not in self._node_by_channel:
            address = await _node_of(channel)
            self._node_by_channel.setdefault(channel, address)
            self._confirmed.setdefault(channel, asyncio.Event())
        confirmed = self._confirmed[channel]
        if not confirmed.is_set():
            # First use, or not confirmed yet (a reconnect in progress): (re)send the SSUBSCRIBE, which
            # Redis takes any number of times.
            address = self._node_by_channel[channel]
            node = self._nodes.get(address)
            if node is None:
                node = self._nodes[address] = _NodeSubscription(self, address)
            await node.add(channel)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait_seconds):
                    await confirmed.wait()
        return confirmed.is_set()

    def _confirm(self, channel: str) -> None:
        if channel in self._confirmed:
            self._confirmed[channel].set()

    def _unconfirm(self, channels: set[str]) -> None:
        for channel in channels:
            if channel in self._confirmed:
                self._confirmed[channel].clear()


async def _node_of(channel: str) -> tuple[str, int]:
    """The node whose slots hold `channel`: the one Redis, or the cluster's master of the channel's slot."""
    client = redis_client()
    if isinstance(client, aiocluster.RedisCluster):
        await client.initialize()
        node = client.get_node_from_key(channel)
        return node.host, int(node.port)
    options = parse_url(settings.REDIS_URL)
    return options.get("host", "localhost"), int(options.get("port", 6379))


class _NodeSubscription:
    """The subscriptions held on one Redis node, on a connection of their own, and the task reading them."""

    def __init__(self, listener: GrantListener, address: tuple[str, int]) -> None:
        self.listener = listener
        self.address = address
        self.channels: set[str] = set()
        self.pubsub = None  # while connected
        self.sent: dict[str, float] = {}  # channel -> when its last SSUBSCRIBE was sent on this connection
        self.task: asyncio.Task | None = None

    async def add(self, channel: str) -> None:
        self.channels.add(channel)
        if self.task is None:  # its first channel: it is subscribed to when the reader connects
            self.task = asyncio.create_task(self._read_forever())
        elif self.pubsub is not None and time.monotonic() - self.sent.get(channel, -RESEND_SECONDS) >= RESEND_SECONDS:
            # A burst of first requests for a model sends it once; one still unconfirmed later, again.
            self.sent[channel] = time.monotonic()
            with contextlib.suppress(Exception):  # a broken connection: the reader subscribes it again
                await self.pubsub.ssubscribe(channel)

    async def _read_forever(self) -> None:
        reconnected = False
        while True:
            client = node_pubsub_client(*self.address)  # no read timeout: it waits for grants
            pubsub = client.pubsub()
            try:
                sent = set(self.channels)
                self.sent = dict.fromkeys(sent, time.monotonic())
                await pubsub.ssubscribe(*sent)
                self.pubsub = pubsub
                if added := self.channels - sent:  # added while the first SSUBSCRIBE was on its way
                    self.sent.update(dict.fromkeys(added, time.monotonic()))
                    await pubsub.ssubscribe(*added)
                if reconnected:
                    await self.listener.on_reconnect()  # grants published while we were not listening
                async for message in pubsub.listen():
                    if message["type"] == "ssubscribe":
                        self.listener._confirm(message["channel"])
                    elif message["type"] == "smessage":
                        ticket_id, _, node = message["data"].partition(" ")
                        self.listener.on_grant(ticket_id, node)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the node went away: subscribe again when it is back
                log.warning("grant subscription on %s:%s lost (%s); reconnecting", *self.address, exc)
            finally:
                self.pubsub = None
                self.listener._unconfirm(self.channels)
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                    await client.aclose()
            reconnected = True
            await asyncio.sleep(RECONNECT_SECONDS)
