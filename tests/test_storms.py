"""Storms: the queue's bound holds, and every slot comes back, through about half a minute of overload churn
from two web processes, one of them killed mid-request, a Redis restart, and a node dying under load.

Everything is real: redis-server, two simulator processes, daphne processes, HTTP. One model,
`concurrency` 4 per node and `max_queue` 8; the simulators take 8 requests at once, so they never
limit anything themselves and their `max_in_flight` shows exactly what the gateway let through.

Afterwards:
(a) no node ever had more than `concurrency` requests of the model in flight;
(b) within a lease period or two every slot, lease and queue place is free in Redis;
(c) every request got a 200 or an OpenAI-shaped error (never a 500, never a hang), apart from the
    ones the clients abandoned on purpose and the ones cut off with the web process that was killed;
    and a few seconds after Redis came back, no answer says it is unreachable;
(d) a fresh burst of exactly `concurrency` requests runs all at once on the surviving node;
(e) every request a surviving web process answered after Redis came back has its usage record.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import redis

from common.store import keys
from tests.support.openai_errors import openai_error_problem
from tests.support.processes import DaphneServer, eventually
from tests.support.simulator import SimulatorProcess
from tests.support.stack import Stack, sim_config
from tests.support.usage import usage_entries

MODEL = "storm:latest"
CONCURRENCY = 4
MAX_QUEUE = 8
# Renewal rounds every 0.5 s, so admissions race lease renewal, and killed processes' slots come back fast.
LEASE_SECONDS = 1.5
CLIENTS = 56
REPLY_TOKENS = 30  # 0.3 s at 100 tokens a second
LONG_REPLY_TOKENS = 400  # 4 s: runs across whatever happens meanwhile
BURST_REPLY_TOKENS = 120  # 1.2 s: long enough for a burst to overlap on the node
RECOVERY_SECONDS = 3.0  # after Redis is back, no answer may still say it is unreachable
REQUEST_TIMEOUT = 20.0  # a request that gets no whole answer in this long hung
ABANDON_AFTER = 0.25  # the impatient clients' timeout

ENV = {
    "SLOT_LEASE_SECONDS": str(LEASE_SECONDS),
    # A slot that never comes back shows as a 503 queue_timeout rather than as a client hanging.
    "QUEUE_TIMEOUT_SECONDS": "15",
    # The clients hammer far past the queue bound: the per-person limits must not be what refuses them.
    "LIMIT_REQUESTS_PER_MINUTE": "0",
    "LIMIT_TOKENS_PER_MINUTE": "0",
}

# Whose key each request carries, so usage records can be counted exactly: ann talks to web 0 and cat
# to web 1's replacement until Redis restarts, dan and eve after; ben talks to web 1 (killed); abe is
# every client that leaves on purpose.
USERS = ("ann", "ben", "cat", "dan", "eve", "abe")

# What the clients send: (kind, weight). "long" streams run across events; "abandon-*" clients leave.
KINDS = [("plain", 36), ("stream", 36), ("long", 8), ("abandon-stream", 10), ("abandon-plain", 10)]


@pytest.fixture(scope="module")
def stack(django_db_setup, django_db_blocker):
    config = sim_config([MODEL], num_parallel=8, tokens_per_second=100, reply_tokens=500)
    with django_db_blocker.unblock():
        world = Stack({"one": config, "two": config}, webs=2, env=ENV, users=USERS,
                      models={MODEL: {"concurrency": CONCURRENCY, "max_queue": MAX_QUEUE}})
    yield world
    with django_db_blocker.unblock():
        world.stop()


# -- the clients ---------------------------------------------------------------------------------------

@dataclass
class Target:
    label: str
    web: DaphneServer
    user: str
    user_after_redis: str  # the key used once Redis has restarted


@dataclass
class Outcome:
    web: str
    user: str
    kind: str
    n: int
    sent: float  # wall clock, as the usage records are
    ended: float = 0.0
    status: int | None = None
    code: str | None = None
    message: str = ""
    stream_end: str | None = None  # "done" | "error" | "cut" for streamed 200s
    abandoned: bool = False  # the client left on purpose
    hung: bool = False  # no whole answer within REQUEST_TIMEOUT
    transport: str | None = None  # the connection failed
    problems: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        if self.abandoned:
            return "abandoned"
        if self.hung:
            return "HUNG"
        if self.transport:
            return "transport-error"
        if self.stream_end in ("error", "cut"):
            return f"200 stream {self.stream_end}"
        return str(self.status)

    def check_error(self, payload: Any, where: str) -> None:
        """An OpenAI error object (tests/support/openai_errors.py); a problem is noted, not raised."""
        if problem := openai_error_problem(payload):
            self.problems.append(f"{where}: {problem}")
        if isinstance(payload, dict) and isinstance(error := payload.get("error"), dict):
            self.code, self.message = error.get("code"), str(error.get("message"))

    def check_answer(self, response: httpx.Response) -> None:
        try:
            payload = response.json()
        except ValueError:
            self.problems.append(f"{self.status}: body is not JSON: {response.text[:200]}")
            return
        if self.status == 200:
            choices = payload.get("choices") or [] if isinstance(payload, dict) else []
            if len(choices) != self.n or not all((c.get("message") or {}).get("content") for c in choices):
                self.problems.append(f"200 without {self.n} answers: {str(payload)[:200]}")
        else:
            self.check_error(payload, str(self.status))
        self.check_status()

    def check_status(self) -> None:
        if self.status == 500:
            self.problems.append("500")
        elif self.status not in (200, 429, 502, 503, 504):
            self.problems.append(f"unexpected status {self.status}")

    def read_stream(self, response: httpx.Response, *, abandon: bool, deadline: float,
                    running: Callable[[], None]) -> None:
        last = None
        for line in response.iter_lines():
            if time.monotonic() > deadline:
                self.hung = True
                return
            if not line.startswith("data: "):
                continue  # blank lines and ": keep-alive" comments
            if abandon:
                self.abandoned = True  # leave mid-stream: closing the response drops the connection
                return
            if last is None:
                running()  # the first tokens came: it runs on a node
            last = line[6:]
        if last == "[DONE]":
            self.stream_end = "done"
            return
        try:
            event = json.loads(last) if last else None
        except ValueError:
            event = None
        if isinstance(event, dict) and "error" in event:
            self.stream_end = "error"  # a failure after the stream started, reported as OpenAI does
            self.check_error(event, "stream error event")
        else:
            self.stream_end = "cut"
            self.problems.append(f"stream ended without [DONE] or an error event (last: {str(last)[:120]})")


class Load:
    """CLIENTS threads sending chat requests to the web processes until stopped, recording everything."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.targets: list[Target | None] = [Target("web0", stack.webs[0], "ann", "dan"),
                                             Target("web1", stack.webs[1], "ben", "ben")]
        self.redis_restarted = False
        self.long_running: set[int] = set()  # clients whose long stream is running on a node now
        self.outcomes: list[Outcome] = []
        self.stop = threading.Event()
        self.phase = "overload"
        self.threads = [threading.Thread(target=self._client, args=(i,), daemon=True) for i in range(CLIENTS)]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=REQUEST_TIMEOUT + 10)
        assert not any(t.is_alive() for t in self.threads), "a client thread never finished its request"

    def run_phase(self, name: str, seconds: float, min_answers: int) -> None:
        """Keep the load going for `seconds`, and until at least `min_answers` more answers came."""
        self.phase = name
        start, until = len(self.outcomes), time.monotonic() + seconds
        eventually(lambda: time.monotonic() >= until and len(self.outcomes) - start >= min_answers,
                   what=f"{name}: the load kept flowing", timeout=seconds + 30, interval=0.1)

    def _client(self, i: int) -> None:
        rng = random.Random(i)
        kinds, weights = zip(*KINDS, strict=True)
        with httpx.Client(limits=httpx.Limits(max_connections=4, max_keepalive_connections=2)) as client:
            while not self.stop.is_set():
                target = self.targets[i % 2] or self.targets[0]
                assert target is not None
                kind = rng.choices(kinds, weights)[0]
                n = 2 if kind in ("plain", "stream") and rng.random() < 0.15 else 1
                outcome = self._send(client, target, kind, n, i)
                self.outcomes.append(outcome)
                if outcome.status in (429, 503) or outcome.transport:
                    self.stop.wait(rng.uniform(0.0, 0.03))  # a client backing off (briefly) before it retries

    def _send(self, client: httpx.Client, target: Target, kind: str, n: int, i: int) -> Outcome:
        if kind.startswith("abandon"):
            user = "abe"
        else:
            user = target.user_after_redis if self.redis_restarted else target.user
        outcome = Outcome(web=target.label, user=user, kind=kind, n=n, sent=time.time())
        body: dict[str, Any] = {"model": MODEL, "n": n, "messages": [{"role": "user", "content": "storm"}],
                                "max_tokens": LONG_REPLY_TOKENS if kind == "long" else REPLY_TOKENS}
        url = target.web.url + "/v1/chat/completions"
        headers = self.stack.headers(user)
        deadline = time.monotonic() + REQUEST_TIMEOUT

        def running() -> None:
            if kind == "long":
                self.long_running.add(i)

        try:
            if kind in ("plain", "abandon-plain"):
                timeout = ABANDON_AFTER if kind == "abandon-plain" else REQUEST_TIMEOUT
                response = client.post(url, json=body, headers=headers, timeout=timeout)
                outcome.status = response.status_code
                outcome.check_answer(response)
            else:
                body["stream"] = True
                with client.stream("POST", url, json=body, headers=headers, timeout=REQUEST_TIMEOUT) as response:
                    outcome.status = response.status_code
                    if response.status_code == 200:
                        outcome.read_stream(response, abandon=kind == "abandon-stream", deadline=deadline,
                                            running=running)
                    else:
                        response.read()
                        outcome.check_answer(response)
        except httpx.TimeoutException as exc:
            if kind == "abandon-plain":
                outcome.abandoned = True
            else:
                outcome.hung = True
                outcome.transport = type(exc).__name__
        except httpx.HTTPError as exc:
            outcome.transport = f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # noqa: BLE001 - an answer this client cannot read is a finding, not a crash
            outcome.problems.append(f"unreadable answer: {exc!r}"[:200])
        finally:
            self.long_running.discard(i)
        outcome.ended = time.time()
        return outcome


