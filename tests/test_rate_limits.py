"""Rate limits and quotas as clients see them, with two web processes sharing one Redis: exact counts
across processes, the 429s the OpenAI SDK gets, x-ratelimit-* headers, overrides per person and per
key, and tokens of streams (finished or abandoned) counted against the limits."""

from __future__ import annotations

import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest

from tests.support.processes import eventually
from tests.support.stack import CLUSTER, Stack, on_each_redis, sim_config

MODEL = "limits-fast:latest"  # 10 tokens in 0.1 s
SLOW = "limits-slow:latest"  # 10 tokens a second
KILL = "limits-kill:latest"  # a stack of its own, whose web process is killed
PEOPLE = ("rpm", "conc", "hdr", "sdk", "stream", "gone", "plain")


# The bounds, limits and records that must hold on a Redis Cluster too.
pytest_generate_tests = on_each_redis(
    "test_n_requests_per_minute_pass_across_two_processes_never_n_plus_one",
    "test_concurrent_requests_are_bounded_across_two_processes",
    "test_streamed_tokens_count_against_the_daily_quota",
)


@pytest.fixture(scope="module")
def stack(request, django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        world = Stack({"gpu": sim_config([MODEL], tokens_per_second=100, reply_tokens=10),
                       "slow": sim_config([SLOW], tokens_per_second=10, reply_tokens=300)},
                      webs=2, users=PEOPLE, cluster=request.param == CLUSTER,
                      models={MODEL: {"concurrency": 8, "max_queue": 64}, SLOW: {"concurrency": 8, "max_queue": 64}})
    yield world
    with django_db_blocker.unblock():
        world.stop()


@pytest.fixture
def set_limits(stack, django_db_blocker):
    """Override a person's limits (on their Account) or their key's, as staff do in the admin."""
    from django.contrib.auth import get_user_model

    from apiaccess.models import Account, ApiKey

    def override(person: str, key: bool = False, **limits) -> None:
        with django_db_blocker.unblock():
            user = get_user_model().objects.get(username=f"{person}-{stack.redis.port}")
            if key:
                ApiKey.objects.filter(user=user).update(**limits)
            else:
                Account.objects.update_or_create(user=user, defaults=limits)

    return override


def burst(stack, person: str, count: int, model: str = MODEL, **body) -> list[httpx.Response]:
    """`count` requests at the same moment, alternating between the two web processes."""
    start = threading.Barrier(count)

    def one(i: int) -> httpx.Response:
        start.wait()
        return stack.chat(model, user=person, web=i % 2, **body)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


def test_n_requests_per_minute_pass_across_two_processes_never_n_plus_one(stack, set_limits):
    set_limits("rpm", requests_per_minute=6)
    responses = burst(stack, "rpm", 14, max_tokens=2)
    assert sorted(r.status_code for r in responses) == [200] * 6 + [429] * 8, [
        r.text[:300] for r in responses if r.status_code != 200]
    for response in responses:
        if response.status_code == 429:
            error = response.json()["error"]
            assert error["code"] == "rate_limit_exceeded"
            assert "requests per minute (RPM): limit 6" in error["message"]
            assert "try again in" in error["message"]
            assert 1 <= int(response.headers["Retry-After"]) <= 10  # one request back every 10 s
        assert response.headers["x-ratelimit-limit-requests"] == "6"
    remaining = sorted(int(r.headers["x-ratelimit-remaining-requests"]) for r in responses if r.status_code == 200)
    # The bucket refills continuously (one request every 10 s), so on a slow machine two answers may
    # report the same whole number left; the last one admitted always sees none left.
    assert remaining[0] == 0 and all(0 <= left <= 5 for left in remaining), remaining


def test_concurrent_requests_are_bounded_across_two_processes(stack, set_limits):
    set_limits("conc", concurrent_requests=3)
    responses = burst(stack, "conc", 9, model=SLOW, max_tokens=20)  # each runs 2 s
    assert sorted(r.status_code for r in responses) == [200] * 3 + [429] * 6
    refused = [r for r in responses if r.status_code == 429]
    assert all("concurrent requests: limit 3" in r.json()["error"]["message"] for r in refused)
    assert stack.chat(SLOW, user="conc", max_tokens=1).status_code == 200  # the places came back


def test_every_response_carries_openais_rate_limit_headers_of_the_tighter_scope(stack, set_limits):
    set_limits("hdr", requests_per_minute=100, tokens_per_minute=50_000)
    set_limits("hdr", key=True, requests_per_minute=40)
    client = stack.client("hdr", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": "hello there"}], max_tokens=3)
    assert raw.headers["x-ratelimit-limit-requests"] == "40"  # the key's own limit is the tighter one
    assert raw.headers["x-ratelimit-remaining-requests"] == "39"
    assert raw.headers["x-ratelimit-reset-requests"].endswith(("s", "ms"))
    assert raw.headers["x-ratelimit-limit-tokens"] == "50000"
    assert 49_000 < int(raw.headers["x-ratelimit-remaining-tokens"]) < 50_000
    assert raw.headers["x-ratelimit-reset-tokens"]
    streamed = httpx.post(stack.url(1) + "/chat/completions", headers=stack.headers("hdr"), timeout=30,
                          json={"model": MODEL, "stream": True, "messages": [{"role": "user", "content": "x"}]})
    assert streamed.status_code == 200
    assert streamed.headers["x-ratelimit-limit-requests"] == "40"
    # Errors after the limiter carry them too: this model cannot embed, and the node says so.
    embedding = httpx.post(stack.url() + "/embeddings", headers=stack.headers("hdr"), timeout=30,
                           json={"model": MODEL, "input": "x"})
    assert "x-ratelimit-remaining-requests" in embedding.headers


def test_the_openai_sdk_raises_rate_limit_error_with_the_code(stack, set_limits):
    set_limits("sdk", requests_per_minute=1)
    client = stack.client("sdk", max_retries=0)
    client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=1)
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=1)
    assert info.value.code == "rate_limit_exceeded"
    assert info.value.status_code == 429
    assert int(info.value.response.headers["Retry-After"]) >= 1


