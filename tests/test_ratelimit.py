"""The limiter itself (inference/accounting/ratelimit.py) against the suite's real Redis: each limit of each scope,
what a refusal says (the LimitExceeded it raises, as the API answers it: inference/web/http_errors.py), the
x-ratelimit-* headers, and settling tokens after the request."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import time

import pytest

from apiaccess.limits import Limits
from common.apierrors import ApiError
from common.store.client import redis_client
from inference.accounting import ratelimit
from inference.scheduler.scheduling_errors import LimitExceeded
from inference.web import http_errors

_ids = itertools.count(1_000_000)


@pytest.fixture
def person(redis_server) -> int:
    """A fresh person id, so no state is shared between tests."""
    return next(_ids)


NONE = Limits()


async def admit(person: int, key: int = 1, *, key_limits=NONE, person_limits=NONE, estimate: int = 0):
    return await ratelimit.acquire(user_id=person, key_id=key, key_limits=key_limits,
                                   person_limits=person_limits, estimate=estimate)


async def refused(person: int, **kwargs) -> ApiError:
    with pytest.raises(LimitExceeded) as info:
        await admit(person, **kwargs)
    error = http_errors.to_api_error(info.value)
    assert error.status == 429
    return error


async def eventually_admitted(person: int, **kwargs) -> ratelimit.Grant:
    async with asyncio.timeout(10):
        while True:
            try:
                return await admit(person, **kwargs)
            except LimitExceeded:
                await asyncio.sleep(0.02)


async def first_refusal(person: int, *, estimate: int, **kwargs) -> ApiError:
    """Keep sending requests that use their estimate until one is refused (a settle lands a moment later)."""
    async with asyncio.timeout(10):
        while True:
            try:
                (await admit(person, estimate=estimate, **kwargs)).settle(estimate)
            except LimitExceeded as refusal:
                return http_errors.to_api_error(refusal)
            await asyncio.sleep(0.02)


@pytest.mark.asyncio
async def test_it_admits_exactly_the_requests_per_minute(person):
    limits = Limits(requests_per_minute=3)
    grants = [await admit(person, person_limits=limits) for _ in range(3)]
    assert [g.headers["x-ratelimit-remaining-requests"] for g in grants] == ["2", "1", "0"]
    assert grants[0].headers["x-ratelimit-limit-requests"] == "3"
    error = await refused(person, person_limits=limits)
    assert error.code == "rate_limit_exceeded"
    assert "requests per minute (RPM): limit 3" in error.message
    assert "your account" in error.message
    # One request comes back every 20 s (3 a minute).
    assert 1 <= int(error.headers["Retry-After"]) <= 20


@pytest.mark.asyncio
async def test_it_names_the_key_when_the_keys_own_limit_is_reached(person):
    key_limits, person_limits = Limits(requests_per_minute=2), Limits(requests_per_minute=3)
    await admit(person, key=1, key_limits=key_limits, person_limits=person_limits)
    await admit(person, key=1, key_limits=key_limits, person_limits=person_limits)
    error = await refused(person, key=1, key_limits=key_limits, person_limits=person_limits)
    assert "your API key" in error.message
    assert error.headers["x-gatehouse-limit"] == "key:requests_per_minute"
    # Another key of the same person still has the person's last request.
    await admit(person, key=2, key_limits=key_limits, person_limits=person_limits)
    error = await refused(person, key=2, key_limits=key_limits, person_limits=person_limits)
    assert error.headers["x-gatehouse-limit"] == "person:requests_per_minute"


@pytest.mark.asyncio
async def test_requests_that_reach_redis_out_of_order_each_get_their_place(person, monkeypatch):
    """Each web process stamps a request with its own clock before sending it; under load a request
    stamped earlier can reach Redis after one stamped later. A burst of N still gets N places."""
    limits = Limits(requests_per_minute=6)
    start = time.time() * 1000
    stamps = iter([start + 50 - 10 * i for i in range(6)] + [start + 60])
    monkeypatch.setattr(ratelimit, "_now_ms", lambda: int(next(stamps)))
    grants = [await admit(person, person_limits=limits) for _ in range(6)]
    assert grants[-1].headers["x-ratelimit-remaining-requests"] == "0"
    error = await refused(person, person_limits=limits)
    assert "requests per minute (RPM): limit 6" in error.message


@pytest.mark.asyncio
async def test_a_refused_request_costs_nothing(person):
    # The key's limit refuses; the person's single request per minute must still be there.
    key_limits = Limits(concurrent_requests=1)
    await admit(person, key=1, key_limits=key_limits)
    await refused(person, key=1, key_limits=key_limits, person_limits=Limits(requests_per_minute=1))
    await admit(person, key=2, person_limits=Limits(requests_per_minute=1))


@pytest.mark.asyncio
async def test_it_bounds_concurrent_requests_until_one_is_settled(person):
    limits = Limits(concurrent_requests=2)
    first = await admit(person, person_limits=limits)
    await admit(person, person_limits=limits)
    error = await refused(person, person_limits=limits)
    assert "concurrent requests: limit 2" in error.message
    first.settle(0)
    await eventually_admitted(person, person_limits=limits)


@pytest.mark.asyncio
async def test_a_long_request_keeps_its_concurrent_place_past_the_lease(person, settings):
    settings.CONCURRENT_REQUEST_LEASE_SECONDS = 0.6  # renewed every 0.2 s
    limits = Limits(concurrent_requests=1)
    admitted_ms = time.time() * 1000
    grant = await admit(person, person_limits=limits)
    # Wait (polling Redis) until the place has been renewed after two whole leases went by.
    async def lease_expiry() -> float:
        return await redis_client().zscore(grant.concurrent_keys[0], grant.request_id) or 0

    async with asyncio.timeout(10):
        while await lease_expiry() < admitted_ms + 3 * 600:  # noqa: ASYNC110 - polling Redis, where renewals show
            await asyncio.sleep(0.05)
    await refused(person, person_limits=limits)
    grant.settle(0)
    await eventually_admitted(person, person_limits=limits)


@pytest.mark.asyncio
async def test_tokens_used_beyond_the_estimate_close_the_minute_until_it_refills(person):
    limits = Limits(tokens_per_minute=600)  # 10 tokens a second come back
    grant = await admit(person, person_limits=limits, estimate=100)
    assert grant.headers["x-ratelimit-remaining-tokens"] == "500"
    grant.settle(900)  # the answer was long: 300 in debt
    error = await first_refusal(person, person_limits=limits, estimate=10)
    assert error.code == "rate_limit_exceeded"
    assert "tokens per minute (TPM): limit 600" in error.message
    assert 25 <= int(error.headers["Retry-After"]) <= 32  # 300 tokens of debt + 10 at 10 a second


@pytest.mark.asyncio
async def test_a_daily_quota_is_exceeded_until_midnight_utc(person):
    limits = Limits(tokens_per_day=1000)
    (await admit(person, person_limits=limits, estimate=50)).settle(990)
    error = await first_refusal(person, person_limits=limits, estimate=20)
    assert error.code == "quota_exceeded"
    assert error.type == "insufficient_quota"
    assert "quota of 1000 tokens per day" in error.message
    assert error.headers["x-should-retry"] == "false"  # the SDKs would retry in vain
    now = dt.datetime.now(dt.UTC)
    midnight = dt.datetime(now.year, now.month, now.day, tzinfo=dt.UTC) + dt.timedelta(days=1)
    assert abs(int(error.headers["Retry-After"]) - (midnight - now).total_seconds()) < 5


@pytest.mark.asyncio
async def test_a_monthly_quota_counts_what_the_key_used(person):
    limits = Limits(tokens_per_month=100)
    (await admit(person, key_limits=limits, estimate=10)).settle(100)
    error = await first_refusal(person, key_limits=limits, estimate=1)
    assert error.code == "quota_exceeded"
    assert "tokens per month for your API key" in error.message


@pytest.mark.asyncio
async def test_without_limits_there_are_no_headers(person):
    grant = await admit(person)
    assert grant.headers == {}


@pytest.mark.asyncio
async def test_the_limiter_can_be_switched_off(person, settings):
    settings.RATE_LIMITS_ENABLED = False
    for _ in range(3):
        await admit(person, person_limits=Limits(requests_per_minute=1))


def test_reset_durations_read_like_openais():
    assert ratelimit.format_reset(20) == "20ms"
    assert ratelimit.format_reset(1000) == "1s"
    assert ratelimit.format_reset(360_000) == "6m0s"
    assert ratelimit.format_reset(3_723_000) == "1h2m3s"


def test_quota_resets_are_at_utc_midnight_and_the_first_of_the_month():
    day, month = ratelimit.quota_resets_ms(dt.datetime(2026, 2, 28, 23, 0, tzinfo=dt.UTC))
    assert day == 3600_000
    assert month == 3600_000
