"""A model that is still loading, on both sides of v0.30.0.

Since v0.30.0 Ollama lists a runner only once llama-server runs (`llamaServerRunner.Load` waits, then the
scheduler adds it to `s.loaded`), so while it loads requests for it queue as pending loads, /api/ps does not
show it, and a `keep_alive: 0` unload finds nothing. Before, the loading runner was listed at once and
requests for it waited for that load. The simulator follows its configured version string.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import ollama
import pytest

from tests.sim.simkit import CHAT, clean, hold_loads, loaded_names, loading_names, release_loads, sim_config
from tests.support.processes import eventually
from tests.support.simulator import SimulatorProcess

pytestmark = pytest.mark.timeout(60)

BUSY = b'{"error":"server busy, please try again.  maximum pending requests exceeded"}'
CURRENT = "0.32.15"
OLDER = "0.29.1"


@pytest.fixture(scope="module")
def current_sim() -> Iterator[SimulatorProcess]:
    with SimulatorProcess(sim_config({"version": CURRENT}), args=["--max-queue", "2"]) as sim:
        yield sim


@pytest.fixture(scope="module")
def older_sim() -> Iterator[SimulatorProcess]:
    with SimulatorProcess(sim_config({"version": OLDER}), args=["--max-queue", "2"]) as sim:
        yield sim


@pytest.fixture
def current(current_sim: SimulatorProcess) -> Iterator[SimulatorProcess]:
    yield clean(current_sim)
    release_loads(current_sim, CHAT)


@pytest.fixture
def older(older_sim: SimulatorProcess) -> Iterator[SimulatorProcess]:
    yield clean(older_sim)
    release_loads(older_sim, CHAT)


def generate(client: httpx.AsyncClient, **body):
    return client.post("/api/generate", json={"model": CHAT, "prompt": "x", "stream": False,
                                              "options": {"num_predict": 1}, **body})


async def cold_burst(sim: SimulatorProcess, client: httpx.AsyncClient) -> list[asyncio.Task]:
    """Six requests for a model that is not loaded, all sent while its load is held open."""
    hold_loads(sim, CHAT)
    first = asyncio.create_task(generate(client))
    await asyncio.to_thread(eventually, lambda: loading_names(sim) == [CHAT], what="the first request started the load")
    return [first, *(asyncio.create_task(generate(client)) for _ in range(5))]


@pytest.mark.asyncio
async def test_it_queues_requests_for_a_loading_model_and_rejects_past_max_queue(current):
    async with httpx.AsyncClient(base_url=current.url, timeout=30) as client:
        burst = await cold_burst(current, client)
        await asyncio.to_thread(eventually, lambda: sum(task.done() for task in burst) == 3, what="three answered at once")
        rejected = [task.result() for task in burst if task.done()]
        assert [r.status_code for r in rejected] == [503] * 3
        assert all(r.content == BUSY for r in rejected)
        stats = current.stats()
        assert stats["pending_queue"]["depth"] == 2  # two wait as pending loads, the first is loading
        assert stats["models"][CHAT]["queue_full_rejections"] == 3
        assert not burst[0].done()
        release_loads(current, CHAT)
        accepted = await asyncio.gather(*(task for task in burst if not task.done()))
    assert [r.status_code for r in accepted] == [200] * 3
    stats = current.model_stats(CHAT)
    # One load; the two queued requests found the model loaded when the loop reached them.
    assert stats["loads"] == 1 and stats["fast_path"] == 0 and stats["completed"] == 3


@pytest.mark.asyncio
async def test_it_lets_every_request_wait_for_a_loading_model_before_0_30(older):
    async with httpx.AsyncClient(base_url=older.url, timeout=30) as client:
        burst = await cold_burst(older, client)
        await asyncio.to_thread(eventually, lambda: older.model_stats(CHAT).get("in_flight") == 6, what="all six inside")
        assert older.stats()["pending_queue"]["depth"] == 0  # they took the fast path to the loading runner
        release_loads(older, CHAT)
        replies = await asyncio.gather(*burst)
    assert [r.status_code for r in replies] == [200] * 6
    stats = older.model_stats(CHAT)
    assert stats["loads"] == 1 and stats["fast_path"] == 5 and stats["queue_full_rejections"] == 0


@pytest.mark.asyncio
async def test_it_leaves_a_loading_model_out_of_ps(current):
    async with ollama.AsyncClient(host=current.url) as client:
        hold_loads(current, CHAT)
        load = asyncio.create_task(client.generate(model=CHAT))
        await asyncio.to_thread(eventually, lambda: loading_names(current) == [CHAT], what="loading")
        assert (await client.ps()).models == []
        release_loads(current, CHAT)
        assert (await load).done_reason == "load"
        assert [m.model for m in (await client.ps()).models] == [CHAT]


@pytest.mark.asyncio
async def test_it_lists_a_loading_model_in_ps_before_0_30(older):
    async with ollama.AsyncClient(host=older.url) as client:
        hold_loads(older, CHAT)
        load = asyncio.create_task(client.generate(model=CHAT))
        await asyncio.to_thread(eventually, lambda: loading_names(older) == [CHAT], what="loading")
        assert [m.model for m in (await client.ps()).models] == [CHAT]
        release_loads(older, CHAT)
        await load


@pytest.mark.asyncio
async def test_it_ignores_an_unload_sent_while_the_model_loads(current):
    async with ollama.AsyncClient(host=current.url) as client:
        hold_loads(current, CHAT)
        load = asyncio.create_task(client.generate(model=CHAT, prompt="x", options={"num_predict": 1}))
        await asyncio.to_thread(eventually, lambda: loading_names(current) == [CHAT], what="loading")
        unload = await client.generate(model=CHAT, keep_alive=0)
        assert unload.done_reason == "unload"  # answered at once, as always
        release_loads(current, CHAT)
        reply = await load
    assert reply.done_reason == "length"
    assert loaded_names(current) == [CHAT]  # still there once its request ended: nothing was expired
    assert current.model_stats(CHAT)["unloads"] == 0


@pytest.mark.asyncio
async def test_it_unloads_after_the_load_when_asked_while_loading_before_0_30(older):
    async with ollama.AsyncClient(host=older.url) as client:
        hold_loads(older, CHAT)
        load = asyncio.create_task(client.generate(model=CHAT, prompt="x", options={"num_predict": 1}))
        await asyncio.to_thread(eventually, lambda: loading_names(older) == [CHAT], what="loading")
        assert (await client.generate(model=CHAT, keep_alive=0)).done_reason == "unload"
        release_loads(older, CHAT)
        await load
    await asyncio.to_thread(eventually, lambda: loaded_names(older) == [], what="unloaded once its request ended")
    assert older.model_stats(CHAT)["unloads"] == 1
