"""The per-model queues and slot leases in Redis, changed by atomic scripts (common/store/lua/).

Every state change is one Lua script, so the bounds hold with any number of web processes and
nothing is ever read, modified and written back from Python. Each script touches the keys of one
model only; they share the hash tag `gh:{<model>}:` (common/store/keys.py `model_prefix`) so each runs
in one Redis Cluster slot.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis.asyncio as aioredis
from django.conf import settings

from common.store import keys, scripts
from common.store.client import redis_client
from inference.registry import ModelRoute
from inference.scheduler import nodehealth, redis_epoch


def now_ms() -> int:
    # Wall-clock milliseconds: leases are compared across processes (and machines), so not monotonic.
    return int(time.time() * 1000)


def forecast(client, model: str, concurrency: int, nodes: list[str]) -> tuple[int, int, int]:
    """(waiting, nodes loading it, expected wait in ms of a request arriving now, -1 if none can serve):
    a read-only script, run with a sync or async client (sync: the status pages)."""
    return scripts.get(client, "forecast")(keys=[keys.model_prefix(model)], args=[now_ms(), concurrency, len(nodes), *nodes])


@dataclass(frozen=True)
class Policy:
    """What the scripts need to know about a model besides its state: limits and eligible nodes."""

    concurrency: int
    max_queue: int
    lease_ms: int
    batch_bound_ms: int
    nodes: tuple[str, ...]  # healthy, enabled nodes that have the model, in preference order

    def args(self) -> list:
        """The arguments every scheduler script starts with (common/store/lua/common.lua `policy`)."""
        return [now_ms(), self.lease_ms, self.concurrency, self.batch_bound_ms, self.max_queue,
                redis_epoch.grants_hold_until_ms(), redis_epoch.grace_ms(), len(self.nodes), *self.nodes]


def policy_for(route: ModelRoute) -> Policy:
    """A model's policy as of now: its limits from the catalogue, the nodes that are up. Here, next to
    Policy, because both sides of the scheduler need it: this process's tickets (inference/scheduler/slots.py)
    and the swap actor (inference/scheduler/swapper.py), which the broker in slots starts."""
    return Policy(
        concurrency=route.concurrency,
        max_queue=route.max_queue,
        lease_ms=int(settings.SLOT_LEASE_SECONDS * 1000),
        batch_bound_ms=int(settings.BATCH_MAX_WAIT_SECONDS * 1000),
        nodes=nodehealth.usable(route.node_urls),
    )


@dataclass(frozen=True)
class AdmitResult:
    admitted: bool
    waiting: int  # tickets waiting after the call
    granted: dict[str, str]  # ticket -> node, for tickets granted during the call (any owner)
    position: int = 0  # admitted and waiting: the first waiting ticket's position in the queue (1 = next)
    eta_ms: int = 0  # admitted and waiting: its expected wait; -1 when unknown
    retry_after_ms: int = 0  # refused: when to come back (a reservation)


def _pairs(flat: list) -> dict[str, str]:
    return {flat[i]: flat[i + 1] for i in range(0, len(flat), 2)}


async def admit(model: str, policy: Policy, *, owner: str, user: str, batch: bool, tickets: list[str],
                retry: bool = False) -> AdmitResult:
    """Admit all the tickets or none. Grants that go to `owner` are only in the reply, not published.

    Safe to repeat with the same tickets (the Redis client retries a call whose connection broke)."""
    args = [*policy.args(), owner, user, "b" if batch else "", "1" if retry else "0", len(tickets), *tickets]
    reply = await scripts.get(redis_client(), "admit")(keys=[keys.model_prefix(model)], args=args)
    if not reply[0]:
        return AdmitResult(False, int(reply[1]), {}, retry_after_ms=int(reply[2]))
    return AdmitResult(True, int(reply[1]), _pairs(reply[4:]), position=int(reply[2]), eta_ms=int(reply[3]))


async def release(model: str, policy: Policy, ticket: str, duration_ms: int = -1, owner: str = "") -> dict[str, str]:
    """Free a ticket's slot or queue entry. Grants that go to `owner` are only in the reply."""
    args = [*policy.args(), duration_ms, ticket, owner]
    return _pairs(await scripts.get(redis_client(), "release")(keys=[keys.model_prefix(model)], args=args))


