"""Rate limits and token quotas per key and per person, enforced in Redis in one round trip.

Each request is admitted by one Lua script (common/store/lua/limit_admit.lua) that checks every limit of
the caller's key and of the person, and takes the request only if all of them pass. So the limits
are exact with any number of web processes: with a limit of N, N requests pass and the next one is
refused, wherever they arrive. When the request ends, `Grant.settle` charges the tokens it really
used, off the response path (a second script, run by the outbox: inference/accounting/outbox.py).

- requests and tokens per minute are token buckets that refill continuously (limit / 60 s), as
  OpenAI's do: the `x-ratelimit-reset-*` headers say when the bucket is full again;
- tokens are not known before the model has run, so admission reserves an estimate of the prompt
  (about four characters a token) and the settlement charges the difference. A request that uses
  more than was left puts the bucket in debt, and nothing more is admitted until it refills;
- concurrent requests are a sorted set of request ids with a lease that the web process renews while
  the request runs, so a web process that is killed frees its concurrent-request claims within
  CONCURRENT_REQUEST_LEASE_SECONDS;
- daily and monthly token quotas are counters per UTC day and month.

Every key lives under the person's own hash tag (`gh:u{<user id>}:...`), so the script touches one
Redis Cluster slot. A limit of 0 means no limit.
"""

from __future__ import annotations

import asyncio
import calendar
import datetime as dt
import logging
import math
import time
import uuid
from dataclasses import dataclass, field
from typing import Protocol

from django.conf import settings

from common.store import keys, scripts
from common.store.client import REDIS_ERRORS, redis_client
from inference.accounting import outbox
from inference.scheduler.scheduling_errors import LimitExceeded, StoreUnavailable

log = logging.getLogger(__name__)


class LimitValues(Protocol):
    """The limits of one scope (a key, or a person); 0 means no limit."""

    requests_per_minute: int
    tokens_per_minute: int
    concurrent_requests: int
    tokens_per_day: int
    tokens_per_month: int


def _values(limits: LimitValues) -> list[int]:
    return [limits.requests_per_minute, limits.tokens_per_minute, limits.concurrent_requests,
            limits.tokens_per_day, limits.tokens_per_month]


def limit_keys(user_id: int, key_id: int) -> list[str]:
    """The key's five state keys, then the person's: rpm, tpm, concurrent, today's and this month's counters."""
    now = dt.datetime.now(dt.UTC)
    return keys.limit_keys(user_id, key_id, day=now.strftime("%Y%m%d"), month=now.strftime("%Y%m"))


def quota_resets_ms(now: dt.datetime | None = None) -> tuple[int, int]:
    """Milliseconds until the next UTC midnight and the first of the next UTC month.

    Web processes read their own clocks here; a skew of a second or two at midnight is accepted.
    """
    now = now or dt.datetime.now(dt.UTC)
    tomorrow = dt.datetime(now.year, now.month, now.day, tzinfo=dt.UTC) + dt.timedelta(days=1)
    days_in_month = calendar.monthrange(now.year, now.month)[1]
    next_month = dt.datetime(now.year, now.month, 1, tzinfo=dt.UTC) + dt.timedelta(days=days_in_month)
    return (math.ceil((tomorrow - now).total_seconds() * 1000),
            math.ceil((next_month - now).total_seconds() * 1000))


def format_reset(ms: int) -> str:
    """OpenAI's duration format for x-ratelimit-reset-*: "20ms", "1s", "6m0s", "1h2m3s"."""
    if ms < 1000:
        return f"{max(0, ms)}ms"
    seconds = math.ceil(ms / 1000)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{seconds}s"
    if minutes:
        return f"{minutes}m{seconds}s"
    return f"{seconds}s"


def rate_limit_headers(reply: list[int]) -> dict[str, str]:
    """x-ratelimit-* for the scope closest to its limit; only limits that exist are described."""
    headers = {}
    _, req_limit, req_left, req_reset, tok_limit, tok_left, tok_reset = reply
    if req_limit >= 0:
        headers.update({"x-ratelimit-limit-requests": str(req_limit),
                        "x-ratelimit-remaining-requests": str(max(0, req_left)),
                        "x-ratelimit-reset-requests": format_reset(req_reset)})
    if tok_limit >= 0:
        headers.update({"x-ratelimit-limit-tokens": str(tok_limit),
                        "x-ratelimit-remaining-tokens": str(max(0, tok_left)),
                        "x-ratelimit-reset-tokens": format_reset(tok_reset)})
    return headers


