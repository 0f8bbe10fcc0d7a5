"""Swap-aware scheduling on a node whose memory fits one model at a time: requests are collated by
model, a model with requests in flight is never evicted, no model waits past the swap bound, loads
and unloads are Gatehouse's explicit choice, and a pinned model stays loaded through it all."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support.processes import eventually
from tests.support.stack import Stack, sim_config

A, B, C = "sched-swap-a:latest", "sched-swap-b:latest", "sched-swap-c:latest"
PINNED = "sched-pinned:latest"
D, E = "sched-swap-d:latest", "sched-swap-e:latest"  # beside the pinned model on its own node
GIB = 1 << 30
# Each runner is 1 GiB of weights + 2048 ctx x 4 slots x 128 KiB of KV cache = 2 GiB.
RUNNER = 2 * GIB


@pytest.fixture(scope="module")
def stack(django_db_setup, django_db_blocker):
    config = sim_config([A, B, C], tokens_per_second=40, reply_tokens=10, gpu_memory="3GiB")
    pinned = sim_config([PINNED, D, E], tokens_per_second=40, reply_tokens=10, gpu_memory="5GiB")
    with django_db_blocker.unblock():
        world = Stack({"gpu": config, "dedicated": pinned}, webs=2, budgets={"gpu": 3 * GIB, "dedicated": 5 * GIB},
                      models={PINNED: {"pinned": True}}, env={"SWAP_MAX_WAIT_SECONDS": "3"})
    yield world
    with django_db_blocker.unblock():
        world.stop()


def _mixed_burst(stack, models: list[str], count: int) -> list:
    start = threading.Barrier(count)

    def one(i: int):
        start.wait()
        return stack.chat(models[i % len(models)], web=i % 2)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


def test_it_collates_requests_by_model_instead_of_thrashing(stack):
    sim = stack.sims["gpu"]
    sim.reset()
    responses = _mixed_burst(stack, [A, B, C], 60)
    assert [r.status_code for r in responses] == [200] * 60
    stats = sim.stats()["models"]
    loads = sum(stats[m]["loads"] for m in (A, B, C))
    assert loads <= 6, stats  # 60 requests, 3 models: a load per model turn, not per request
    # Gatehouse unloaded explicitly; Ollama never had to evict on its own or cut a request short.
    assert sum(stats[m]["evictions"] for m in (A, B, C)) == 0
    assert sum(stats[m]["errors"] + stats[m]["cancellations"] for m in (A, B, C)) == 0
    assert len(stack.ps("gpu")) == 1


def test_no_model_waits_past_the_swap_bound_while_another_keeps_the_node_busy(stack):
    stop = threading.Event()

    def flood() -> int:  # A never runs out of waiting requests
        answered = 0
        while not stop.is_set():
            response = stack.chat(A, user="ben")
            assert response.status_code == 200, response.text
            answered += 1
        return answered

    with ThreadPoolExecutor(8) as pool:
        floods = [pool.submit(flood) for _ in range(8)]
        try:
            stack.wait_loaded(A, "gpu")
            eventually(lambda: stack.waiting(A) >= 2, what="A's queue never empties")
            response = stack.chat(C, timeout=60)
            assert response.status_code == 200
            # Bound 3 s, then A drains its running requests (~0.3 s each) and C loads.
            assert int(response.headers["x-gatehouse-queue-wait-ms"]) < 3000 + 3000
        finally:
            stop.set()
    # A request of the flood that failed fails the test here (result() raises what its thread raised).
    assert all(future.result() >= 1 for future in floods)


def test_it_loads_and_unloads_explicitly_with_the_models_context(stack):
    sim = stack.sims["gpu"]
    assert stack.chat(B).status_code == 200
    running = {m["name"]: m for m in __import__("httpx").get(sim.url + "/api/ps").json()["models"]}
    assert list(running) == [B]
    assert running[B]["context_length"] == 2048  # the preload carried the model's num_ctx: no reload
    assert sim.model_stats(B)["reloads"] == 0


def test_a_pinned_model_is_loaded_at_start_and_never_evicted(stack):
    sim = stack.sims["dedicated"]
    eventually(lambda: PINNED in stack.ps("dedicated"), what="the pinned model loaded without any request")
    entry = next(m for m in __import__("httpx").get(sim.url + "/api/ps").json()["models"] if m["name"] == PINNED)
    assert int(entry["expires_at"][:4]) > 2300  # keep_alive -1: Ollama's "forever" (about 290 years ahead)
    # Only one of D and E fits beside it; swapping between them never touches the pinned model.
    for model in (D, E, D, E):
        assert stack.chat(model, web=0).status_code == 200
        assert PINNED in stack.ps("dedicated")
    assert sim.model_stats(PINNED)["unloads"] == 0


def test_staff_see_queues_nodes_and_memory_at_the_status_endpoint(stack, django_db_blocker):
    assert stack.chat(B).status_code == 200
    with django_db_blocker.unblock():
        staff = stack.staff_session()
    try:
        status = eventually(lambda: (r := staff.get("/portal/api/status")).status_code == 200 and r.json(),
                            what="status")
        gpu = stack.sims["gpu"].url
        node = status["nodes"][gpu]
        assert node["state"] == "up"
        assert node["memory_budget_bytes"] == 3 * GIB
        eventually(lambda: staff.get("/portal/api/status").json()["nodes"][gpu]["memory_used_bytes"] == RUNNER,
                   what="memory from /api/ps")
        model = staff.get("/portal/api/status").json()["models"][B]
        assert model["queue_depth"] == 0 and model["in_flight"] == 0
        assert model["nodes"][gpu]["placement"] == "ready"
        assert model["nodes"][gpu]["memory_bytes"] == RUNNER
    finally:
        staff.close()
    anonymous = __import__("httpx").get(stack.webs[0].url + "/portal/api/status")
    assert anonymous.status_code in (401, 403)