# -- the invariant checker -------------------------------------------------------------------------------

class InFlightWatch(threading.Thread):
    """Polls every simulator's /sim/stats through the storm (every 20 ms or so) for the requests of the
    model in flight on each node.

    What counts is what a poll sees (`in_flight`): a request let through beyond the bound runs for a
    while, so the polls catch it. The simulator's exact peak (`max_in_flight`) is reported beside it but
    not asserted: when the gateway cancels a call (its client left) and grants the slot at once, the
    node may read the next request in the same event-loop turn as the closed connection and count both
    for an instant, which no gateway can prevent (a node does not acknowledge a cancellation)."""

    def __init__(self, sims: dict[str, SimulatorProcess], load: Load, redis_url: str) -> None:
        super().__init__(daemon=True)
        self.sims = sims
        self.load = load
        self.kv = redis.Redis.from_url(redis_url, decode_responses=True, socket_timeout=0.5,
                                       socket_connect_timeout=0.5)
        self.depth: dict[str, int] = {}  # the deepest queue seen in Redis, by phase (reported, not asserted)
        self.dead: set[str] = set()
        self.seen = dict.fromkeys(sims, 0)  # the most in flight any poll saw, per node
        self.over = dict.fromkeys(sims, False)  # the last poll saw the node over the bound
        self.peak = dict.fromkeys(sims, 0)  # the simulator's own instantaneous peak, per node
        self.violations: list[str] = []  # when a poll saw a node past the bound, in which phase
        self.started = time.monotonic()
        self.stopped = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=2) as client:
            while not self.stopped.is_set():
                for name, sim in self.sims.items():
                    if name not in self.dead:
                        self._poll(client, name, sim)
                try:
                    depth = self.kv.zcard(keys.enqueued(MODEL))
                except redis.RedisError:
                    depth = 0
                self.depth[self.load.phase] = max(depth, self.depth.get(self.load.phase, 0))
                self.stopped.wait(0.02)
        self.kv.close()

    def _poll(self, client: httpx.Client, name: str, sim: SimulatorProcess) -> None:
        try:
            stats = client.get(sim.url + "/sim/stats").json()["models"].get(MODEL) or {}
        except (httpx.HTTPError, ValueError):
            return  # a node being killed
        now = stats.get("in_flight", 0)
        self.peak[name] = max(self.peak[name], stats.get("max_in_flight", 0), now)
        if now > CONCURRENCY and not self.over[name]:  # a new episode over the bound
            self.violations.append(f"node {name}: {now} in flight at t={time.monotonic() - self.started:.1f}s "
                                   f"(phase: {self.load.phase})")
        self.over[name] = now > CONCURRENCY
        self.seen[name] = max(self.seen[name], now)

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=10)


