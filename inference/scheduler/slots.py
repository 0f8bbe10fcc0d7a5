"""This process's side of the scheduler: admission, waiting for a slot, leases, release.

A request is admitted with one ticket per upstream call. Waiting costs no thread and no Redis
connection: each ticket waits on an asyncio future, and one subscription per process (the broker)
receives every grant for this process and resolves the matching future. The broker also renews the
leases of all its live tickets every few seconds, which doubles as a backstop for a grant message
that was lost (it sees the ticket running and resolves the future anyway) and tells waiting tickets
their position in the queue.

A slot exists only while its request is served. A ticket is "admitted" once the admit script's reply
says so; only admitted, unreleased tickets are renewed or re-admitted, and a ticket released while a
(re-)admission was in flight is released again once it lands. Releases go through the outbox
(inference/accounting/outbox.py), so a busy pool or a Redis restart delays them but never drops them.

When Redis restarts and forgets the leases, the broker notices the new run id, drops its pooled
connections, and puts back the calls it still runs before the restart hold ends
(inference/scheduler/redis_epoch.py); its waiting tickets go back in at the front.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass

from django.conf import settings

from common.store import keys
from common.store.client import REDIS_ERRORS, drop_pooled_connections, pubsub_client, redis_client
from inference import registry
from inference.accounting import outbox
from inference.engines import node_errors as errors
from inference.engines.node_errors import from_node
from inference.registry import ModelRoute
from inference.scheduler import background, nodehealth, queue, redis_epoch
from inference.scheduler.grants import GrantListener
from inference.scheduler.queue import policy_for
from inference.scheduler.scheduling_errors import (
    NodesUnreachable,
    NoNodeServing,
    QueueFull,
    QueueTimeout,
    SchedulingError,
    StoreUnavailable,
)
from inference.scheduler.swapper import SwapActor

log = logging.getLogger(__name__)

SUBSCRIBE_WAIT_SECONDS = 3.0
# How often a process with waiting tickets asks where they stand (their streams show it).
POSITION_ROUND_SECONDS = 1.0


class Ticket:
    """One upstream call's entry in its model's queue, then its slot lease, until released once."""

    def __init__(self, broker: Broker, route: ModelRoute, user: str, batch: bool) -> None:
        self.broker = broker
        self.route = route
        self.user = user
        self.batch = batch
        self.id = uuid.uuid4().hex
        self.request_id = errors.request_id.get()  # failures reported by the scheduler quote it
        self.future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.enqueued_at = time.monotonic()
        self.granted_at: float | None = None
        self.node: str | None = None
        self.admitted = False  # Redis confirmed the current id; until then the renewal leaves it alone
        self.readmitting = False
        self.released = False
        self.position = 0  # while waiting: its position in the queue (1 = next), as last heard
        self.eta_ms = -1  # while waiting: its expected wait, as last heard (-1: unknown)

    def resolve(self, node: str) -> None:
        if not self.future.done():
            self.granted_at = time.monotonic()
            self.node = node
            self.future.set_result(node)

    def fail(self, error: Exception) -> None:
        if not self.future.done():
            self.future.set_exception(error)

    @property
    def waiting(self) -> bool:
        return self.node is None and not self.released

    @property
    def queue_wait_ms(self) -> int:
        end = self.granted_at if self.granted_at is not None else time.monotonic()
        return int((end - self.enqueued_at) * 1000)

    async def granted(self) -> str:
        """Wait for a slot and return the node it is on; QueueTimeout after QUEUE_TIMEOUT_SECONDS in the queue."""
        remaining = settings.QUEUE_TIMEOUT_SECONDS - (time.monotonic() - self.enqueued_at)
        try:
            async with asyncio.timeout(max(0.0, remaining)):
                return await asyncio.shield(self.future)
        except TimeoutError:
            raise QueueTimeout(self.route.public_id, int(settings.QUEUE_TIMEOUT_SECONDS),
                               self.queue_wait_ms) from None

    def release(self) -> None:
        """Give the slot (or the queue entry) back, exactly once. Safe from a finally block during
        cancellation: the Redis call is left to the outbox, which is never cancelled halfway."""
        if self.released:
            return
        self.released = True
        self.future.cancel()  # nobody waits on it any more
        duration = int((time.monotonic() - self.granted_at) * 1000) if self.granted_at is not None else -1
        self.broker.forget(self)
        self.broker.send_release(self.route, self.id, duration)

    async def requeue_after_node_failure(self) -> None:
        """The node failed before this call answered anything: go to the front of the queue again
        (a new ticket), so the call runs on another node that has or loads the model."""
        old_id, old_node = self.id, self.node
        self.broker.send_release(self.route, old_id)
        log.info("retrying %s ticket after node %s failed", self.route.public_id, old_node)
        await self.readmit()

    async def readmit(self) -> None:
        """Enter the queue again, at the front, under a new ticket id (whoever waits on it keeps waiting)."""
        self.broker.forget(self)
        self.id = uuid.uuid4().hex
        self.admitted = False
        if self.future.done():
            self.future = asyncio.get_running_loop().create_future()
        self.granted_at = None
        self.node = None
        self.broker.track(self)
        self.readmitting = True
        try:
            result = await queue.admit(queue_name(self.route), policy_for(self.route), owner=self.broker.owner,
                                       user=self.user, batch=self.batch, tickets=[self.id], retry=True)
        except BaseException as exc:
            # The script may have run before the reply was lost: take the new id back out.
            self.broker.send_release(self.route, self.id)
            if not self.released:
                self.released = True
                self.broker.forget(self)
            if isinstance(exc, REDIS_ERRORS):
                raise StoreUnavailable("queue") from None
            raise
        finally:
            self.readmitting = False
        if self.released:  # the request ended while it was being re-admitted
            self.broker.send_release(self.route, self.id)
            return
        self.admitted = True
        self.position, self.eta_ms = result.position, result.eta_ms
        self.broker.resolve_granted(result.granted)


def queue_name(route: ModelRoute) -> str:
    # The Ollama name, not the public id: an admin may rename the public id, and loads are per Ollama model.
    return route.ollama_name


@dataclass
class Admission:
    tickets: list[Ticket]
    depth: int  # requests waiting in the model's queue right after this one was admitted

    @property
    def queue_wait_ms(self) -> int:
        return max(ticket.queue_wait_ms for ticket in self.tickets)

    @property
    def waiting(self) -> bool:
        return any(ticket.waiting for ticket in self.tickets)

    @property
    def position(self) -> int:
        """The position in the queue of its first waiting call (1 = next), 0 when none waits."""
        return min((t.position for t in self.tickets if t.waiting and t.position > 0), default=0)

    @property
    def eta_ms(self) -> int:
        """The expected wait of its last waiting call, as last heard; -1 when unknown."""
        etas = [t.eta_ms for t in self.tickets if t.waiting]
        return -1 if not etas or min(etas) < 0 else max(etas)

    def release_all(self) -> None:
        for ticket in self.tickets:
            ticket.release()


class Broker:
    """Per process and event loop: the grant subscription, lease renewal, and the live tickets."""

    def __init__(self) -> None:
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.tickets: dict[str, Ticket] = {}
        self.subscribed = asyncio.Event()
        self.redis_down = False  # the subscription failed and has not come back yet
        self.actor_wake = asyncio.Event()
        self._checking = asyncio.Lock()
        self.grants = GrantListener(self.owner, lambda ticket_id, node: self.resolve_granted({ticket_id: node}),
                                    self._check_all)
        self._tasks = [asyncio.create_task(self._listen()), asyncio.create_task(self._renew_forever())]
        self.actor = SwapActor(self.owner, self.actor_wake, self.subscribed)
        self._tasks.append(asyncio.create_task(self.actor.run_forever()))

    def track(self, ticket: Ticket) -> None:
        self.tickets[ticket.id] = ticket

    def forget(self, ticket: Ticket) -> None:
        self.tickets.pop(ticket.id, None)

    def resolve_granted(self, granted: dict[str, str]) -> None:
        for ticket_id, node in granted.items():
            ticket = self.tickets.get(ticket_id)
            if ticket is not None:
                ticket.resolve(node)

    def send_release(self, route: ModelRoute, ticket_id: str, duration_ms: int = -1) -> None:
        async def release() -> None:
            granted = await queue.release(queue_name(route), policy_for(route), ticket_id, duration_ms,
                                          owner=self.owner)
            self.resolve_granted(granted)  # our own grants come only in the reply

        outbox.put(f"release of ticket {ticket_id}", release)

    async def admit(self, route: ModelRoute, user: str, batch: bool, calls: int) -> Admission:
        if not self.subscribed.is_set():
            # A grant published before we listen would be lost (the renewal round would still find it).
            # While Redis is known to be down, answer at once; while the subscription is only starting
            # (a busy machine), give it a little longer.
            if self.redis_down:
                raise StoreUnavailable("queue")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(SUBSCRIBE_WAIT_SECONDS):
                    await self.subscribed.wait()
            if not self.subscribed.is_set():
                raise StoreUnavailable("queue")
        try:
            listening = await self.grants.listen_for(queue_name(route), SUBSCRIBE_WAIT_SECONDS)
        except REDIS_ERRORS:
            listening = False
        if not listening:
            raise StoreUnavailable("queue")
        tickets = [Ticket(self, route, user, batch) for _ in range(calls)]
        for ticket in tickets:
            self.track(ticket)  # before the script runs: another process may grant it at once
        try:
            result = await queue.admit(queue_name(route), policy_for(route), owner=self.owner, user=user,
                                       batch=batch, tickets=[t.id for t in tickets])
        except BaseException as exc:
            for ticket in tickets:
                self.forget(ticket)
                ticket.released = True
                # The script may have run before the reply was lost (a timeout, or the client left).
                self.send_release(route, ticket.id)
            if isinstance(exc, REDIS_ERRORS):
                raise StoreUnavailable("queue") from None
            raise
        if not result.admitted:
            for ticket in tickets:
                self.forget(ticket)
                ticket.released = True
            raise QueueFull(route.public_id, result.waiting, result.retry_after_ms)
        for ticket in tickets:
            ticket.admitted = True
            ticket.position, ticket.eta_ms = result.position, result.eta_ms
        self.resolve_granted(result.granted)
        return Admission(tickets, result.waiting)

    async def _listen(self) -> None:
        """The broadcast channels: node health, the swap actor's wake-up, failed loads. (Grants come on
        sharded channels, per model: inference/scheduler/grants.py.)"""
        while True:
            client = pubsub_client()
            pubsub = client.pubsub()
            try:
                await pubsub.subscribe(keys.NODES_CHANNEL, keys.ACTOR_WAKE_CHANNEL, keys.LOAD_FAILED_CHANNEL)
                await self._notice_restart(client)
                await nodehealth.refresh()
                self.subscribed.set()
                self.redis_down = False
                await self._check_all()  # grants sent while we were not listening
                async for message in pubsub.listen():
                    if message["type"] != "message":
                        continue
                    if message["channel"] == keys.ACTOR_WAKE_CHANNEL:
                        self.actor_wake.set()
                    elif message["channel"] == keys.LOAD_FAILED_CHANNEL:
                        self._fail_waiting(json.loads(message["data"]))
                    else:
                        nodehealth.apply_message(message["data"])
                        self._fail_stranded()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - Redis went away: resubscribe when it is back
                self.subscribed.clear()
                self.redis_down = True
                log.warning("grant subscription lost (%s); reconnecting", exc)
                await asyncio.sleep(0.5)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                    await client.aclose()

    async def _notice_restart(self, client) -> None:
        """A new Redis (its run id changed): its pooled connections are dead, and it has forgotten our
        calls. Put them back now, while the restart hold keeps new grants from overshooting the bound."""
        if await redis_epoch.observe(client):
            log.warning("Redis restarted: re-asserting %d live tickets", len(self.tickets))
            await drop_pooled_connections()
            await self._check_all()

    def _fail_stranded(self) -> None:
        """Waiting tickets whose model has no reachable node left get a clear error now, not a timeout."""
        for ticket in list(self.tickets.values()):
            if ticket.node is None and not nodehealth.usable(ticket.route.node_urls):
                ticket.fail(NodesUnreachable(ticket.route.public_id))

    async def _fail_drained(self) -> None:
        """Waiting tickets whose model no enabled node serves any more (an admin drained its nodes, or it
        was admitted from a catalogue snapshot a moment older than the drain) get a clear error now, not
        a queue timeout: nothing would ever load it."""
        waiting = [ticket for ticket in self.tickets.values() if ticket.node is None]
        if not waiting:
            return
        served = {route.public_id for route in await registry.all_models() if route.node_urls}
        for ticket in waiting:
            if ticket.route.public_id not in served:
                ticket.fail(NoNodeServing(ticket.route.public_id))

    def _fail_waiting(self, failure: dict) -> None:
        """The swap actor could not load a model: its waiting requests get Ollama's reason."""
        for ticket in list(self.tickets.values()):
            if ticket.node is None and queue_name(ticket.route) == failure["model"]:
                ticket.fail(from_node(failure["status"], failure["error"], ticket.route.public_id,
                                        request=ticket.request_id))

    async def _renew_forever(self) -> None:
        renew_every = settings.SLOT_LEASE_SECONDS / 3
        last_renewal = time.monotonic()
        while True:
            await asyncio.sleep(min(renew_every, POSITION_ROUND_SECONDS))
            due = time.monotonic() - last_renewal >= renew_every
            if not due and not any(t.waiting for t in self.tickets.values()):
                continue
            try:
                if due:
                    last_renewal = time.monotonic()
                    await self._notice_restart(redis_client())
                    await nodehealth.refresh()
                await self._check_all()
                self._fail_stranded()
                await self._fail_drained()
            except REDIS_ERRORS as exc:
                log.warning("could not renew slot leases: %s", exc)
            except Exception:  # noqa: BLE001 - this loop must outlive any one bad round
                log.exception("lease renewal round failed")

    async def _check_all(self) -> None:
        """Renew every admitted ticket's lease; resolve grants we missed; tell waiting tickets where
        they stand; put back what Redis lost. One round at a time (a restart may start one early)."""
        async with self._checking:
            await self._check_all_once()

    async def _check_all_once(self) -> None:
        by_model: dict[str, list[Ticket]] = {}
        for ticket in list(self.tickets.values()):
            if ticket.admitted and not ticket.released and not ticket.readmitting:
                by_model.setdefault(queue_name(ticket.route), []).append(ticket)
        for model, tickets in by_model.items():
            policy = policy_for(tickets[0].route)
            ids = [t.id for t in tickets]
            states = await queue.renew(model, policy, ids)
            lost_running = []
            for ticket, ticket_id in zip(tickets, ids, strict=True):
                state = states[ticket_id]
                if ticket.released or not ticket.admitted or ticket.id != ticket_id:
                    continue  # released or re-admitted while we asked
                if state.gone and ticket.node is not None:
                    lost_running.append((ticket.id, ticket.user, ticket.node))
                elif state.gone:
                    # Its lease expired while it waited (this process stalled longer than the lease, or
                    # Redis lost its data): it goes back in at the front rather than failing.
                    log.warning("ticket %s lost its queue entry while waiting; re-admitting it", ticket.id)
                    ticket.readmitting = True
                    background.spawn(self._readmit(ticket))
                elif state.node is not None:
                    ticket.resolve(state.node)
                else:
                    ticket.position, ticket.eta_ms = state.position, state.eta_ms
            if lost_running:
                # Calls still running that Redis forgot: count them again, so the bound holds.
                await queue.reassert(model, policy, self.owner, lost_running)

    async def _readmit(self, ticket: Ticket) -> None:
        try:
            await ticket.readmit()
        except SchedulingError as error:
            ticket.fail(error)


