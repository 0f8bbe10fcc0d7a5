"""One usage record per API request, written through a Redis stream and drained into the database by
a real Celery worker: the fields of answered, streamed, abandoned and refused requests, and no record
lost while the worker is down."""

from __future__ import annotations

import httpx
import pytest
import redis

from tests.support.processes import CeleryWorker, RedisSentinel, RedisServer, eventually
from tests.support.stack import CLUSTER, Stack, on_each_redis, sim_config
from tests.support.usage import usage_waiting

MODEL = "usage-fast:latest"  # 10 tokens in 0.1 s
SLOW = "usage-slow:latest"  # 10 tokens a second
PEOPLE = ("fields", "streamer", "leaver", "limited", "batch", "offline", "early", "brokered")


# The bounds, limits and records that must hold on a Redis Cluster too.
pytest_generate_tests = on_each_redis(
    "test_an_answered_request_is_recorded_with_its_tokens_node_and_timings",
    "test_a_refused_request_is_recorded_with_its_reason",
    "test_no_record_is_lost_while_the_worker_is_down",
)


@pytest.fixture(scope="module")
def stack(request, django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        world = Stack({"gpu": sim_config([MODEL], tokens_per_second=100, reply_tokens=10),
                       "slow": sim_config([SLOW], tokens_per_second=10, reply_tokens=300)},
                      users=PEOPLE, cluster=request.param == CLUSTER, models={MODEL: {"concurrency": 8}, SLOW: {"concurrency": 8}})
    yield world
    with django_db_blocker.unblock():
        world.stop()


@pytest.fixture
def worker(stack):
    worker = CeleryWorker(stack.process_env(USAGE_DRAIN_SECONDS="0.3", NODE_POLL_SECONDS="3600"))
    yield worker
    worker.stop()


@pytest.fixture
def records(stack, django_db_blocker):
    """The usage records of one person, as the database holds them now."""
    from usage.models import UsageRecord

    def of(person: str) -> list:
        with django_db_blocker.unblock():
            return list(UsageRecord.objects.filter(user__username=f"{person}-{stack.redis.port}")
                        .select_related("key").order_by("at", "pk"))

    return of


def wait_records(records, person: str, count: int, timeout: float = 30) -> list:
    return eventually(lambda: (found := records(person)) and len(found) >= count and found,
                      what=f"{count} usage records of {person}", timeout=timeout)


def test_an_answered_request_is_recorded_with_its_tokens_node_and_timings(stack, worker, records):
    response = stack.chat(MODEL, user="fields", max_tokens=5)
    assert response.status_code == 200
    usage = response.json()["usage"]
    (record,) = wait_records(records, "fields", 1)
    assert record.model == MODEL
    assert record.node == stack.sims["gpu"].url
    assert (record.status, record.reason) == (200, "ok")
    assert record.prompt_tokens == usage["prompt_tokens"]
    assert record.completion_tokens == usage["completion_tokens"] == 5
    assert record.key.name == "sched"
    assert record.gpu_seconds > 0  # the node's own durations
    assert record.queue_wait_ms >= 0
    assert record.ttft_ms is not None and record.ttft_ms <= record.duration_ms
    assert record.priority == "interactive"
    assert not record.streamed and not record.disconnected


def test_a_streamed_request_is_recorded_with_the_final_counts(stack, worker, records):
    with httpx.stream("POST", stack.url() + "/chat/completions", headers=stack.headers("streamer"), timeout=30,
                      json={"model": MODEL, "stream": True, "max_tokens": 7,
                            "messages": [{"role": "user", "content": "hello"}]}) as response:
        assert response.status_code == 200
        response.read()
    (record,) = wait_records(records, "streamer", 1)
    assert record.streamed and not record.disconnected
    assert record.completion_tokens == 7
    assert record.reason == "ok"


def test_an_abandoned_stream_is_recorded_as_disconnected_with_what_it_received(stack, worker, records):
    with httpx.stream("POST", stack.url() + "/chat/completions", headers=stack.headers("leaver"), timeout=30,
                      json={"model": SLOW, "stream": True, "messages": [{"role": "user", "content": "hello"}]}) as r:
        received = 0
        for line in r.iter_lines():
            if line.startswith("data: ") and '"content":"' in line and '"content":""' not in line:
                received += 1
            if received >= 5:
                break
    (record,) = wait_records(records, "leaver", 1)
    assert record.disconnected and record.streamed
    assert (record.status, record.reason) == (499, "disconnected")
    assert 5 <= record.completion_tokens < 300


def test_a_refused_request_is_recorded_with_its_reason(stack, worker, records, django_db_blocker):
    from django.contrib.auth import get_user_model

    from apiaccess.models import Account

    with django_db_blocker.unblock():
        user = get_user_model().objects.get(username=f"limited-{stack.redis.port}")
        Account.objects.update_or_create(user=user, defaults={"requests_per_minute": 1})
    assert stack.chat(MODEL, user="limited", max_tokens=1).status_code == 200
    assert stack.chat(MODEL, user="limited", max_tokens=1).status_code == 429
    found = wait_records(records, "limited", 2)
    assert sorted((r.status, r.reason) for r in found) == [(200, "ok"), (429, "rate_limited")]
    refused = next(r for r in found if r.status == 429)
    assert refused.total_tokens == 0 and refused.node == ""


def test_no_record_is_lost_while_the_worker_is_down(stack, worker, records):
    assert stack.chat(MODEL, user="offline", max_tokens=1).status_code == 200
    wait_records(records, "offline", 1)
    worker.kill()
    for i in range(12):
        body = {"max_tokens": 2, "stream": i % 3 == 0}
        assert stack.chat(MODEL, user="offline", web=0, **body).status_code == 200
    eventually(lambda: usage_waiting(stack.kv) >= 12, what="the records waiting in Redis")
    assert len(records("offline")) == 1  # nobody drains them meanwhile
    restarted = CeleryWorker(stack.process_env(USAGE_DRAIN_SECONDS="0.3", NODE_POLL_SECONDS="3600"))
    try:
        found = wait_records(records, "offline", 13)
        eventually(lambda: usage_waiting(stack.kv) == 0, what="the stream emptied")
        assert len(records("offline")) == 13  # every one, none twice
        assert sum(r.streamed for r in found) == 4
    finally:
        restarted.stop()


def test_requests_refused_before_generation_are_recorded_once_each(stack, worker, records, django_db_blocker):
    from apiaccess.models import ApiKey
    from inference.models import Model

    with django_db_blocker.unblock():
        user = ApiKey.objects.filter(user__username=f"early-{stack.redis.port}").first().user
        _, only_slow = ApiKey.issue(user, name="slow only", allowed_models=[Model.objects.get(public_id=SLOW)])
    early = stack.headers("early")
    chat = {"model": MODEL, "max_tokens": 1, "messages": [{"role": "user", "content": "hello"}]}
    sent = [  # (path, headers, body, status, model, streamed)
        ("/v1/chat/completions", early, {**chat, "model": "no-such-model:latest"}, 404, "no-such-model:latest", False),
        ("/v1/chat/completions", {"Authorization": f"Bearer {only_slow}"}, chat, 404, MODEL, False),
        ("/v1/chat/completions", early, {"model": MODEL, "messages": []}, 400, MODEL, False),
        ("/v1/chat/completions", early, {**chat, "n": 100, "stream": True}, 400, MODEL, True),
        ("/v1/chat/completions", early, b"{not json", 400, "", False),
        ("/api/completions", early, {"model": "no-such-model:latest", "prompt": "x"}, 404, "no-such-model:latest",
         False),
        ("/v1/embeddings", early, {"model": MODEL}, 400, MODEL, False),
        ("/v1/chat/completions", early, chat, 200, MODEL, False),  # recorded by generation, once
    ]
    for path, headers, body, status, _, _ in sent:
        content = body if isinstance(body, bytes) else None
        response = httpx.post(stack.webs[0].url + path, headers=headers, timeout=30, content=content,
                              json=None if content else body)
        assert response.status_code == status, response.text
    expected = sorted((status, "ok" if status == 200 else "invalid_request", model, streamed)
                      for _, _, _, status, model, streamed in sent)
    wait_records(records, "early", len(sent))
    # A marker sent last: once its record is in, a second record of any earlier request would be too.
    marker = httpx.post(stack.webs[0].url + "/v1/chat/completions", headers=early, timeout=30,
                        json={**chat, "model": "marker-model-that-does-not-exist"})
    assert marker.status_code == 404
    wait_records(records, "early", len(sent) + 1)
    found = [r for r in records("early") if r.model != "marker-model-that-does-not-exist"]
    assert sorted((r.status, r.reason, r.model, r.streamed) for r in found) == expected
    assert all(r.total_tokens == 0 and r.node == "" for r in found if r.status != 200)
    assert sum(r.key.name == "slow only" for r in found) == 1


def test_a_worker_whose_broker_is_a_redis_behind_sentinel_drains_the_records(stack, records):
    """Celery's broker is a setting of its own (Celery cannot use a Redis Cluster): here a Redis found
    through Sentinel, apart from the Redis holding the queues, which gets none of Celery's keys."""
    state = stack.kv
    for leftover in state.keys("_kombu*") + state.keys("celery*"):  # the other tests' workers used it
        state.delete(leftover)
    broker = RedisServer()
    sentinel = RedisSentinel(broker, "gatehouse-broker")
    worker = CeleryWorker(stack.process_env(USAGE_DRAIN_SECONDS="0.3", NODE_POLL_SECONDS="3600",
                                  CELERY_BROKER_URL=sentinel.url, CELERY_BROKER_SENTINEL_MASTER="gatehouse-broker"))
    try:
        assert stack.chat(MODEL, user="brokered", max_tokens=2).status_code == 200
        wait_records(records, "brokered", 1)
        with redis.Redis.from_url(broker.url) as broker_kv:
            assert broker_kv.keys("_kombu.binding.*"), "the worker's queues are not on the broker"
        assert not state.keys("_kombu*") and not state.keys("celery*")
    finally:
        worker.stop()
        sentinel.stop()
        broker.stop()