# -- what Redis says ---------------------------------------------------------------------------------------

def _owner_pid(owner: str) -> str:
    return owner.split(":")[-2] if owner.count(":") >= 2 else owner  # "<host>:<pid>:<uuid>"


def _running_owned_by(stack: Stack, pid: int) -> int:
    prefix = stack.prefix(MODEL)
    owners, nodes = stack.kv.hgetall(prefix + "owner"), stack.kv.hgetall(prefix + "node")
    return sum(1 for ticket, owner in owners.items() if ticket in nodes and _owner_pid(owner) == str(pid))


def _leftovers(stack: Stack) -> dict[str, Any]:
    prefix = stack.prefix(MODEL)
    run = {key[len(prefix):]: stack.kv.zcard(key) for key in stack.kv.scan_iter(prefix + "run:*")}
    return {
        "running": {k: v for k, v in run.items() if v},
        "leases": stack.kv.zcard(prefix + "lease"),
        "waiting": stack.kv.zcard(prefix + "enq"),
        "queued": stack.kv.zcard(prefix + "q") + stack.kv.zcard(prefix + "qb"),
        "owners": Counter(_owner_pid(o) for o in stack.kv.hvals(prefix + "owner")),
    }


def _all_free(leftovers: dict[str, Any]) -> bool:
    return not leftovers["running"] and not leftovers["leases"] and not leftovers["waiting"] \
        and not leftovers["queued"] and not leftovers["owners"]


