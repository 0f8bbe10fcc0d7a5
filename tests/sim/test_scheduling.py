"""Slots, the fast path, one-load-at-a-time and reloads (Ollama server/sched.go; loading models: test_loading.py)."""

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
    clean,
    hold_loads,
    loading_names,
    release_loads,
    sim_config,
)
from tests.support.processes import eventually
from tests.support.simulator import SimulatorProcess

pytestmark = pytest.mark.timeout(60)

GIB = 2**30

HI = [{"role": "user", "content": "hi"}]
# Natural replies are longer than any num_predict used here, so every request decodes exactly that many.
CONFIG = sim_config({"num_parallel": 2, "max_queue": 1, "tokens_per_second": 200, "response_tokens": [100, 200]})


@pytest.fixture(scope="module")
def sched_sim() -> Iterator[SimulatorProcess]:
    with SimulatorProcess(CONFIG) as sim:
        yield sim


@pytest.fixture
def sim(sched_sim: SimulatorProcess) -> SimulatorProcess:
    return clean(sched_sim)


def preload(sim: SimulatorProcess, model: str, **options) -> None:
    body = {"model": model, "options": options} if options else {"model": model}
    assert httpx.post(sim.url + "/api/generate", json=body, timeout=30).json()["done_reason"] == "load"


@pytest.mark.asyncio
async def test_it_runs_at_most_num_parallel_requests_per_model_at_once(sim):
    preload(sim, CHAT)
    async with ollama.AsyncClient(host=sim.url) as client:
        replies = await asyncio.gather(*(client.chat(model=CHAT, messages=HI, options={"num_predict": 20})
                                         for _ in range(6)))
    assert all(reply.eval_count == 20 for reply in replies)
    stats = sim.model_stats(CHAT)
    assert stats["max_generating"] == 2
    assert stats["max_in_flight"] == 6
    assert stats["max_waiting_for_slot"] == 4
    assert stats["completed"] == stats["requests"] == 7  # the preload counts too
    assert stats["generating"] == stats["in_flight"] == stats["waiting_for_slot"] == 0


@pytest.mark.asyncio
async def test_it_serves_slot_waiters_first_come_first_served(sim):
    """Both slots are held by requests that stall until their client leaves, so nothing finishes while
    the five waiters arrive (each one is seen waiting before the next is sent: the order is certain,
    however slow the machine). Then one slot is freed: the waiters get it one at a time, so the order
    they finish in is the order they got the slot in."""
    preload(sim, CHAT)
    finished: list[int] = []
    hold = {"model": CHAT, "prompt": "hold", "options": {"num_predict": 100, "sim_stall_after_tokens": 1}}
    async with httpx.AsyncClient(base_url=sim.url, timeout=60) as http, ollama.AsyncClient(host=sim.url) as client:

        async def one(i: int) -> None:
            await client.generate(model=CHAT, prompt=str(i), options={"num_predict": 5})
            finished.append(i)

        async with http.stream("POST", "/api/generate", json=hold) as first, \
                http.stream("POST", "/api/generate", json=hold) as second:
            holding = [first.aiter_lines(), second.aiter_lines()]  # kept: a dropped iterator closes its stream
            for lines in holding:  # each has its slot and has sent its one token
                await anext(lines)
            tasks = []
            for i in range(5):
                tasks.append(asyncio.create_task(one(i)))
                await asyncio.to_thread(eventually, lambda n=i + 1: sim.model_stats(CHAT).get("waiting_for_slot") == n,
                                        what=f"request {i} waiting for a slot", timeout=30)
            await first.aclose()  # its client leaves: the slot is free
            await asyncio.wait_for(asyncio.gather(*tasks), timeout=45)
            assert sim.model_stats(CHAT)["generating"] == 1  # the other one still holds its slot
    assert finished == [0, 1, 2, 3, 4]
    assert sim.model_stats(CHAT)["max_waiting_for_slot"] == 5


