"""Client disconnects at every stage free what they held at once (Ollama server/sched.go, llm/llama_server.go)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import ollama
import openai
import pytest

from tests.sim.simkit import CHAT, CODER, clean, hold_loads, loading_names, sim_config
from tests.support.processes import eventually
from tests.support.simulator import SimulatorProcess

pytestmark = pytest.mark.timeout(60)

HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def cancel_sim() -> Iterator[SimulatorProcess]:
    with SimulatorProcess(sim_config({"num_parallel": 1, "tokens_per_second": 50,
                                      "response_tokens": [200, 300]})) as sim:
        yield sim


@pytest.fixture
def sim(cancel_sim: SimulatorProcess) -> SimulatorProcess:
    clean(cancel_sim)
    httpx.post(cancel_sim.url + "/api/generate", json={"model": CHAT}, timeout=30)  # preload
    return cancel_sim


def generating(sim: SimulatorProcess) -> int:
    return sim.model_stats(CHAT).get("generating", 0)


@pytest.mark.asyncio
async def test_it_frees_the_slot_as_soon_as_a_streaming_client_leaves(sim):
    async with httpx.AsyncClient(base_url=sim.url, timeout=30) as client:
        body = {"model": CHAT, "messages": HI, "options": {"num_predict": 200}}  # 4 s of work
        async with client.stream("POST", "/api/chat", json=body) as response:
            lines = 0
            async for _line in response.aiter_lines():
                lines += 1
                if lines == 3:
                    break
        # Freed while the abandoned stream still had most of its 200 tokens to go: it is counted as
        # cancelled, not completed, and the slot is free for the next request.
        await asyncio.to_thread(eventually, lambda: generating(sim) == 0, what="slot freed")
        assert sim.model_stats(CHAT)["completed"] == 1  # only the preload
        reply = (await client.post("/api/generate", json={"model": CHAT, "prompt": "x", "stream": False,
                                                          "options": {"num_predict": 1}})).json()
    assert reply["eval_count"] == 1
    stats = sim.model_stats(CHAT)
    assert stats["cancellations"] == 1 and stats["cancellations_by_stage"]["generation"] == 1
    assert stats["in_flight"] == 0 and stats["completed"] == 2  # the preload and the reply
    assert "Traceback" not in sim.output()


@pytest.mark.asyncio
async def test_it_forgets_a_request_that_leaves_while_waiting_for_a_slot(sim):
    async with ollama.AsyncClient(host=sim.url) as client:
        holder = asyncio.create_task(client.generate(model=CHAT, prompt="x", options={"num_predict": 200}))
        await asyncio.to_thread(eventually, lambda: generating(sim) == 1, what="slot taken")
        waiter = asyncio.create_task(client.generate(model=CHAT, prompt="y", options={"num_predict": 1}))
        await asyncio.to_thread(eventually, lambda: sim.model_stats(CHAT).get("waiting_for_slot") == 1, what="waiting")
        waiter.cancel()
        await asyncio.to_thread(eventually, lambda: sim.model_stats(CHAT).get("waiting_for_slot") == 0, what="waiter gone")
        assert sim.model_stats(CHAT)["cancellations_by_stage"]["slot"] == 1
        holder.cancel()
        await asyncio.to_thread(eventually, lambda: generating(sim) == 0, what="holder gone")
        reply = await client.generate(model=CHAT, prompt="z", options={"num_predict": 1})
    assert reply.eval_count == 1
    stats = sim.model_stats(CHAT)
    assert stats["cancellations"] == 2 and stats["waiting_for_slot"] == 0 and stats["in_flight"] == 0


@pytest.mark.asyncio
async def test_it_aborts_a_load_when_its_client_leaves(sim):
    hold_loads(sim, CODER)  # the load cannot finish by itself: if it goes away, it was aborted
    async with ollama.AsyncClient(host=sim.url) as client:
        first = asyncio.create_task(client.generate(model=CODER, prompt="x", options={"num_predict": 1}))
        await asyncio.to_thread(eventually, lambda: CODER in loading_names(sim), what="load started")
        first.cancel()
        await asyncio.to_thread(eventually, lambda: CODER not in loading_names(sim), what="load thrown away")
        stats = sim.model_stats(CODER)
        assert stats["load_aborts"] == 1 and stats["loads"] == 0
        assert stats["cancellations_by_stage"]["load"] == 1
        sim.set_faults(CODER, load_seconds=0.3)
        again = await client.generate(model=CODER, prompt="x", options={"num_predict": 1})
    # The next request loads from scratch (the simulator reports at least the configured load time).
    assert again.load_duration >= 300_000_000
    assert sim.model_stats(CODER)["loads"] == 1


@pytest.mark.asyncio
async def test_it_frees_the_slot_when_a_non_streaming_request_is_cancelled(sim):
    async with ollama.AsyncClient(host=sim.url) as client:
        task = asyncio.create_task(client.chat(model=CHAT, messages=HI, options={"num_predict": 200}))
        await asyncio.to_thread(eventually, lambda: generating(sim) == 1, what="generating")
        task.cancel()
        await asyncio.to_thread(eventually, lambda: generating(sim) == 0, timeout=2, what="slot freed")
    assert sim.model_stats(CHAT)["cancellations_by_stage"]["generation"] == 1


@pytest.mark.asyncio
async def test_it_frees_the_slot_when_an_openai_stream_is_closed(sim):
    client = openai.AsyncOpenAI(base_url=sim.url + "/v1", api_key="unused", max_retries=0)
    stream = await client.chat.completions.create(model=CHAT, messages=HI, stream=True, max_tokens=200)
    chunks = 0
    async for _ in stream:
        chunks += 1
        if chunks == 2:
            break
    await stream.close()
    await client.close()
    await asyncio.to_thread(eventually, lambda: generating(sim) == 0, timeout=2, what="slot freed")
    assert sim.model_stats(CHAT)["cancellations_by_stage"]["generation"] == 1
