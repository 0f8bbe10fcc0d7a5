"""Eviction: VRAM budget, model-count limit, victim order, draining, head-of-line blocking (Ollama server/sched.go)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import ollama
import pytest

from tests.sim.simkit import clean, loaded_names, sim_config
from tests.support.processes import eventually
from tests.support.simulator import SimulatorProcess

pytestmark = pytest.mark.timeout(60)

GIB = 2**30


def model(name: str, size: float) -> dict:
    return {"name": name, "size": int(size * GIB), "capabilities": ["completion"], "load_seconds": 0.05}


# Three 1.5 GiB models cannot share 4 GiB: a second one fits (1.5 <= 0.8 x 2.5 free), a third does not.
CONFIG = sim_config(
    {"gpu_memory": "4GiB", "kv_bytes_per_token": 1, "tokens_per_second": 100, "response_tokens": [200, 300]},
    models=[model("alpha:1b", 1.5), model("beta:1b", 1.5), model("gamma:1b", 1.5), model("big:7b", 5),
            model("t1:tiny", 0.05), model("t2:tiny", 0.05), model("t3:tiny", 0.05), model("t4:tiny", 0.05)],
    pullable=[])


@pytest.fixture(scope="module")
def evict_sim() -> Iterator[SimulatorProcess]:
    with SimulatorProcess(CONFIG) as sim:
        yield sim


@pytest.fixture
def sim(evict_sim: SimulatorProcess) -> SimulatorProcess:
    return clean(evict_sim)


def load(sim: SimulatorProcess, name: str, keep_alive: str | int = "5m") -> None:
    reply = httpx.post(sim.url + "/api/generate", json={"model": name, "keep_alive": keep_alive}, timeout=30)
    assert reply.json()["done_reason"] == "load", reply.text


async def busy(client: ollama.AsyncClient, name: str, tokens: int = 60, **kwargs) -> float:
    """Run one slow generation; returns when it finished (monotonic time)."""
    await client.generate(model=name, prompt="x", options={"num_predict": tokens}, **kwargs)
    return time.monotonic()


def test_it_evicts_the_idle_runner_with_the_shortest_keep_alive_not_the_least_recently_used(sim):
    load(sim, "beta:1b", keep_alive="5m")
    load(sim, "alpha:1b", keep_alive="10m")
    load(sim, "beta:1b")  # beta is now the most recently used; an LRU would evict alpha
    load(sim, "gamma:1b")
    assert sorted(loaded_names(sim)) == ["alpha:1b", "gamma:1b"]
    assert sim.model_stats("beta:1b")["evictions"] == 1
    assert sim.model_stats("alpha:1b").get("evictions", 0) == 0


def blob_path(sim: SimulatorProcess, name: str) -> str:
    """The weights file a runner is keyed by, from the FROM line of /api/show's modelfile."""
    modelfile = httpx.post(sim.url + "/api/show", json={"model": name}).json()["modelfile"]
    return next(line[5:] for line in modelfile.splitlines() if line.startswith("FROM /"))


def test_it_breaks_keep_alive_ties_by_blob_path_not_by_name(sim):
    load(sim, "beta:1b")
    load(sim, "alpha:1b")
    first_by_path = min(("alpha:1b", "beta:1b"), key=lambda name: blob_path(sim, name))
    assert first_by_path == "beta:1b"  # so a tie-break by name would pick alpha instead
    load(sim, "gamma:1b")
    assert sorted(loaded_names(sim)) == ["alpha:1b", "gamma:1b"]
    assert sim.model_stats("beta:1b")["evictions"] == 1


@pytest.mark.asyncio
async def test_it_prefers_an_idle_victim_over_a_busy_one(sim):
    load(sim, "alpha:1b", keep_alive="1m")
    load(sim, "beta:1b", keep_alive="10m")
    async with ollama.AsyncClient(host=sim.url) as client:
        running = asyncio.create_task(busy(client, "alpha:1b"))
        await asyncio.to_thread(eventually, lambda: sim.model_stats("alpha:1b").get("generating") == 1, what="alpha busy")
        reply = await client.generate(model="gamma:1b", prompt="x", options={"num_predict": 1})
        assert not running.done()  # gamma did not wait for alpha
        await running
    assert reply.load_duration < 300_000_000
    assert sorted(loaded_names(sim)) == ["alpha:1b", "gamma:1b"]