@pytest.mark.asyncio
async def test_it_queues_slot_waiters_without_bound_or_503(sim):
    """MAX_QUEUE is 1 here, yet requests for a loaded model never see a 503 (ollama#7758)."""
    preload(sim, CHAT)
    async with httpx.AsyncClient(base_url=sim.url, timeout=30) as client:
        responses = await asyncio.gather(*(
            client.post("/api/generate", json={"model": CHAT, "prompt": "x", "stream": False,
                                               "options": {"num_predict": 10}}) for _ in range(12)))
    assert [r.status_code for r in responses] == [200] * 12
    stats = sim.stats()
    assert stats["queue_full_rejections"] == 0
    assert stats["models"][CHAT]["max_waiting_for_slot"] == 10
    assert stats["models"][CHAT]["fast_path"] == 12


@pytest.mark.asyncio
async def test_it_gives_embedding_models_a_single_slot(sim):
    sim.set_faults(EMBEDDER, time_to_first_token_ms=30)
    async with ollama.AsyncClient(host=sim.url) as client:
        await client.embed(model=EMBEDDER, input="")
        results = await asyncio.gather(*(client.embed(model=EMBEDDER, input=f"text {i}") for i in range(4)))
    assert all(len(r.embeddings) == 1 for r in results)
    stats = sim.model_stats(EMBEDDER)
    assert stats["max_generating"] == 1 and stats["max_waiting_for_slot"] == 3
    assert sim.stats()["loaded"][0]["num_parallel"] == 1


def test_it_gives_architectures_ollama_cannot_batch_a_single_slot():
    """Ollama server/sched.go `load` forces num_parallel to 1 for these, whatever OLLAMA_NUM_PARALLEL says."""
    families = {"one-a:1b": "qwen3next", "one-b:1b": "qwen35", "one-c:1b": "lfm2", "many:1b": "llama"}
    models = [{"name": name, "family": family, "size": GIB, "capabilities": ["completion"],
               "kv_bytes_per_token": 1024} for name, family in families.items()]
    config = sim_config({"num_parallel": 4, "num_ctx": 4096, "max_loaded_models": 4}, models=models, pullable=[])
    with SimulatorProcess(config) as sim:
        client = ollama.Client(host=sim.url)
        for name in families:
            client.generate(model=name, keep_alive=-1)
        parallel = {row["model"]: row["num_parallel"] for row in sim.stats()["loaded"]}
        sizes = {m.model: m.size for m in client.ps().models}
    assert parallel == {"one-a:1b": 1, "one-b:1b": 1, "one-c:1b": 1, "many:1b": 4}
    assert sizes["one-a:1b"] == GIB + 4096 * 1 * 1024  # the KV cache holds one slot, not four
    assert sizes["many:1b"] == GIB + 4096 * 4 * 1024


@pytest.mark.asyncio
async def test_it_counts_slot_wait_in_total_duration_not_load_duration(sim):
    preload(sim, CHAT)
    sim.set_faults(CHAT, tokens_per_second=100)
    async with ollama.AsyncClient(host=sim.url) as client:
        hogs = [asyncio.create_task(client.generate(model=CHAT, prompt="x", options={"num_predict": 40}))
                for _ in range(2)]
        await asyncio.to_thread(eventually, lambda: sim.model_stats(CHAT).get("generating") == 2, what="both slots busy")
        waiter = await client.generate(model=CHAT, prompt="y", options={"num_predict": 2})
        await asyncio.gather(*hogs)
    waited_ns = waiter.total_duration - waiter.load_duration - waiter.prompt_eval_duration - waiter.eval_duration
    assert waiter.load_duration < 50_000_000
    assert waited_ns > 200_000_000  # it sat behind two 0.4 s generations