_brokers: dict[int, Broker] = {}


def start() -> None:
    """Start this process's broker and swap actor (from the first request of any kind), so pinned
    models load and node health is watched even before the first API call."""
    if settings.QUEUE_ENABLED:
        broker()


def broker() -> Broker:
    key = id(asyncio.get_running_loop())
    current = _brokers.get(key)
    if current is None:
        current = _brokers[key] = Broker()
    return current


class DirectTicket:
    """QUEUE_ENABLED=false: no queue and no bound, each call goes straight to a node in turn (this is
    what the scheduling benchmark compares the queue against)."""

    queue_wait_ms = 0

    def __init__(self, route: ModelRoute) -> None:
        self.route = route
        self.node: str | None = None

    async def granted(self) -> str:
        if self.node is None:
            self.node = pick_node_in_turn(route_with_usable_nodes(self.route))
        return self.node

    def release(self) -> None:
        pass

    async def requeue_after_node_failure(self) -> None:
        self.node = None


def route_with_usable_nodes(route: ModelRoute) -> ModelRoute:
    return dataclasses.replace(route, node_urls=nodehealth.usable(route.node_urls))


_turns: dict[str, itertools.count] = {}


def pick_node_in_turn(route: ModelRoute) -> str:
    if not route.node_urls:
        raise NoNodeServing(route.public_id)
    turn = next(_turns.setdefault(route.public_id, itertools.count()))
    return route.node_urls[turn % len(route.node_urls)]


async def admit(route: ModelRoute, *, user: str, batch: bool, calls: int) -> Admission:
    """Admit a request of `calls` upstream calls into the model's queue, or raise QueueFull."""
    if not route.node_urls:
        raise NoNodeServing(route.public_id)
    if not settings.QUEUE_ENABLED:
        return Admission([DirectTicket(route) for _ in range(calls)], 0)
    if not nodehealth.usable(route.node_urls):
        raise NodesUnreachable(route.public_id)
    return await broker().admit(route, user, batch, calls)
