"""A model whose queue fills up takes another node even when idle models hold that node's memory: a
class sending at once must not overflow into 503s while a GPU sits holding a model nobody uses. The
scale simulation (docs/scale.md) found the queue-full answers and the long waits this prevents."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support.processes import eventually
from tests.support.stack import Stack, sim_config

HOT = "spread-hot:latest"  # on both nodes; 4 slots, 8 places in its queue
IDLE = "spread-idle:latest"  # only on the second node, loaded there and then left alone
GIB = 1 << 30


@pytest.fixture(scope="module")
def stack(django_db_setup, django_db_blocker):
    # Each runner is 1 GiB of weights + 2048 ctx x 4 slots x 128 KiB of KV cache = 2 GiB: one per node.
    first = sim_config([HOT], tokens_per_second=10, reply_tokens=10, gpu_memory="3GiB")
    second = sim_config([HOT, IDLE], tokens_per_second=10, reply_tokens=10, gpu_memory="3GiB")
    with django_db_blocker.unblock():
        world = Stack({"first": first, "second": second}, webs=2, budgets={"first": 3 * GIB, "second": 3 * GIB},
                      models={HOT: {"concurrency": 4, "max_queue": 8}})
    yield world
    with django_db_blocker.unblock():
        world.stop()


def test_a_model_with_half_its_queue_waiting_takes_a_node_an_idle_model_held(stack):
    stack.chat(IDLE, max_tokens=1)
    stack.wait_loaded(IDLE, "second")
    stack.chat(HOT, max_tokens=1)
    stack.wait_loaded(HOT, "first")
    assert stack.ps("second") == [IDLE]
    for sim in stack.sims.values():
        sim.reset()

    start = threading.Barrier(12)

    def ask(i: int):
        start.wait()
        return stack.chat(HOT, web=i % 2, max_tokens=40)  # 4 s each: 4 run, 8 wait on one node

    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(ask, range(12)))
    assert [a.status_code for a in answers] == [200] * 12
    # The idle model made room: Gatehouse unloaded it and loaded the busy one beside its first node.
    eventually(lambda: stack.placement(HOT).get(stack.sims["second"].url) == "ready",
               what=f"{HOT} ready on the second node", timeout=30)
    second = stack.sims["second"].model_stats(HOT)
    assert second["requests"] > 0, "the second node served none of the queue"
    assert second["max_in_flight"] <= 4 and stack.sims["first"].model_stats(HOT)["max_in_flight"] <= 4
    assert stack.sims["second"].model_stats(IDLE)["evictions"] == 0  # unloaded by Gatehouse, not by Ollama


SLOW = "spread-slow:latest"  # a long stream on the third node keeps it there while it drains
NEEDY = "spread-needy:latest"  # only on the third node: it waits for SLOW to make room
SPARE = "spread-spare:latest"  # idle on the fourth node, where SLOW can go


@pytest.fixture(scope="module")
def drain_stack(django_db_setup, django_db_blocker):
    third = sim_config([SLOW, NEEDY], tokens_per_second=40, reply_tokens=10, gpu_memory="3GiB")
    third["models"][0]["tokens_per_second"] = 2  # 10 tokens: 5 s a call here
    fourth = sim_config([SLOW, SPARE], tokens_per_second=40, reply_tokens=10, gpu_memory="3GiB")
    with django_db_blocker.unblock():
        world = Stack({"third": third, "fourth": fourth}, budgets={"third": 3 * GIB, "fourth": 3 * GIB},
                      env={"SWAP_MAX_WAIT_SECONDS": "1"})
    yield world
    with django_db_blocker.unblock():
        world.stop()


def test_a_model_being_drained_serves_its_new_requests_on_another_node(drain_stack):
    stack = drain_stack
    third = stack.sims["third"].url
    stack.chat(SPARE, max_tokens=1)
    stack.wait_loaded(SPARE, "fourth")
    stack.chat(SLOW, max_tokens=1)  # fits as things are only on the third node
    stack.wait_loaded(SLOW, "third")
    with ThreadPoolExecutor(2) as pool:
        long_call = pool.submit(stack.chat, SLOW)  # 5 s
        eventually(lambda: stack.running(SLOW) == 1, what=f"{SLOW} running")
        needy = pool.submit(stack.chat, NEEDY, max_tokens=1)  # forces SLOW out of the third node
        eventually(lambda: stack.placement(SLOW).get(third) == "draining", what=f"{SLOW} draining", timeout=10)
        # Before, SLOW's next request waited for its own drain: for its longest call still running.
        assert stack.chat(SLOW, max_tokens=1).status_code == 200
        assert not long_call.done(), "answered only once the drain was over"
        assert stack.placement(SLOW).get(stack.sims["fourth"].url) == "ready"  # it went where SPARE idled
        assert long_call.result().status_code == 200 and needy.result().status_code == 200