def _usage_records(stack: Stack, user_ids: set[str]) -> list[dict[str, str]]:
    return [fields for fields in usage_entries(stack.kv) if fields.get("user") in user_ids]


# -- the storm -----------------------------------------------------------------------------------------------

def _warm_up(stack: Stack) -> None:
    """The model loaded and ready on both nodes (a queue that builds gets the second node)."""
    def both_ready() -> bool:
        with httpx.Client(timeout=30) as client:
            threads = [threading.Thread(target=lambda w=w: client.post(
                stack.url(w % 2) + "/chat/completions", headers=stack.headers(),
                json={"model": MODEL, "max_tokens": REPLY_TOKENS, "messages": [{"role": "user", "content": "hi"}]}))
                for w in range(16)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        return all(stack.placement(MODEL).get(sim.url) == "ready" for sim in stack.sims.values())

    eventually(both_ready, what="the model ready on both nodes", timeout=60, interval=0.2)
    # Nothing in flight on the nodes, so their peaks start from zero. (Whatever the warm-up left held in
    # Redis is for check (b) to find at the end.)
    eventually(lambda: all(sim.model_stats(MODEL).get("in_flight") == 0 for sim in stack.sims.values()),
               what="idle nodes before the storm", timeout=30)


@pytest.mark.timeout(240)
def test_the_queue_bound_holds_and_every_slot_comes_back_through_a_storm(stack, django_db_blocker):
    from django.contrib.auth import get_user_model

    with django_db_blocker.unblock():
        user_ids = {name: str(get_user_model().objects.get(username=f"{name}-{stack.redis.port}").pk)
                    for name in USERS}
    _warm_up(stack)
    one, two = stack.sims["one"], stack.sims["two"]
    for sim in (one, two):
        sim.reset()
    load = Load(stack)
    watch = InFlightWatch(stack.sims, load, stack.redis.url)
    events: dict[str, float] = {}
    storm_started = time.monotonic()
    watch.start()
    load.start()
    try:
        # Phase 1: overload churn far past the queue bound, on both web processes.
        load.run_phase("overload", 6, min_answers=200)

        # Phase 2: kill -9 web 1 while requests run through it; a replacement takes its share.
        killed = stack.webs[1]
        # At least one call running through it (its slot must come back by lease expiry); how many run
        # there at a given moment depends on how the fair queue interleaves the two processes' people.
        eventually(lambda: _running_owned_by(stack, killed.proc.pid) >= 1, what="requests running through web 1",
                   timeout=30, interval=0.02)
        load.phase = "web 1 killed"
        load.targets[1] = None
        killed_at = time.time()  # requests through it that ended before this must have had proper answers
        killed.kill()
        events["web 1 killed"] = time.monotonic() - storm_started
        replacement = stack.start_web()
        load.targets[1] = Target("web1b", stack.webs[replacement], "cat", "eve")
        events["replacement web up"] = time.monotonic() - storm_started
        load.run_phase("after web kill", 5, min_answers=100)

        # Phase 3: Redis restarts (empty: compose's Redis keeps nothing) with requests running.
        # Long streams come through a saturated queue only now and then: one running across the restart,
        # with every slot busy, is what makes the re-assertion matter.
        eventually(lambda: len(load.long_running) >= 1 and stack.running(MODEL) >= 2 * CONCURRENCY - 2,
                   what="a long request running, and the slots busy, before the Redis restart", timeout=30)
        load.phase = "redis down"
        stack.redis.kill()  # a restart: every connection to it breaks, and it comes back empty
        events["redis killed"] = time.monotonic() - storm_started
        stack.redis.start()
        redis_back = time.time()
        load.redis_restarted = True  # from here on the clients of the live webs use dan's and eve's keys
        events["redis back"] = time.monotonic() - storm_started
        load.run_phase("after redis restart", 6, min_answers=100)

        # Phase 4: node two dies (kill -9) with requests running on it.
        eventually(lambda: stack.kv.zcard(keys.run(MODEL, two.url)) >= 1,
                   what="requests running on node two", timeout=15)
        load.phase = "node two killed"
        watch.dead.add("two")
        two.proc.kill()
        two.proc.wait()
        events["node two killed"] = time.monotonic() - storm_started
        load.run_phase("after node death", 5, min_answers=50)
    finally:
        load.phase = "draining"
        load.finish()
        watch.stop()
    events["load stopped"] = time.monotonic() - storm_started

    failures: list[str] = []

    # (a) The bound: never more than `concurrency` in flight on a node.
    if any(seen > CONCURRENCY for seen in watch.seen.values()):
        failures.append(f"(a) more than {CONCURRENCY} in flight on a node: at most {watch.seen} seen; "
                        + "; ".join(watch.violations[:8]))

    # (b) Every slot, lease and queue place comes back within a lease period or two.
    drained_at = time.monotonic()
    try:
        eventually(lambda: _all_free(_leftovers(stack)), what="every slot free", timeout=2 * LEASE_SECONDS + 4,
                   interval=0.1)
        events["all slots free"] = time.monotonic() - storm_started
    except TimeoutError:
        left = _leftovers(stack)
        pids = {str(w.proc.pid): ("killed" if w.proc.poll() is not None else "alive") + f" {w.url}"
                for w in stack.webs}
        failures.append(f"(b) {time.monotonic() - drained_at:.0f}s after the load stopped (lease "
                        f"{LEASE_SECONDS}s) Redis still holds {left} (owner pids: {pids})")

    # (c) Every request got a 200 or an OpenAI-shaped error, bar the deliberately abandoned ones and
    # those cut off with the killed web process.
    live = [o for o in load.outcomes if o.web != "web1" or o.ended < killed_at]
    bad = [o for o in live if not o.abandoned and (o.problems or o.hung or o.transport)]
    if bad:
        sample = Counter(f"{o.web} {o.label} {o.kind}: {(o.problems or [o.transport])[0]}"[:160] for o in bad)
        failures.append(f"(c) {len(bad)} of {len(live)} requests to live web processes got no proper answer: "
                        + "; ".join(f"{count} x {what}" for what, count in sample.most_common(6)))

    # ... and once Redis is back, the web processes reach it again (their pooled connections with it).
    unreachable = [o for o in live if o.sent >= redis_back + RECOVERY_SECONDS and "(Redis)" in o.message]
    if unreachable:
        failures.append(f"(c) {len(unreachable)} requests sent {RECOVERY_SECONDS:.0f}s or more after Redis came back "
                        f"were told Redis is unreachable, the last {max(o.sent for o in unreachable) - redis_back:.1f}s after: "
                        + "; ".join(f"{c} x {m}" for m, c in Counter(
                            f"{o.web} {o.message[:60]}" for o in unreachable).most_common(3)))

    # (e) Usage records of requests a surviving web process answered after Redis came back: exactly the
    # requests with dan's and eve's keys (sent only then, only to web 0 and the replacement).
    answered = [o for o in live if o.user in ("dan", "eve") and o.status is not None and not o.hung]
    after_users = {user_ids["dan"], user_ids["eve"]}

    def recorded() -> list[dict[str, str]]:
        return _usage_records(stack, after_users)

    try:
        eventually(lambda: len(recorded()) >= len(answered), what="usage records", timeout=5, interval=0.1)
    except TimeoutError:
        records = recorded()
        failures.append(f"(e) {len(answered)} requests answered by live web processes after Redis came back, "
                        f"but only {len(records)} usage records "
                        f"(by status: requests {dict(Counter(o.label for o in answered))}, "
                        f"records {dict(Counter(r.get('status') for r in records))})")

    usage_answered, usage_recorded = len(answered), len(recorded())

    # (d) A fresh burst of exactly `concurrency` runs all at once on the surviving node: no slot leaked.
    one.reset()
    start = threading.Barrier(CONCURRENCY)
    burst: list[httpx.Response | Exception] = []

    def ask(i: int) -> None:
        start.wait()
        try:
            burst.append(stack.chat(MODEL, user="ann" if i % 2 == 0 else "cat", web=0 if i % 2 == 0 else replacement,
                                    timeout=REQUEST_TIMEOUT, max_tokens=BURST_REPLY_TOKENS))
        except httpx.HTTPError as exc:
            burst.append(exc)

    askers = [threading.Thread(target=ask, args=(i,)) for i in range(CONCURRENCY)]
    for thread in askers:
        thread.start()
    for thread in askers:
        thread.join()
    burst_peak = one.model_stats(MODEL).get("max_in_flight", 0)
    burst_statuses = [r.status_code if isinstance(r, httpx.Response) else type(r).__name__ for r in burst]
    if burst_statuses != [200] * CONCURRENCY or burst_peak != CONCURRENCY:
        failures.append(f"(d) a burst of {CONCURRENCY} on the surviving node: statuses {burst_statuses}, "
                        f"{burst_peak} ran at once (want {CONCURRENCY})")

    # The figures, printed with any failure.
    by_web = {web: dict(Counter(o.label for o in load.outcomes if o.web == web)) for web in ("web0", "web1", "web1b")}
    errors = Counter(f"{o.status} {o.code}: {o.message[:70]}" for o in load.outcomes if o.status != 200 and o.message)
    stream_errors = Counter(f"{o.code}: {o.message[:70]}" for o in load.outcomes if o.stream_end == "error")
    summary = "\n".join([
        f"storm of {len(load.outcomes)} requests from {CLIENTS} clients; events (s): "
        + ", ".join(f"{k} {v:.1f}" for k, v in events.items()),
        f"answers by web process: {by_web}",
        f"errors: {dict(errors.most_common(8))}",
        f"errors inside streams: {dict(stream_errors.most_common(4))}",
        f"max in flight per node: {watch.seen} seen by polls, {watch.peak} the nodes' own instantaneous peaks "
        f"(concurrency {CONCURRENCY})",
        f"deepest queue by phase: {watch.depth} (max_queue {MAX_QUEUE}; retries after a node failure may exceed it)",
        f"usage: {usage_answered} answered by live webs after Redis came back, {usage_recorded} records",
    ])
    print(summary)
    assert not failures, "\n".join(failures) + "\n--\n" + summary
