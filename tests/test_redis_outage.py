"""Redis down: API calls get a clean 503 at once (never a hang or a 500), /healthz says so, and
Gatehouse recovers by itself when Redis is back."""

from __future__ import annotations

import httpx
import pytest

from tests.support.processes import eventually
from tests.support.stack import Stack, sim_config

MODEL = "sched-outage:latest"
TOKEN = "outage-scrape-token"  # /healthz names the nodes only to staff or this token


@pytest.fixture(scope="module")
def stack(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        world = Stack({"gpu": sim_config([MODEL], tokens_per_second=200)}, env={"METRICS_TOKEN": TOKEN})
    yield world
    with django_db_blocker.unblock():
        world.stop()


def test_requests_get_a_quick_clean_503_while_redis_is_down_and_work_again_after(stack):
    assert stack.chat(MODEL).status_code == 200
    assert httpx.get(stack.webs[0].url + "/healthz").json()["redis"] == "ok"
    stack.redis.kill()
    try:
        for stream in (False, True):
            # A hang would hit this client's 3 s timeout; Gatehouse gives up on Redis after 1 s at most.
            response = stack.chat(MODEL, timeout=3, stream=stream)
            assert response.status_code == 503
            error = response.json()["error"]
            assert error["type"] == "server_error"
            assert "Redis" in error["message"]
            assert 1 <= int(response.headers["Retry-After"]) <= 60
        health = httpx.get(stack.webs[0].url + "/healthz", timeout=5)
        assert health.status_code == 503
        assert health.json()["redis"] == "unavailable"
    finally:
        stack.redis.start()
    eventually(lambda: stack.chat(MODEL, timeout=10).status_code == 200, what="recovered by itself", timeout=20)
    health = httpx.get(stack.webs[0].url + "/healthz", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert health["redis"] == "ok"
    # Other tests' nodes (the live test world's) may share the database: look at this stack's.
    assert health["nodes"][stack.sims["gpu"].url] == "up"


UNLIMITED = "sched-outage-unlimited:latest"


@pytest.fixture(scope="module")
def unlimited(django_db_setup, django_db_blocker):
    """Without rate limits, the first thing to need Redis is the queue (inference/scheduler/slots.py), not the limiter."""
    with django_db_blocker.unblock():
        world = Stack({"gpu": sim_config([UNLIMITED], tokens_per_second=200)}, env={"RATE_LIMITS_ENABLED": "false"})
    yield world
    with django_db_blocker.unblock():
        world.stop()


def _outage_answers(stack, model: str) -> list[httpx.Response]:
    headers = stack.headers()
    prompt = {"model": model, "max_tokens": 2, "prompt": "hello"}
    return [stack.chat(model, timeout=3), stack.chat(model, timeout=3, stream=True),
            httpx.post(stack.url() + "/completions", headers=headers, json=prompt, timeout=3),
            httpx.post(stack.url() + "/completions", headers=headers, json={**prompt, "stream": True}, timeout=3)]


def test_every_503_of_the_outage_has_a_stable_code(stack, unlimited):
    for world, model in ((stack, MODEL), (unlimited, UNLIMITED)):
        assert world.chat(model).status_code == 200
        world.redis.kill()
        try:
            answers = _outage_answers(world, model)
        finally:
            world.redis.start()
        eventually(lambda w=world, m=model: w.chat(m, timeout=10).status_code == 200, what="recovered", timeout=20)
        for response in answers:
            assert response.status_code == 503, response.text
            error = response.json()["error"]
            assert (error["type"], error["code"]) == ("server_error", "service_unavailable"), error
            assert response.headers["Retry-After"] == "2"
