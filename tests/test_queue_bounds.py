"""The per-model queue bounds what reaches a GPU server, across web processes: concurrency, max_queue
with a 503 and a useful Retry-After, fan-out counted per upstream call, and client disconnects."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest

from tests.support.processes import eventually
from tests.support.stack import CLUSTER, Stack, on_each_redis, sim_config

MODEL = "sched-bounds:latest"  # 4 slots, 8 waiting
ROOMY = "sched-roomy:latest"  # 4 slots, 64 waiting
FAULTY = "sched-faulty:latest"  # fails after a few tokens


# The bounds, limits and records that must hold on a Redis Cluster too.
pytest_generate_tests = on_each_redis(
    "test_it_never_runs_more_than_the_concurrency_on_a_node",
    "test_every_slot_of_a_request_is_released_when_its_choices_fail",
)


@pytest.fixture(scope="module")
def stack(request, django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        config = sim_config([MODEL, ROOMY, FAULTY], tokens_per_second=10, reply_tokens=10)
        config["models"][2]["fail_after_tokens"] = 3
        world = Stack({"gpu": config}, webs=2, cluster=request.param == CLUSTER,
                      models={MODEL: {"concurrency": 4, "max_queue": 8}, ROOMY: {"concurrency": 4, "max_queue": 64}})
    yield world
    with django_db_blocker.unblock():
        world.stop()


@pytest.fixture
def sim(stack):
    sim = stack.sims["gpu"]
    eventually(lambda: stack.running(MODEL) == 0 and stack.running(ROOMY) == 0 and stack.waiting(MODEL) == 0,
               what="an idle queue before the test", timeout=30)
    sim.reset()
    return sim


def _burst(stack, model: str, count: int, *, webs: tuple[int, ...] = (0,), **body) -> list[httpx.Response]:
    """`count` requests sent at the same moment, spread over the given web processes."""
    start = threading.Barrier(count)

    def one(i: int) -> httpx.Response:
        start.wait()
        return stack.chat(model, web=webs[i % len(webs)], **body)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


@pytest.mark.parametrize("webs", [(0,), (0, 1)], ids=["one-process", "two-processes"])
def test_it_never_runs_more_than_the_concurrency_on_a_node(stack, sim, webs):
    responses = _burst(stack, ROOMY, 20, webs=webs)
    assert [r.status_code for r in responses] == [200] * 20
    stats = sim.model_stats(ROOMY)
    assert stats["max_in_flight"] == 4  # reached, never exceeded
    assert stats["completed"] >= 20


def test_it_counts_each_choice_of_n_as_one_slot(stack, sim):
    response = stack.chat(ROOMY, n=8)
    assert response.status_code == 200
    assert len(response.json()["choices"]) == 8
    stats = sim.model_stats(ROOMY)
    assert stats["requests"] == 8
    assert stats["max_in_flight"] == 4


def test_it_refuses_a_request_whose_choices_would_overflow_the_queue(stack, sim):
    stack.chat(MODEL, max_tokens=1)  # loaded, so its 4 slots are free
    before = sim.model_stats(MODEL)["requests"]
    response = stack.chat(MODEL, n=13)  # 4 run, 9 would wait: more than max_queue 8
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "queue_full"
    assert int(response.headers["retry-after-ms"]) >= 1  # the SDKs read it before Retry-After
    # The rate limiter admitted the request before the queue refused it: its figures come along.
    assert response.headers["x-ratelimit-limit-requests"]
    assert sim.model_stats(MODEL)["requests"] == before  # nothing of it reached the node


def test_it_rejects_a_fan_out_over_the_cap_naming_the_param(stack):
    response = httpx.post(stack.url() + "/completions", headers=stack.headers(),
                          json={"model": ROOMY, "prompt": ["a", "b", "c", "d"], "n": 5}, timeout=30)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "n"
    response = httpx.post(stack.url() + "/completions", headers=stack.headers(),
                          json={"model": ROOMY, "prompt": [str(i) for i in range(17)]}, timeout=30)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "prompt"


@pytest.mark.parametrize("webs", [(0,), (0, 1)], ids=["one-process", "two-processes"])
def test_it_admits_concurrency_plus_max_queue_and_answers_the_rest_503(stack, sim, webs):
    stack.chat(MODEL, max_tokens=1)  # load it first: 4 run at once, 8 wait
    sim.reset()
    eventually(lambda: stack.placement(MODEL), what="loaded")
    responses = _burst(stack, MODEL, 30, webs=webs)
    ok = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code != 200]
    assert len(ok) == 12
    assert sim.model_stats(MODEL)["requests"] == 12
    for response in refused:
        assert response.status_code == 503
        error = response.json()["error"]
        assert error["type"] == "server_error"
        assert error["code"] == "queue_full"
        assert MODEL in error["message"] and "retry" in error["message"].lower()
        assert 1 <= int(response.headers["Retry-After"]) <= 60
        assert int(response.headers["x-gatehouse-queue-depth"]) == 8
        assert response.headers["x-gatehouse-queue-wait-ms"] == "0"
        assert "x-request-id" in response.headers
    assert sim.model_stats(MODEL)["max_in_flight"] == 4


def test_the_openai_sdk_gets_through_with_its_default_retries(stack, sim):
    # Loaded, and its call time measured on calls like these: the reservations the refused clients get
    # are forecast from it (a 1-token warm-up alone would make them far too early).
    for _ in range(3):
        stack.chat(MODEL)
    client = stack.client()  # default max_retries=2, honours Retry-After
    start = threading.Barrier(16)

    def ask(_):
        start.wait()
        return client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])

    with ThreadPoolExecutor(16) as pool:
        replies = list(pool.map(ask, range(16)))
    assert all(reply.choices[0].message.content for reply in replies)
    assert sim.model_stats(MODEL)["queue_full_rejections"] == 0  # Ollama itself never had to refuse


def test_every_generation_response_says_how_long_it_queued(stack, sim):
    response = stack.chat(ROOMY, max_tokens=2)
    assert int(response.headers["x-gatehouse-queue-wait-ms"]) >= 0
    with httpx.stream("POST", stack.url() + "/chat/completions", headers=stack.headers(), timeout=30,
                      json={"model": ROOMY, "stream": True, "messages": [{"role": "user", "content": "x"}]}) as r:
        assert int(r.headers["x-gatehouse-queue-wait-ms"]) >= 0


def test_a_queued_request_leaves_the_queue_when_its_client_leaves(stack, sim):
    stack.chat(MODEL, max_tokens=1)
    hold = [threading.Thread(target=stack.chat, args=(MODEL,), kwargs={"max_tokens": 40}) for _ in range(4)]
    for thread in hold:
        thread.start()
    eventually(lambda: stack.running(MODEL) == 4, what="4 running")
    # A fifth request waits; its client gives up after a moment.
    with pytest.raises(httpx.ReadTimeout):
        stack.chat(MODEL, timeout=1.0)
    eventually(lambda: stack.waiting(MODEL) == 0, what="the abandoned request left the queue", timeout=5)
    assert stack.running(MODEL) == 4
    for thread in hold:
        thread.join()


def test_a_running_request_whose_client_leaves_is_cancelled_upstream_and_frees_its_slot(stack, sim):
    stack.chat(MODEL, max_tokens=1)
    sim.reset()
    with httpx.stream("POST", stack.url() + "/chat/completions", headers=stack.headers(), timeout=30,
                      json={"model": MODEL, "stream": True, "max_tokens": 50,
                            "messages": [{"role": "user", "content": "x"}]}) as response:
        lines = response.iter_lines()
        assert next(lines).startswith("data: ")
        assert stack.running(MODEL) == 1
    eventually(lambda: stack.running(MODEL) == 0, what="the slot was freed", timeout=2)
    eventually(lambda: sim.model_stats(MODEL)["cancellations"] == 1, what="the node saw the cancellation", timeout=2)


def test_the_sdk_sees_a_queue_full_503_as_an_internal_server_error_it_can_read(stack, sim):
    stack.chat(MODEL, max_tokens=1)
    client = stack.client(max_retries=0)
    start = threading.Barrier(14)

    def ask(_):
        start.wait()
        try:
            client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
        except openai.InternalServerError as exc:
            return exc
        return None

    with ThreadPoolExecutor(14) as pool:
        errors = [e for e in pool.map(ask, range(14)) if e is not None]
    assert len(errors) == 2
    assert all(e.status_code == 503 and e.code == "queue_full" for e in errors)


@pytest.mark.parametrize("stream", [False, True], ids=["non-stream", "stream"])
def test_every_slot_of_a_request_is_released_when_its_choices_fail(stack, sim, stream):
    response = stack.chat(FAULTY, n=3, stream=stream)
    if stream:
        assert response.status_code == 200  # the failure came after the first tokens
        events = [line for line in response.text.splitlines() if line.startswith("data: ")]
        assert events[-1].startswith('data: {"error"')
    else:
        assert response.status_code == 502
    eventually(lambda: stack.running(FAULTY) == 0 and stack.waiting(FAULTY) == 0,
               what="the failed request's slots came back", timeout=5)
    # And the model still serves: nothing was leaked.
    assert stack.chat(ROOMY, max_tokens=1).status_code == 200
