"""The bounded pending queue and its 503 (Ollama server/sched.go getRunner and ErrMaxQueue); a cancelled
request keeps its place until the scheduler loop reaches it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import ollama
import pytest

from tests.sim.simkit import (
    CHAT,
    CODER,
    EMBEDDER,
    MODELS,
    THINKER,
    clean,
    hold_loads,
    loaded_names,
    loading_names,
    release_loads,
    sim_config,
)
from tests.support.processes import eventually
from tests.support.simulator import SimulatorProcess

pytestmark = pytest.mark.timeout(60)

BUSY = b'{"error":"server busy, please try again.  maximum pending requests exceeded"}'
EXTRA = "phi3:mini"
CONFIG = sim_config({"max_queue": 2, "max_loaded_models": 10, "gpu_memory": "64GiB"},
                    models=[{**m, "load_seconds": 0.5} for m in MODELS]
                    + [{"name": EXTRA, "size": 2_176_178_913, "capabilities": ["completion"], "load_seconds": 0.5}])


@pytest.fixture(scope="module")
def queue_sim() -> Iterator[SimulatorProcess]:
    with SimulatorProcess(CONFIG) as sim:
        yield sim


@pytest.fixture
def sim(queue_sim: SimulatorProcess) -> SimulatorProcess:
    return clean(queue_sim)


def generate(client: httpx.AsyncClient, model: str):
    return client.post("/api/generate", json={"model": model, "prompt": "x", "stream": False,
                                              "options": {"num_predict": 1}})


async def fill_queue(sim: SimulatorProcess, client: httpx.AsyncClient) -> list[asyncio.Task]:
    """One model loading (taken off the queue by the scheduler loop) and two more waiting in it.

    The load is held until release_loads(sim, CHAT), so the queue stays full for as long as a test needs."""
    hold_loads(sim, CHAT)
    loading = asyncio.create_task(generate(client, CHAT))
    await asyncio.to_thread(eventually, lambda: CHAT in loading_names(sim), what="first load started")
    queued = [asyncio.create_task(generate(client, model)) for model in (CODER, THINKER)]
    await asyncio.to_thread(eventually, lambda: sim.stats()["pending_queue"]["depth"] == 2, what="two requests queued")
    return [loading, *queued]


@pytest.mark.asyncio
async def test_it_answers_503_at_once_when_the_pending_queue_is_full(sim):
    async with httpx.AsyncClient(base_url=sim.url, timeout=30) as client:
        accepted = await fill_queue(sim, client)
        rejected = await generate(client, EXTRA)
        # Answered while the queue is still full (the held load cannot finish): no waiting at all.
        assert not any(task.done() for task in accepted)
        assert rejected.status_code == 503
        assert rejected.content == BUSY  # two spaces after "again."
        assert rejected.headers["content-type"] == "application/json; charset=utf-8"
        assert "retry-after" not in rejected.headers
        via_openai = await client.post("/v1/chat/completions", json={
            "model": EXTRA, "messages": [{"role": "user", "content": "hi"}]})
        assert via_openai.status_code == 503
        assert via_openai.json() == {"error": {
            "message": "server busy, please try again.  maximum pending requests exceeded",
            "type": "api_error", "param": None, "code": None}}
        with pytest.raises(ollama.ResponseError) as caught:
            await ollama.AsyncClient(host=sim.url).chat(model=EXTRA, messages=[{"role": "user", "content": "x"}])
        assert caught.value.status_code == 503
        release_loads(sim, CHAT)
        results = await asyncio.gather(*accepted)
    assert [r.status_code for r in results] == [200, 200, 200]
    stats = sim.stats()
    assert stats["queue_full_rejections"] == 3
    assert stats["models"][EXTRA]["queue_full_rejections"] == 3
    assert stats["models"][EXTRA]["loads"] == 0
    assert stats["pending_queue"]["max_depth"] == 2 and stats["pending_queue"]["capacity"] == 2


@pytest.mark.asyncio
async def test_it_serves_loaded_models_while_the_queue_is_full(sim):
    async with httpx.AsyncClient(base_url=sim.url, timeout=30) as client:
        await client.post("/api/generate", json={"model": EXTRA})
        accepted = await fill_queue(sim, client)
        embed = await client.post("/api/embed", json={"model": EMBEDDER, "input": "x"})
        assert embed.status_code == 503 and embed.content == BUSY
        served = await generate(client, EXTRA)
        assert served.status_code == 200
        assert not any(task.done() for task in accepted)  # served past the full queue, not after it
        release_loads(sim, CHAT)
        await asyncio.gather(*accepted)


@pytest.mark.asyncio
async def test_it_keeps_a_cancelled_request_in_the_queue_until_the_loop_drops_it(sim):
    async with httpx.AsyncClient(base_url=sim.url, timeout=30) as client:
        loading, *queued = await fill_queue(sim, client)
        for task in queued:
            task.cancel()
        await asyncio.to_thread(eventually, lambda: sim.model_stats(CODER).get("cancellations") == 1, what="cancel seen")
        # The places stay taken until the scheduler loop reaches them (a Go channel keeps its items).
        assert (await generate(client, EXTRA)).status_code == 503
        release_loads(sim, CHAT)
        assert (await loading).status_code == 200
        await asyncio.to_thread(eventually, lambda: sim.stats()["pending_queue"]["depth"] == 0, what="queue drained")
        assert (await generate(client, EXTRA)).status_code == 200
    for model in (CODER, THINKER):
        stats = sim.model_stats(model)
        assert stats["loads"] == 0, model  # dropped when dequeued, never loaded
        assert stats["cancellations_by_stage"]["queue"] == 1
    assert sorted(loaded_names(sim)) == sorted([CHAT, EXTRA])
