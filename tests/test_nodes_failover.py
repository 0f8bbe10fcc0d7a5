"""Several nodes: traffic stays where the model is loaded, spreads when the queue builds, survives a
node dying under load, comes back when the node does, and a drained node finishes what it runs."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from common.store import keys
from tests.support.processes import eventually
from tests.support.simulator import SimulatorProcess
from tests.support.stack import Stack, sim_config

MODEL = "sched-multi:latest"


@pytest.fixture(scope="module")
def stack(django_db_setup, django_db_blocker):
    config = sim_config([MODEL], tokens_per_second=20, reply_tokens=10)
    with django_db_blocker.unblock():
        world = Stack({"one": config, "two": config}, webs=2, models={MODEL: {"concurrency": 4, "max_queue": 200}})
    yield world
    with django_db_blocker.unblock():
        world.stop()


def _generations(sim: SimulatorProcess) -> int:
    return sim.model_stats(MODEL).get("eval_tokens", 0)


def test_a_model_loaded_on_one_node_gets_its_traffic_there_while_it_has_free_slots(stack):
    for _ in range(6):
        assert stack.chat(MODEL).status_code == 200
    served = {name: _generations(sim) for name, sim in stack.sims.items()}
    assert sorted(served.values())[0] == 0, served  # one node did all of it
    assert len(stack.placement(MODEL)) == 1


def test_when_the_queue_builds_the_model_is_loaded_on_a_second_node_and_both_serve(stack):
    for sim in stack.sims.values():
        sim.reset()
    with ThreadPoolExecutor(40) as pool:
        responses = list(pool.map(lambda i: stack.chat(MODEL, web=i % 2), range(40)))
    assert [r.status_code for r in responses] == [200] * 40, [r.text for r in responses if r.status_code != 200]
    assert all(_generations(sim) > 0 for sim in stack.sims.values())
    assert all(sim.model_stats(MODEL)["max_in_flight"] <= 4 for sim in stack.sims.values())


def test_a_node_that_dies_under_load_is_taken_out_and_requests_go_to_the_other(stack, django_db_blocker):
    for name in stack.sims:
        stack.wait_loaded(MODEL, name)
    victim = stack.sims["two"]
    statuses: list[int] = []
    stop = threading.Event()

    def keep_asking(i: int) -> None:
        while not stop.is_set():
            statuses.append(stack.chat(MODEL, web=i % 2, timeout=60).status_code)

    threads = [threading.Thread(target=keep_asking, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    try:
        eventually(lambda: len(statuses) >= 8, what="traffic flowing")
        victim.proc.kill()  # kill -9: connections reset, then refused
        victim.proc.wait()
        eventually(lambda: stack.kv.hexists(keys.NODES_DOWN, victim.url), what="the dead node taken out", timeout=5)
        seen = len(statuses)
        eventually(lambda: len(statuses) >= seen + 16, what="traffic keeps flowing on the other node")
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    # Calls that were running on the dead node were retried elsewhere: nobody saw an error.
    assert set(statuses) == {200}, statuses

    # The node comes back on the same address: health polling returns it to service.
    revived = SimulatorProcess(victim.config, port=victim.port)
    stack.sims["two"] = revived
    eventually(lambda: not stack.kv.hexists(keys.NODES_DOWN, revived.url), what="the node came back", timeout=10)
    with ThreadPoolExecutor(40) as pool:
        responses = list(pool.map(lambda i: stack.chat(MODEL, web=i % 2), range(40)))
    assert [r.status_code for r in responses] == [200] * 40, [r.text for r in responses if r.status_code != 200]
    assert _generations(revived) > 0


def test_a_drained_node_finishes_its_running_requests_and_gets_no_new_ones(stack, django_db_blocker):
    from inference.models import Node

    for name in stack.sims:
        stack.wait_loaded(MODEL, name)
    drained = stack.sims["one"]
    with ThreadPoolExecutor(12) as pool:
        running = [pool.submit(stack.chat, MODEL, web=i % 2, max_tokens=30) for i in range(12)]
        eventually(lambda: drained.model_stats(MODEL)["in_flight"] > 0, what="work on the node to drain")
        with django_db_blocker.unblock():
            Node.objects.filter(url=drained.url).update(enabled=False)
        try:
            assert [f.result().status_code for f in running] == [200] * 12
            # Every web process's catalogue snapshot is at most a couple of seconds old.
            eventually(lambda: all(stack.chat(MODEL, web=w).status_code == 200 for w in (0, 1))
                       and drained.model_stats(MODEL)["in_flight"] == 0, what="the drain took effect")
            before = drained.model_stats(MODEL)["requests"]
            with ThreadPoolExecutor(12) as more:
                assert all(r.status_code == 200 for r in more.map(lambda i: stack.chat(MODEL, web=i % 2), range(12)))
            assert drained.model_stats(MODEL)["requests"] == before
        finally:
            with django_db_blocker.unblock():
                Node.objects.filter(url=drained.url).update(enabled=True)


def test_requests_waiting_for_a_model_whose_every_node_is_drained_get_a_503_at_once(django_db_setup,
                                                                                    django_db_blocker):
    """Draining lets running calls finish, but nothing will ever load the model again: its waiting calls
    are answered 503 within the next renewal round instead of waiting out the queue timeout."""
    from inference.models import Node

    model = "sched-drain:latest"
    with django_db_blocker.unblock(), Stack({"only": sim_config([model], tokens_per_second=10, reply_tokens=40)},
                                            models={model: {"concurrency": 1, "max_queue": 8}},
                                            env={"QUEUE_TIMEOUT_SECONDS": "120"}) as stack:
        with ThreadPoolExecutor(3) as pool:
            calls = [pool.submit(stack.chat, model, max_tokens=40) for _ in range(3)]
            eventually(lambda: stack.running(model) == 1 and stack.waiting(model) == 2, what="1 running, 2 waiting")
            Node.objects.filter(url=stack.sims["only"].url).update(enabled=False)
            statuses = sorted(f.result().status_code for f in calls)
        # The running call finishes; the two waiting ones are told at once (their 4 s reply would take 8 s
        # more, the queue timeout 120 s).
        assert statuses == [200, 503, 503]
        assert stack.waiting(model) == 0 and stack.running(model) == 0
