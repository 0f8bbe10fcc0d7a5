"""Retry-After reservations (common/store/lua/admit.lua) on a clock the test sets: the admission script
itself on the suite's real Redis, with one model on one node and one slot, nothing waiting allowed.
End to end, with the OpenAI SDK's retries, tests/test_queue_under_load.py shows the same."""

from __future__ import annotations

import uuid

import pytest

from inference.scheduler import queue

NODE = "http://node.invalid:11434"
POLICY = queue.Policy(concurrency=1, max_queue=0, lease_ms=600_000, batch_bound_ms=600_000, nodes=(NODE,))
CALL_MS = 400  # the model's measured call: under a second, so a reservation is held for 1 s


@pytest.fixture
def model(redis_server) -> str:
    """A fresh model name, so no state is shared between tests."""
    return f"resv-{uuid.uuid4().hex[:8]}:latest"


@pytest.fixture
def clock(monkeypatch):
    """The scripts' clock (queue.now_ms), set by the test."""
    now = {"ms": 1_900_000_000_000}
    monkeypatch.setattr(queue, "now_ms", lambda: now["ms"])
    return now


async def loaded(model: str, clock) -> None:
    """The model ready on the node, past the hold every model's new state starts with (a Redis that
    lost its data must not grant before the running calls are put back: inference/scheduler/redis_epoch.py),
    and its call time measured on one call."""
    await queue.set_place(model, NODE, "ready")
    await queue.dispatch(model, POLICY)
    clock["ms"] += 60_000
    (ticket,) = (await ask(model)).granted
    await queue.release(model, POLICY, ticket, duration_ms=CALL_MS)


async def ask(model: str, person: str = "ann") -> queue.AdmitResult:
    """One request (a due reservation is claimed by any request of the person who holds it)."""
    return await queue.admit(model, POLICY, owner="web-1", user=person, batch=False, tickets=[uuid.uuid4().hex])


@pytest.mark.asyncio
async def test_refused_clients_are_told_one_place_each(model, clock):
    await loaded(model, clock)
    assert (await ask(model)).granted  # runs, and holds the one slot
    waits = [(await ask(model)).retry_after_ms for _ in range(3)]
    assert waits[0] > 0 and waits[1] == waits[0] + CALL_MS and waits[2] == waits[1] + CALL_MS


@pytest.mark.asyncio
async def test_one_persons_requests_refused_again_together_are_told_different_places(model, clock):
    """The call runs late: both came back on their reservations and found no room. Each keeps its turn
    (ahead of a newcomer), but a place is promised once: they are told one place each, not both the next."""
    await loaded(model, clock)
    assert (await ask(model)).granted
    first, second = (await ask(model)).retry_after_ms, (await ask(model)).retry_after_ms
    clock["ms"] += second + 100  # both reservations are due; the running call is long past its forecast
    again = [(await ask(model)).retry_after_ms, (await ask(model)).retry_after_ms]
    newcomer = (await ask(model, "bob")).retry_after_ms
    assert again[0] > 0 and again[1] == again[0] + CALL_MS and newcomer == again[1] + CALL_MS, (first, second, again)
