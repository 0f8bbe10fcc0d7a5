"""Ollama holds at most OLLAMA_MAX_LOADED_MODELS models (3 per GPU by default) whatever memory is free.
Gatehouse keeps to that count itself (the node's "max loaded models"), so Ollama never picks a victim on
its own: a victim it picks while busy, which Gatehouse then keeps sending requests to, is never unloaded,
and every load on that server hangs behind it (ollama/ollama#17408)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support.processes import eventually
from tests.support.stack import Stack, sim_config

A, B = "sched-count-a:latest", "sched-count-b:latest"
GIB = 1 << 30


@pytest.fixture(scope="module")
def stack(django_db_setup, django_db_blocker):
    # Memory for both, room for one: the server's OLLAMA_MAX_LOADED_MODELS is 1, and its node says so.
    config = sim_config([A, B], tokens_per_second=10, reply_tokens=20, max_loaded_models=1)
    with django_db_blocker.unblock():
        world = Stack({"gpu": config}, webs=1, budgets={"gpu": 24 * GIB}, node_fields={"gpu": {"max_loaded_models": 1}},
                      env={"SWAP_MAX_WAIT_SECONDS": "3"})
    yield world
    with django_db_blocker.unblock():
        world.stop()


def test_a_model_gets_its_turn_while_another_keeps_the_server_busy(stack):
    sim = stack.sims["gpu"]
    sim.reset()
    assert stack.chat(A, max_tokens=1).status_code == 200
    eventually(lambda: stack.placement(A).get(stack.nodes[0].url) == "ready", what="A loaded")
    enough = threading.Event()

    def keep_a_busy():  # A requests two at a time (2 s each), until B is answered
        while not enough.is_set():
            assert stack.chat(A).status_code == 200

    with ThreadPoolExecutor(3) as pool:
        busy = [pool.submit(keep_a_busy) for _ in range(2)]
        eventually(lambda: stack.running(A) >= 1, what="A busy")
        try:
            # Without the limit Gatehouse loaded B beside A; Ollama chose busy A as its victim, A's
            # next request kept it, and B's load hung until A's 30-minute keep_alive ran out.
            assert stack.chat(B, max_tokens=2, timeout=60).status_code == 200
        finally:
            enough.set()
        for future in busy:
            future.result()
    stats = sim.stats()["models"]
    assert stats[A]["evictions"] == 0 and stats[B]["evictions"] == 0  # Ollama never had to choose
    assert stats[A]["unloads"] >= 1  # Gatehouse unloaded A itself to make room for B
    assert len(stack.ps("gpu")) <= 1