@pytest.mark.asyncio
async def test_it_waits_for_a_busy_victim_to_drain_instead_of_killing_it(sim):
    load(sim, "alpha:1b", keep_alive="5m")
    load(sim, "beta:1b", keep_alive="10m")
    async with ollama.AsyncClient(host=sim.url) as client:
        alpha = asyncio.create_task(busy(client, "alpha:1b", tokens=60))
        beta = asyncio.create_task(busy(client, "beta:1b", tokens=120))
        await asyncio.to_thread(eventually, lambda: sim.stats()["totals"]["generating"] == 2, what="both busy")
        reply = await client.generate(model="gamma:1b", prompt="x", options={"num_predict": 1})
        gamma_done = time.monotonic()
        alpha_done = await alpha
        await beta
    assert gamma_done > alpha_done  # the victim finished its work first
    assert reply.load_duration > 300_000_000  # ... and that wait counts as load time
    assert sorted(loaded_names(sim)) == ["beta:1b", "gamma:1b"]
    assert sim.model_stats("alpha:1b")["evictions"] == 1
    assert sim.model_stats("alpha:1b")["errors"] == 0


@pytest.mark.asyncio
async def test_it_blocks_every_other_load_while_it_waits_for_an_eviction(sim):
    """Head-of-line blocking (ollama#14578): t1 would fit, but it queues behind gamma's eviction wait."""
    load(sim, "alpha:1b", keep_alive="5m")
    load(sim, "beta:1b", keep_alive="10m")
    async with ollama.AsyncClient(host=sim.url) as client:
        alpha = asyncio.create_task(busy(client, "alpha:1b", tokens=60))
        beta = asyncio.create_task(busy(client, "beta:1b", tokens=60))
        await asyncio.to_thread(eventually, lambda: sim.stats()["totals"]["generating"] == 2, what="both busy")
        gamma = asyncio.create_task(client.generate(model="gamma:1b", prompt="x", options={"num_predict": 1}))
        await asyncio.to_thread(eventually, lambda: "gamma:1b" in sim.stats()["models"], what="gamma scheduled")
        small = await client.generate(model="t1:tiny", prompt="x", options={"num_predict": 1})
        small_done = time.monotonic()
        alpha_done = await alpha
        await asyncio.gather(gamma, beta)
    assert small_done > alpha_done
    assert small.load_duration > 300_000_000
    assert sorted(loaded_names(sim)) == ["beta:1b", "gamma:1b", "t1:tiny"]


def test_it_limits_the_number_of_loaded_models(sim):
    load(sim, "t1:tiny", keep_alive="1m")  # the shortest keep_alive: the victim
    for name in ("t2:tiny", "t3:tiny", "t4:tiny"):
        load(sim, name)
    assert sorted(loaded_names(sim)) == ["t2:tiny", "t3:tiny", "t4:tiny"]  # 3 = auto for one GPU
    assert sim.stats()["config"]["max_runners"] == 3
    assert sim.model_stats("t1:tiny")["evictions"] == 1


def test_it_offloads_part_of_a_lone_model_that_does_not_fit(sim):
    load(sim, "big:7b")
    row = httpx.get(sim.url + "/api/ps").json()["models"][0]
    assert row["size"] > 5 * GIB and row["size_vram"] == 4 * GIB  # "20%/80% CPU/GPU"
    load(sim, "alpha:1b")  # nothing else fits beside it
    assert loaded_names(sim) == ["alpha:1b"]


@pytest.mark.asyncio
async def test_it_lets_a_keep_alive_resurrect_a_draining_victim(sim):
    """ollama#17408: while a victim drains, a request that sets keep_alive keeps it alive, so the pending
    load waits until the victim is unloaded some other way."""
    load(sim, "alpha:1b", keep_alive="5m")
    load(sim, "beta:1b", keep_alive="10m")
    async with ollama.AsyncClient(host=sim.url) as client:
        alpha = asyncio.create_task(busy(client, "alpha:1b", tokens=40))
        beta = asyncio.create_task(busy(client, "beta:1b", tokens=40))
        await asyncio.to_thread(eventually, lambda: sim.stats()["totals"]["generating"] == 2, what="both busy")
        gamma = asyncio.create_task(client.generate(model="gamma:1b", prompt="x", options={"num_predict": 1}))
        await asyncio.to_thread(eventually, lambda: "gamma:1b" in sim.stats()["models"], what="gamma waiting")
        await busy(client, "alpha:1b", tokens=1, keep_alive="10m")  # the fast path still serves alpha
        await asyncio.gather(alpha, beta)
        # Time passes (half a second of generation on beta at 100 tokens a second, paced by the
        # simulator), and nothing unloads alpha: gamma is stuck behind it.
        await busy(client, "beta:1b", tokens=50)
        assert not gamma.done()
        assert sorted(await asyncio.to_thread(loaded_names, sim)) == ["alpha:1b", "beta:1b"]
        assert (await client.generate(model="alpha:1b", keep_alive=0)).done_reason == "unload"
        reply = await gamma
    assert reply.done
    assert sorted(loaded_names(sim)) == ["beta:1b", "gamma:1b"]