def _stream_tokens(stack, person: str) -> int:
    with stack.client(person, max_retries=0).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hello"}], stream=True,
            stream_options={"include_usage": True}) as chunks:
        return [c for c in chunks if c.usage][0].usage.total_tokens


def test_streamed_tokens_count_against_the_daily_quota(stack, set_limits):
    set_limits("stream", tokens_per_day=60)
    used = [_stream_tokens(stack, "stream")]
    per_stream = used[0]
    assert per_stream >= 10

    def refused() -> bool:
        try:
            used.append(_stream_tokens(stack, "stream"))
        except openai.RateLimitError as exc:
            assert exc.code == "quota_exceeded"
            assert "quota of 60 tokens per day" in exc.message
            return True
        return False

    eventually(refused, what="the quota to be used up", timeout=30)
    # Only the streams' real token counts can have used it up this fast: a prompt estimate alone
    # ("hello" is 2 tokens) would have allowed 30 requests.
    assert sum(used) >= 60 - 2
    assert len(used) <= 60 // per_stream + 2


def test_an_abandoned_stream_counts_the_tokens_it_received(stack, set_limits):
    set_limits("gone", tokens_per_day=40)
    with httpx.stream("POST", stack.url() + "/chat/completions", headers=stack.headers("gone"), timeout=60,
                      json={"model": SLOW, "stream": True, "messages": [{"role": "user", "content": "hello"}]}) as r:
        assert r.status_code == 200
        received = 0
        for line in r.iter_lines():
            if line.startswith("data: ") and '"content":"' in line and '"content":""' not in line:
                received += 1
            if received >= 45:
                break  # the client leaves; 255 tokens were never generated
    second = eventually(lambda: (resp := stack.chat(MODEL, user="gone", max_tokens=1)).status_code == 429 and resp,
                        what="the abandoned stream's tokens to be counted", timeout=20)
    assert second.json()["error"]["code"] == "quota_exceeded"


def test_without_an_override_the_defaults_from_settings_apply(stack):
    response = stack.chat(MODEL, user="plain", max_tokens=1)
    assert response.headers["x-ratelimit-limit-requests"] == "600"
    assert response.headers["x-ratelimit-limit-tokens"] == "1000000"


def test_a_killed_web_process_gives_its_concurrent_places_back(django_db_setup, django_db_blocker):
    from django.contrib.auth import get_user_model

    from apiaccess.models import Account

    with django_db_blocker.unblock():
        own = Stack({"slow": sim_config([KILL], tokens_per_second=10, reply_tokens=300)}, webs=2, users=("kay",),
                    env={"CONCURRENT_REQUEST_LEASE_SECONDS": "1.5"}, models={KILL: {"concurrency": 4}})
        Account.objects.create(user=get_user_model().objects.get(username=f"kay-{own.redis.port}"),
                               concurrent_requests=1)
    try:
        def hold() -> None:
            with contextlib.suppress(httpx.HTTPError):  # its web process is killed under it
                own.chat(KILL, user="kay", web=0, timeout=60)

        holder = threading.Thread(target=hold)
        holder.start()
        eventually(lambda: own.running(KILL) == 1, what="the first request running")
        assert own.chat(KILL, user="kay", web=1, max_tokens=1).status_code == 429  # its place is taken
        own.webs[0].kill()  # no clean-up runs: the place is freed only by its lease lapsing
        holder.join()
        response = eventually(lambda: (r := own.chat(KILL, user="kay", web=1, max_tokens=1)).status_code == 200 and r,
                              what="the place back after the lease", timeout=15)
        assert response.headers["x-gatehouse-queue-wait-ms"]
    finally:
        with django_db_blocker.unblock():
            own.stop()