async def dispatch(model: str, policy: Policy, client: aioredis.Redis | None = None) -> dict[str, str]:
    client = client or redis_client()
    return _pairs(await scripts.get(client, "dispatch")(keys=[keys.model_prefix(model)], args=policy.args()))


@dataclass(frozen=True)
class TicketState:
    node: str | None  # where it runs; None while it waits
    gone: bool = False  # Redis no longer knows it (reaped, or Redis lost its data)
    position: int = 0  # waiting: its position in the queue (1 = next)
    eta_ms: int = -1  # waiting: its expected wait, -1 when unknown


async def renew(model: str, policy: Policy, tickets: list[str]) -> dict[str, TicketState]:
    """Extend leases, and say where each ticket stands."""
    reply = await scripts.get(redis_client(), "renew")(keys=[keys.model_prefix(model)], args=[*policy.args(), *tickets])
    states = {}
    for ticket, (node, position, eta) in zip(tickets, reply, strict=True):
        states[ticket] = TicketState(None if node in ("", "-") else node, gone=node == "-", position=int(position), eta_ms=int(eta))
    return states


async def reassert(model: str, policy: Policy, owner: str, running: list[tuple[str, str, str]]) -> None:
    """Put back (ticket, user, node) of calls this process still runs, after Redis lost them."""
    args = [*policy.args(), owner, *(value for entry in running for value in entry)]
    await scripts.get(redis_client(), "reassert")(keys=[keys.model_prefix(model)], args=args)


async def set_place(model: str, node: str, state: str, client: aioredis.Redis | None = None,
                    load_ms: int = -1) -> bool:
    """ready | loading | unloading (refused while requests run: the node is set to draining) | gone.
    `load_ms`, with ready after a load: how long the load took, for the model's measured load time."""
    client = client or redis_client()
    return bool(await scripts.get(client, "place")(keys=[keys.model_prefix(model)], args=[node, state, now_ms(), load_ms]))


async def note_born(models: list[str]) -> None:
    """Start the restart hold of every model whose state Redis does not have yet (a Redis that is new,
    or lost its data), now rather than at its first request: the swap actor does it every round, so
    after a restart the hold starts within a round, and in a new deployment it is over before the
    first requests come. SET NX: a model whose state exists keeps its birth time."""
    async with redis_client().pipeline(transaction=False) as pipe:
        for model in models:
            pipe.set(keys.born(model), now_ms(), nx=True)
        await pipe.execute()


@dataclass
class ModelState:
    """A read-only picture of one model's queue, for the swap actor, the status page and Retry-After."""

    waiting: int
    oldest_wait_ms: int  # how long the longest-waiting ticket has waited; 0 when none waits
    placement: dict[str, str]  # node -> ready | loading | draining | unloading
    running: dict[str, int]  # node -> tickets running there
    avg_service_ms: float | None


def read_state(pipe, model: str, nodes: list[str]) -> int:
    """Queue the reads behind a ModelState on a pipeline (sync or async); returns how many replies."""
    pipe.zcard(keys.enqueued(model))
    pipe.zrange(keys.enqueued(model), 0, 0, withscores=True)
    pipe.hgetall(keys.placement(model))
    pipe.hget(keys.service(model), "avg_ms")
    for node in nodes:
        pipe.zcard(keys.run(model, node))
    return 4 + len(nodes)


def parse_state(replies: list, nodes: list[str]) -> ModelState:
    waiting, oldest, placement, avg, *running = replies
    oldest_wait = max(0, now_ms() - int(oldest[0][1])) if oldest else 0
    return ModelState(int(waiting), oldest_wait, dict(placement),
                      dict(zip(nodes, (int(n) for n in running), strict=True)), float(avg) if avg else None)


async def model_states(models: dict[str, list[str]]) -> dict[str, ModelState]:
    """Several models' states (model -> its nodes) in one round trip."""
    async with redis_client().pipeline(transaction=False) as pipe:
        counts = [read_state(pipe, model, nodes) for model, nodes in models.items()]
        replies = await pipe.execute()
    states, start = {}, 0
    for (model, nodes), count in zip(models.items(), counts, strict=True):
        states[model] = parse_state(replies[start:start + count], nodes)
        start += count
    return states