def test_it_reloads_only_when_a_load_time_option_differs(sim):
    client = ollama.Client(host=sim.url)
    client.chat(model=CHAT, messages=HI, options={"num_ctx": 2048, "num_predict": 1})
    client.chat(model=CHAT, messages=HI, options={"num_ctx": 2048, "num_predict": 1, "temperature": 0.1,
                                                  "seed": 3, "num_gpu": -1})
    assert sim.model_stats(CHAT)["reloads"] == 0
    assert client.ps().models[0].context_length == 2048
    client.chat(model=CHAT, messages=HI, options={"num_ctx": 8192, "num_predict": 1})
    client.chat(model=CHAT, messages=HI, options={"num_ctx": 8192, "num_batch": 1024, "num_predict": 1})
    stats = sim.model_stats(CHAT)
    assert stats["reloads"] == 2 and stats["loads"] == 3 and stats["unloads"] == 2
    running = client.ps().models
    assert [m.model for m in running] == [CHAT]
    assert running[0].context_length == 8192
    # The KV cache scales with num_ctx x num_parallel (2 slots here), and a 1024 batch adds 768 MiB.
    assert running[0].size == 2_019_393_189 + 8192 * 2 * 128 * 1024 + 768 * 2**20


def test_it_clamps_num_ctx_to_the_training_context(sim):
    ollama.Client(host=sim.url).generate(model=CODER, prompt="x", options={"num_ctx": 10**7, "num_predict": 1})
    assert httpx.get(sim.url + "/api/ps").json()["models"][0]["context_length"] == 32768


@pytest.mark.asyncio
async def test_it_loads_one_model_at_a_time_and_counts_the_queue_in_load_duration(sim):
    sim.set_faults(CHAT, load_seconds=0.3)
    sim.set_faults(CODER, load_seconds=0.3)
    async with ollama.AsyncClient(host=sim.url) as client:
        first = asyncio.create_task(client.generate(model=CHAT, prompt="x", options={"num_predict": 1}))
        await asyncio.to_thread(eventually, lambda: CHAT in loading_names(sim), what="chat loading")
        second = await client.generate(model=CODER, prompt="x", options={"num_predict": 1})
        first_reply = await first
    assert first_reply.load_duration >= 280_000_000
    assert second.load_duration >= 500_000_000  # waited for the first load, then did its own


@pytest.mark.asyncio
async def test_it_serves_a_loaded_model_while_another_one_loads(sim):
    preload(sim, CHAT)
    hold_loads(sim, CODER)
    async with ollama.AsyncClient(host=sim.url) as client:
        slow = asyncio.create_task(client.generate(model=CODER, prompt="x", options={"num_predict": 1}))
        await asyncio.to_thread(eventually, lambda: CODER in loading_names(sim), what="coder loading")
        quick = await client.generate(model=CHAT, prompt="x", options={"num_predict": 1})
        assert not slow.done() and CODER in loading_names(sim)  # served while the other load still runs
        release_loads(sim, CODER)
        await slow
    assert quick.load_duration < 50_000_000
    assert sim.model_stats(CHAT)["fast_path"] == 1


@pytest.mark.asyncio
async def test_it_queues_every_request_behind_loads_without_the_fast_path():
    """Before v0.11.5 every request went through the pending queue, so a load blocked loaded models too."""
    with SimulatorProcess(sim_config({"num_parallel": 2}), args=["--no-fast-path"]) as sim:
        preload(sim, CHAT)
        sim.set_faults(CODER, load_seconds=0.8)
        async with ollama.AsyncClient(host=sim.url) as client:
            slow = asyncio.create_task(client.generate(model=CODER, prompt="x", options={"num_predict": 1}))
            await asyncio.to_thread(eventually, lambda: CODER in loading_names(sim), what="coder loading")
            blocked = await client.generate(model=CHAT, prompt="x", options={"num_predict": 1})
            await slow
        assert blocked.load_duration > 400_000_000
        stats = sim.model_stats(CHAT)
        assert stats["fast_path"] == 0 and stats["loads"] == 1
