"""/metrics: Prometheus text for staff or a bearer token, with whole-site values whichever of two web
processes answers: requests by outcome, tokens, queue and in-flight gauges, histograms, loads, nodes."""

from __future__ import annotations

import threading

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.processes import eventually
from tests.support.stack import Stack, sim_config

MODEL = "metrics-fast:latest"  # 10 tokens in 0.1 s
ONE_SLOT = "metrics-one:latest"  # one request at a time, 3 s each
TOKEN = "scrape-token-for-tests"


@pytest.fixture(scope="module")
def stack(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        config = sim_config([MODEL, ONE_SLOT], tokens_per_second=100, reply_tokens=10)
        config["models"][1]["tokens_per_second"] = 6  # its 10-token replies take about 1.7 s: the queue stays put
        world = Stack({"gpu": config}, webs=2,
                      users=("ann", "ben", "lim"), env={"METRICS_TOKEN": TOKEN},
                      models={MODEL: {"concurrency": 8}, ONE_SLOT: {"concurrency": 1, "max_queue": 8}})
    yield world
    with django_db_blocker.unblock():
        world.stop()


def scrape(stack, web: int = 0) -> dict[tuple[str, tuple], float]:
    """Every sample as {(name, sorted labels): value}."""
    response = httpx.get(stack.webs[web].url + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.text) for s in family.samples}


def value(samples, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_it_is_closed_without_the_token_or_a_staff_session(stack, django_db_blocker):
    assert httpx.get(stack.webs[0].url + "/metrics", timeout=10).status_code == 401
    wrong = httpx.get(stack.webs[0].url + "/metrics", headers={"Authorization": "Bearer nope"}, timeout=10)
    assert wrong.status_code == 401
    with django_db_blocker.unblock():
        staff = stack.staff_session()
    try:
        assert staff.get("/metrics").status_code == 200
    finally:
        staff.close()


def test_healthz_names_the_nodes_only_to_staff_or_the_token(stack, django_db_blocker):
    node = stack.sims["gpu"].url
    for headers in ({}, {"Authorization": "Bearer nope"}):
        anonymous = httpx.get(stack.webs[0].url + "/healthz", headers=headers, timeout=10)
        assert anonymous.status_code == 200
        assert anonymous.json() == {"status": "ok", "database": "ok", "redis": "ok"}
        assert "127.0.0.1" not in anonymous.text
    scraper = httpx.get(stack.webs[0].url + "/healthz", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert scraper.status_code == 200 and scraper.json()["nodes"][node] == "up"
    with django_db_blocker.unblock():
        staff = stack.staff_session()
    try:
        answer = staff.get("/healthz")
        assert answer.status_code == 200 and answer.json()["nodes"][node] == "up"
    finally:
        staff.close()


def test_requests_and_tokens_from_both_processes_add_up_whichever_answers(stack):
    before = scrape(stack)
    replies = [stack.chat(MODEL, web=i % 2, max_tokens=4) for i in range(6)]
    assert all(r.status_code == 200 for r in replies)
    prompt = sum(r.json()["usage"]["prompt_tokens"] for r in replies)

    def counted(web: int):
        now = scrape(stack, web)
        done = value(now, "gatehouse_requests_total", model=MODEL, status="200", reason="ok") - \
            value(before, "gatehouse_requests_total", model=MODEL, status="200", reason="ok")
        return now if done == 6 else None

    for web in (0, 1):
        now = eventually(lambda web=web: counted(web), what=f"6 requests counted by web {web}")
        assert value(now, "gatehouse_tokens_total", model=MODEL, kind="completion") - \
            value(before, "gatehouse_tokens_total", model=MODEL, kind="completion") == 24
        assert value(now, "gatehouse_tokens_total", model=MODEL, kind="prompt") - \
            value(before, "gatehouse_tokens_total", model=MODEL, kind="prompt") == prompt
        assert value(now, "gatehouse_queue_wait_seconds_count", model=MODEL) - \
            value(before, "gatehouse_queue_wait_seconds_count", model=MODEL) == 6
        assert value(now, "gatehouse_time_to_first_token_seconds_count", model=MODEL) - \
            value(before, "gatehouse_time_to_first_token_seconds_count", model=MODEL) == 6
        assert value(now, "gatehouse_queue_wait_seconds_bucket", model=MODEL, le="+Inf") == \
            value(now, "gatehouse_queue_wait_seconds_count", model=MODEL)


def test_rejections_are_counted_by_reason(stack, django_db_blocker):
    from django.contrib.auth import get_user_model

    from apiaccess.models import Account

    with django_db_blocker.unblock():
        user = get_user_model().objects.get(username=f"lim-{stack.redis.port}")
        Account.objects.update_or_create(user=user, defaults={"requests_per_minute": 1})
    before = scrape(stack)
    assert stack.chat(MODEL, user="lim", max_tokens=1).status_code == 200
    assert stack.chat(MODEL, user="lim", web=1, max_tokens=1).status_code == 429
    eventually(lambda: value(scrape(stack, 1), "gatehouse_requests_total", model=MODEL, status="429",
                             reason="rate_limited")
               - value(before, "gatehouse_requests_total", model=MODEL, status="429", reason="rate_limited") == 1,
               what="the 429 counted")


def test_queue_depth_in_flight_loads_and_node_health(stack):
    assert stack.chat(ONE_SLOT, max_tokens=1).status_code == 200  # loaded
    url = stack.sims["gpu"].url
    threads = [threading.Thread(target=stack.chat, args=(ONE_SLOT,), kwargs={"web": i % 2, "max_tokens": 30})
               for i in range(3)]
    for thread in threads:
        thread.start()
    try:
        now = eventually(lambda: (s := scrape(stack, 1)) and value(s, "gatehouse_queue_depth", model=ONE_SLOT) == 2
                         and s, what="two waiting, one running")
        assert value(now, "gatehouse_in_flight_requests", model=ONE_SLOT, node=url) == 1
        assert value(now, "gatehouse_model_loads_total", model=ONE_SLOT, node=url) >= 1
        assert value(now, "gatehouse_model_load_seconds_count", model=ONE_SLOT) >= 1
        assert value(now, "gatehouse_node_up", node=url) == 1
        assert value(now, "gatehouse_model_loaded_bytes", model=ONE_SLOT, node=url) > 0
    finally:
        for thread in threads:
            thread.join()