@dataclass
class Grant:
    """A request admitted by the limiter. Settle it exactly once when the request ends."""

    keys: list[str]
    request_id: str
    estimate: int
    settle_args: list[int]
    headers: dict[str, str] = field(default_factory=dict)
    concurrent_keys: list[str] = field(default_factory=list)  # its concurrent-request claims, if any scope limits them
    settled_key: str = ""  # the marker that makes the settlement land once
    settled: bool = False

    def settle(self, tokens: int) -> None:
        """Free the concurrent-request claim and charge `tokens`. Left to the outbox, so the response does not
        wait for it, a cancelled request (the client left) still settles, and a busy pool or a Redis
        outage delays the settlement without losing it."""
        if self.settled or not self.keys:
            return
        self.settled = True
        _places.drop(self)
        outbox.put(f"settlement of request {self.request_id}", lambda: self._settle(tokens))

    async def _settle(self, tokens: int) -> None:
        day_reset, month_reset = quota_resets_ms()
        args = [_now_ms(), self.request_id, tokens - self.estimate, day_reset, month_reset, *self.settle_args]
        await scripts.get(redis_client(), "limit_settle")(keys=[*self.keys, self.settled_key], args=args)


UNLIMITED = Grant(keys=[], request_id="", estimate=0, settle_args=[])


class _Places:
    """The concurrent-request claims this process holds, renewed every third of their lease: a long
    request keeps its claim, and a killed process's claims lapse within one lease."""

    def __init__(self) -> None:
        self.grants: dict[str, Grant] = {}
        self.task: asyncio.Task | None = None

    def hold(self, grant: Grant) -> None:
        self.grants[grant.request_id] = grant
        loop = asyncio.get_running_loop()
        if self.task is None or self.task.done() or self.task.get_loop() is not loop:
            self.task = loop.create_task(self._renew_while_held())

    def drop(self, grant: Grant) -> None:
        self.grants.pop(grant.request_id, None)

    async def _renew_while_held(self) -> None:
        while self.grants:
            lease_ms = int(settings.CONCURRENT_REQUEST_LEASE_SECONDS * 1000)
            await asyncio.sleep(lease_ms / 3000)
            expiry = _now_ms() + lease_ms
            pipe = redis_client().pipeline(transaction=False)
            for grant in list(self.grants.values()):
                for key in grant.concurrent_keys:
                    # XX: a claim that lapsed meanwhile (Redis was unreachable too long) is not taken back.
                    pipe.zadd(key, {grant.request_id: expiry}, xx=True)
                    pipe.pexpire(key, lease_ms)
            try:
                await pipe.execute()
            except REDIS_ERRORS as exc:
                log.warning("could not renew concurrent-request claims: %s", exc)


_places = _Places()


def _now_ms() -> int:
    # Wall-clock milliseconds: buckets and leases are compared across processes.
    return int(time.time() * 1000)


async def acquire(*, user_id: int, key_id: int, key_limits: LimitValues, person_limits: LimitValues,
                  estimate: int) -> Grant:
    """Admit one request, or raise LimitExceeded naming the limit. One Redis round trip."""
    if not settings.RATE_LIMITS_ENABLED:
        return UNLIMITED
    key_values, person_values = _values(key_limits), _values(person_limits)
    state_keys = limit_keys(user_id, key_id)
    request_id = uuid.uuid4().hex
    day_reset, month_reset = quota_resets_ms()
    lease_ms = int(settings.CONCURRENT_REQUEST_LEASE_SECONDS * 1000)
    args = [_now_ms(), request_id, lease_ms, estimate, day_reset, month_reset, *key_values, *person_values]
    try:
        reply = await scripts.get(redis_client(), "limit_admit")(keys=state_keys, args=args)
    except REDIS_ERRORS:
        raise StoreUnavailable("rate-limit") from None
    if reply[0] == 0:
        _, scope, name, limit, retry_ms, *figures = reply
        raise LimitExceeded(scope, name, int(limit), int(retry_ms), rate_limit_headers([0, *map(int, figures)]))
    settle_args = [key_values[1], key_values[2], person_values[1], person_values[2]]
    concurrent = [scope_keys[2] for scope_keys, values in ((state_keys[:5], key_values), (state_keys[5:], person_values))
                  if values[2] > 0]
    grant = Grant(keys=state_keys, request_id=request_id, estimate=estimate, settle_args=settle_args,
                  headers=rate_limit_headers([int(x) for x in reply]), concurrent_keys=concurrent,
                  settled_key=keys.limit_settled(user_id, request_id))
    if concurrent:
        _places.hold(grant)
    return grant
