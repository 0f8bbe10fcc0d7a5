"""Request storms: how good Retry-After is as a reservation, whether the OpenAI SDK's own retries get a
burst through, and how busy the slots stay when a model is saturated by clients that honour Retry-After.

Starts its own redis-server, two simulators, a throw-away SQLite database (made as bench/scheduling.py
makes it) and two real web processes (`python -m portal.web`), and stops them all when it ends. Every
model has `concurrency` 2 and `max_queue` 2; the simulators run 2 requests per model at once
(num_parallel 2) at 20 tokens a second, 20 ms to the first token. Replies end at a full stop after at
least 15 tokens (0.77-1.5 s), or, with max_tokens 12, take exactly 0.62 s. The per-person rate limits
are off: only the queue bound refuses anything. Before each burst the clients open their connections,
so the burst reaches the queue within a fraction of a call.

1. retry_after: a warm model on one node (2 running + 2 waiting), its call time measured by four
   requests first. 30 streaming requests at once, half to each web process: 4 get in, the rest get
   503 queue_full with retry-after-ms. Each refused client comes back exactly at the moment it was
   given (its 503's arrival + retry-after-ms) and, if refused again, at the next moment it is given,
   until it is in (a streaming request's 200 comes at admission, so "in" is known at once):
     ratio = (moment of the retry that got in - first refusal) / first retry-after-ms
   1.00: the first Retry-After was enough; a client refused on its retry has a ratio above 1. The
   median, p10/p90 and max, and the share of refused clients in on their first retry are reported
   (target: median within 1 +/- 0.3). Run with fixed-length and with varying replies.
   That ratio cannot show a Retry-After that is too long (a client in at once has ratio 1 even if its
   place had been free for seconds), so each reservation is also compared with the moment its place
   actually opened: nobody else arrives, so places open as admitted calls end, and the k-th refused
   client (in order of the moment it was told) takes the place freed by the k-th call to end after
   the burst (the end of each admitted stream, as its client saw it).
     place_ratio = first retry-after-ms / (k-th call end - first refusal)
   Above 1: told to wait past the moment its place opened; below 1: told to come too soon.
2. sdk: 30 concurrent non-streaming requests with the real `openai` SDK (AsyncOpenAI, default
   max_retries=2; it sleeps retry-after-ms when the server sends one) on a warm model, varying
   replies: how many succeed (target: >= 27/30) and after how many retries. Then the same on a cold
   model (measured by four requests, then unloaded on its node, and Gatehouse saw it go), and, without
   coming back, the Retry-After a burst on a model never used before gets (Gatehouse's guesses).
3. utilisation: a model pinned on both nodes (4 slots, + 2 waiting), varying replies, 12 clients in
   a loop for 20 s (after 1.5 s to fill the queue): send; after a 503 sleep retry-after-ms and send
   again. Busy slot time / (2 slots x 2 nodes x 20 s) from the simulators' own `generating` gauge
   (GET /sim/stats every 20 ms; target >= 97 %), with the idle slot time split by whether a request
   was waiting in Gatehouse's queue (read from Redis at the same moments). Then the same 12 clients
   call the simulators' /api/chat directly (client i on node i % 2, a twin model, the num_ctx and
   fields Gatehouse sends), where Ollama's own FIFO queue keeps each node's num_parallel slots busy:
   that utilisation is the ceiling, and Gatehouse's is also given as a ratio of it.

Results go to bench/results/storms.json and storms.md. Takes about 3 minutes.

    .venv/bin/python bench/storms.py [--json bench/results/storms.json] [--only retry_after,sdk,utilisation]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import openai
import redis as redis_sync

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.scheduling import World, jain  # noqa: E402
from common.store import keys  # noqa: E402
from tests.support.processes import RedisServer  # noqa: E402
from tests.support.simulator import SimulatorProcess  # noqa: E402
from tests.support.stack import sim_config  # noqa: E402

CONCURRENCY = 2
MAX_QUEUE = 2
TOKENS_PER_SECOND = 20
REPLY_TOKENS = 15  # at least: the simulator ends its reply at a full stop, 15-30 tokens, 0.77-1.5 s
TTFT_MS = 20  # sim_config's time to the first token
FIXED_TOKENS = 12  # max_tokens for replies of exactly 0.62 s
RA_MODEL = "storm-ra:latest"  # 1. node A only, replies of a fixed length
RA_VARIED_MODEL = "storm-ra-varied:latest"  # 1. node A only, replies of varying length
SDK_MODEL = "storm-sdk:latest"  # 2. node A only
COLD_MODEL = "storm-cold:latest"  # 2. node A only, measured then unloaded
NEW_MODEL = "storm-new:latest"  # 2. node A only, never used before its burst
SAT_MODEL = "storm-sat:latest"  # 3. pinned on both nodes
DIRECT_MODEL = "storm-direct:latest"  # 3. its twin, called straight on the nodes
BURST = 30
SAT_CLIENTS = 12
SAT_ROUNDS = 2  # Gatehouse and direct take turns, so both see the same drift in the machine's load
SAT_ROUND_SECONDS = 10.0  # measured per round: 20 s per mode in all
SAT_LEAD_IN = 1.5  # clients start this long before the measured window, so the queue is full in it
SAMPLE_EVERY = 0.02


def quantile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def spread(values: list[float], digits: int = 2) -> dict:
    return {"median": round(quantile(values, 0.5), digits), "p10": round(quantile(values, 0.1), digits),
            "p90": round(quantile(values, 0.9), digits), "min": round(min(values), digits) if values else None,
            "max": round(max(values), digits) if values else None, "n": len(values)}


def chat_body(model: str, **extra) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": "Say something."}], **extra}


async def warm(client: httpx.AsyncClient, world: World, model: str, calls: int = 4, **extra) -> None:
    """Load the model (if it is not) and let Gatehouse measure its call time."""
    for _ in range(calls):
        response = await client.post(world.webs[0].url + "/v1/chat/completions", json=chat_body(model, **extra),
                                      headers=world.headers(), timeout=120)
        if response.status_code != 200:
            raise RuntimeError(f"warming {model}: {response.status_code} {response.text[:300]}")


async def open_connections(client: httpx.AsyncClient, world: World) -> None:
    """Open the burst's connections (and the web processes' database connections) beforehand, so the
    burst reaches the queue at once."""
    for _ in range(2):
        await asyncio.gather(*(client.get(world.webs[i % len(world.webs)].url + "/v1/models", headers=world.headers())
                               for i in range(BURST)))


def node_stats(world: World, model: str) -> dict:
    return httpx.get(world.env["OLLAMA_NODES"].split(",")[0] + "/sim/stats", timeout=5).json()["models"].get(model, {})


def svc(kv: redis_sync.Redis, model: str) -> dict:
    return {k.decode(): float(v) for k, v in kv.hgetall(keys.service(model)).items()}


# -- 1. Retry-After accuracy -------------------------------------------------------------------------

async def attempt(client: httpx.AsyncClient, url: str, headers: dict, body: dict) -> dict:
    """One streaming request: refused (with its Retry-After) or admitted (and read to its end)."""
    sent = time.perf_counter()
    async with client.stream("POST", url, json=body, headers=headers) as response:
        answered = time.perf_counter()
        if response.status_code == 503:
            await response.aread()
            return {"ok": False, "sent": sent, "answered": answered,
                    "code": response.json().get("error", {}).get("code"),
                    "retry_after_ms": int(response.headers.get("retry-after-ms", -1)),
                    "retry_after_s": int(response.headers.get("retry-after", -1))}
        if response.status_code != 200:
            raise RuntimeError(f"{response.status_code}: {(await response.aread())[:300]!r}")
        async for _ in response.aiter_lines():
            pass
        return {"ok": True, "sent": sent, "answered": answered, "ended": time.perf_counter()}


async def reserved_client(client: httpx.AsyncClient, url: str, headers: dict, body: dict) -> dict:
    """Send; while refused, come back exactly at the moment the refusal gave. Returns the attempts."""
    attempts = [await attempt(client, url, headers, body)]
    while not attempts[-1]["ok"]:
        last = attempts[-1]
        if last["code"] != "queue_full" or len(attempts) > 20:
            raise RuntimeError(f"unexpected refusal: {last}")
        await asyncio.sleep(max(0.0, last["answered"] + last["retry_after_ms"] / 1000 - time.perf_counter()))
        attempts.append(await attempt(client, url, headers, body))
    return {"attempts": attempts}


async def retry_after_run(world: World, kv: redis_sync.Redis, model: str, **extra) -> dict:
    before = node_stats(world, model)
    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=BURST + 10)) as client:
        await warm(client, world, model, **extra)
        await open_connections(client, world)
        measured = svc(kv, model)
        began = time.perf_counter()
        clients = await asyncio.gather(*(
            reserved_client(client, world.webs[i % len(world.webs)].url + "/v1/chat/completions",
                            world.headers(), chat_body(model, stream=True, **extra)) for i in range(BURST)))
        drained = time.perf_counter() - began
    refused = [c["attempts"] for c in clients if not c["attempts"][0]["ok"]]
    ratios, first_retry_in = [], 0
    for attempts in refused:
        first, last = attempts[0], attempts[-1]
        ratios.append((last["sent"] - first["answered"]) / (first["retry_after_ms"] / 1000))
        first_retry_in += len(attempts) == 2
    # Places open as admitted calls end; the k-th refused client (by the moment it was told to come
    # back) takes the place the k-th call to end after the burst frees. Calls that ended while the
    # burst was still arriving gave their place to a first attempt (more than capacity + max_queue in).
    ends = sorted(c["attempts"][-1]["ended"] for c in clients)
    ends = ends[max(0, BURST - len(refused) - (CONCURRENCY + MAX_QUEUE)):]
    by_reservation = sorted(refused, key=lambda a: a[0]["answered"] + a[0]["retry_after_ms"] / 1000)
    place_ratios, early_late_ms, refused_retries_ms = [], [], []
    for k, attempts in enumerate(by_reservation):
        first = attempts[0]
        place_ratios.append((first["retry_after_ms"] / 1000) / (ends[k] - first["answered"]))
        early_late_ms.append((first["answered"] + first["retry_after_ms"] / 1000 - ends[k]) * 1000)
        if not attempts[1]["ok"]:
            refused_retries_ms.append(round((attempts[1]["sent"] - ends[k]) * 1000))
    after = node_stats(world, model)
    done = after["completed"] - before.get("completed", 0)
    tokens = after["eval_tokens"] - before.get("eval_tokens", 0)
    return {
        "burst": BURST, "admitted_at_once": BURST - len(refused), "refused": len(refused),
        "burst_answered_within_s": round(max(c["attempts"][0]["answered"] for c in clients) - began, 2),
        "measured_call_ms": round(measured.get("avg_ms", 0)),
        "ratio": spread(ratios), "first_retry_admitted": first_retry_in,
        "retries_per_refused": spread([len(a) - 1 for a in refused], 1),
        "place_ratio": spread(place_ratios), "came_after_place_opened_ms": spread(early_late_ms, 0),
        "retry_after_ms": spread([a[0]["retry_after_ms"] for a in refused], 0),
        "retry_after_header_s": spread([a[0]["retry_after_s"] for a in refused], 0),
        "refused_retries_sent_after_place_opened_ms": refused_retries_ms,
        "actual_mean_call_ms": round(TTFT_MS + tokens / done / TOKENS_PER_SECOND * 1000),
        "drained_s": round(drained, 2),
    }


async def bench_retry_after(world: World, kv: redis_sync.Redis) -> dict:
    return {"fixed": await retry_after_run(world, kv, RA_MODEL, max_tokens=FIXED_TOKENS),
            "varied": await retry_after_run(world, kv, RA_VARIED_MODEL)}


# -- 2. the OpenAI SDK's own retries -----------------------------------------------------------------

async def sdk_burst(world: World, model: str) -> dict:
    clients = [openai.AsyncOpenAI(base_url=web.url + "/v1", api_key=world.keys["alice"], timeout=180)
               for web in world.webs]

    async def one(i: int) -> tuple[str, int, float]:
        start = time.perf_counter()
        try:
            raw = await clients[i % len(clients)].chat.completions.with_raw_response.create(
                model=model, messages=[{"role": "user", "content": "Say something."}])
            raw.parse()
            return "ok", raw.retries_taken, time.perf_counter() - start
        except openai.APIStatusError as exc:
            body = exc.body if isinstance(exc.body, dict) else {}
            return f"{exc.status_code} {body.get('code') or exc.code}", -1, time.perf_counter() - start
        except openai.APIError as exc:
            return type(exc).__name__, -1, time.perf_counter() - start

    began = time.perf_counter()
    try:
        results = await asyncio.gather(*(one(i) for i in range(BURST)))
    finally:
        for c in clients:
            await c.close()
    outcomes: dict[str, int] = {}
    for outcome, _, _ in results:
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    retries = [r for outcome, r, _ in results if outcome == "ok"]
    return {"succeeded": outcomes.get("ok", 0), "of": BURST, "outcomes": outcomes,
            "retries_taken": {str(n): retries.count(n) for n in sorted(set(retries))},
            "slowest_s": round(max(t for _, _, t in results), 2), "total_s": round(time.perf_counter() - began, 2)}


async def unload(sim: SimulatorProcess, kv: redis_sync.Redis, model: str) -> None:
    """Unload the model on the node, and wait until Gatehouse's swap actor has seen it go."""
    async with httpx.AsyncClient(timeout=30) as client:
        await client.post(sim.url + "/api/generate", json={"model": model, "keep_alive": 0})
    deadline = time.monotonic() + 20
    while kv.hget(keys.placement(model), sim.url) not in (None, b"gone"):  # noqa: ASYNC110 - polling Redis
        if time.monotonic() > deadline:
            raise RuntimeError(f"Gatehouse still thinks {model} is loaded")
        await asyncio.sleep(0.05)


async def guessed_retry_afters(world: World, kv: redis_sync.Redis, model: str) -> dict:
    """The Retry-After a burst gets on a model never measured (no call or load time yet): one attempt
    each, nobody comes back; the admitted requests are read to their end, to time the real drain."""
    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=BURST + 10)) as client:
        began = time.perf_counter()
        results = await asyncio.gather(*(
            attempt(client, world.webs[i % len(world.webs)].url + "/v1/chat/completions", world.headers(),
                    chat_body(model, stream=True)) for i in range(BURST)))
    refused = [r["retry_after_ms"] for r in results if not r["ok"]]
    admitted_done = max(r["ended"] for r in results if r["ok"]) - began
    measured = svc(kv, model)
    # Had the refused come back, they would have needed ceil(refused / slots) more rounds of calls.
    real = admitted_done + math.ceil(len(refused) / CONCURRENCY) * measured.get("avg_ms", 0) / 1000
    return {"refused": len(refused), "retry_after_ms": spread(refused, 0),
            "admitted_done_s": round(admitted_done, 2), "would_drain_s": round(real, 2),
            "measured_after_ms": {k: round(v) for k, v in measured.items()}}


async def bench_sdk(world: World, kv: redis_sync.Redis, node: SimulatorProcess) -> dict:
    async with httpx.AsyncClient() as client:
        await warm(client, world, SDK_MODEL)
        await warm(client, world, COLD_MODEL)
    out = {"warm": await sdk_burst(world, SDK_MODEL)}
    await unload(node, kv, COLD_MODEL)
    out["cold"] = await sdk_burst(world, COLD_MODEL)
    out["cold"]["measured_before_ms"] = {k: round(v) for k, v in svc(kv, COLD_MODEL).items()}
    out["never_measured"] = await guessed_retry_afters(world, kv, NEW_MODEL)
    return out


# -- 3. slot utilisation at saturation -------------------------------------------------------------

class Sampler(threading.Thread):
    """Every SAMPLE_EVERY seconds: the simulators' own count of requests holding a slot for `model`
    and, for Gatehouse runs, how many of its requests wait in Redis."""

    def __init__(self, sims: list[SimulatorProcess], model: str, redis_url: str | None) -> None:
        super().__init__(daemon=True)
        self.sims, self.model, self.redis_url = sims, model, redis_url
        self.samples: list[tuple[float, int, int]] = []  # (when, busy slots, waiting in Gatehouse's queue)
        self.stopping = threading.Event()

    def run(self) -> None:
        kv = redis_sync.Redis.from_url(self.redis_url) if self.redis_url else None
        with httpx.Client(timeout=5) as client:
            tick = time.perf_counter()
            while not self.stopping.is_set():
                now = time.perf_counter()
                busy = 0
                for sim in self.sims:
                    busy += client.get(sim.url + "/sim/stats").json()["models"].get(self.model, {}).get("generating", 0)
                waiting = kv.zcard(keys.enqueued(self.model)) if kv else 0
                self.samples.append((now, busy, waiting))
                tick = max(tick + SAMPLE_EVERY, time.perf_counter())  # a late sample does not make a burst of them
                self.stopping.wait(max(0.0, tick - time.perf_counter()))
        if kv:
            kv.close()

    def window(self, start: float, end: float) -> list[tuple[float, int, int]]:
        return [sample for sample in self.samples if start <= sample[0] <= end]


async def saturate(url_for, headers: dict, body: dict, sims: list[SimulatorProcess], model: str,
                   redis_url: str | None = None) -> dict:
    """One round: SAT_CLIENTS clients in a loop; with `redis_url` (Gatehouse) they sleep retry-after-ms
    on a 503. Returns raw figures for `combine`."""
    gatehouse = redis_url is not None
    sampler = Sampler(sims, model, redis_url)
    counts = {"ok": 0, "refused": 0, "refused_again": 0, "refused_after_own_reply": 0, "other": 0}
    others: dict[str, int] = {}
    per_client = [0] * SAT_CLIENTS
    start = time.perf_counter()
    window = (start + SAT_LEAD_IN, start + SAT_LEAD_IN + SAT_ROUND_SECONDS)

    async def loop(i: int, client: httpx.AsyncClient) -> None:
        last = "start"  # what this client's previous request got: start | ok | refused
        while time.perf_counter() < window[1]:
            response = await client.post(url_for(i), json=body, headers=headers)
            if response.status_code == 200:
                counts["ok"] += 1
                per_client[i] += 1
                last = "ok"
            elif gatehouse and response.status_code == 503 and "retry-after-ms" in response.headers:
                counts["refused"] += 1
                counts["refused_again"] += last == "refused"
                counts["refused_after_own_reply"] += last == "ok"
                last = "refused"
                # Never past the round's end: a client asleep then would lengthen the round, not its work.
                await asyncio.sleep(min(int(response.headers["retry-after-ms"]) / 1000,
                                        max(0.0, window[1] - time.perf_counter())))
            else:
                counts["other"] += 1
                what = f"{response.status_code} {response.text[:120]}"
                others[what] = others.get(what, 0) + 1
                await asyncio.sleep(0.1)

    before = [sim.model_stats(model) for sim in sims]
    sampler.start()
    try:
        async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=SAT_CLIENTS + 4)) as client:
            await asyncio.gather(*(loop(i, client) for i in range(SAT_CLIENTS)))
    finally:
        sampler.stopping.set()
        sampler.join()
    ended = time.perf_counter()
    after = [sim.model_stats(model) for sim in sims]
    slots = CONCURRENCY * len(sims)
    # Busy and idle slot-seconds in the window, each sample standing for the time until the next one.
    samples = sampler.window(*window)
    busy = idle_empty = idle_waiting = 0.0
    for (t, b, w), (t_next, _, _) in zip(samples, samples[1:], strict=False):
        busy += b * (t_next - t)
        if w:
            idle_waiting += (slots - b) * (t_next - t)
        else:
            idle_empty += (slots - b) * (t_next - t)
    return {"busy": busy, "idle_empty": idle_empty, "idle_waiting": idle_waiting,
            "covered": samples[-1][0] - samples[0][0] if len(samples) > 1 else 0.0, "samples": len(samples),
            "completed": sum(a["completed"] - b.get("completed", 0) for a, b in zip(after, before, strict=True)),
            "tokens": sum(a["eval_tokens"] - b.get("eval_tokens", 0) for a, b in zip(after, before, strict=True)),
            "run_seconds": ended - start, "max_busy": max(b for _, b, _ in sampler.samples), "slots": slots,
            "per_client": per_client, "others": others, **counts}


def combine(rounds: list[dict], gatehouse: bool) -> dict:
    """The rounds of one mode as one run."""
    total = {k: sum(r[k] for r in rounds) for k in ("busy", "idle_empty", "idle_waiting", "covered", "samples",
                                                   "completed", "tokens", "run_seconds", "ok", "refused",
                                                   "refused_again", "refused_after_own_reply", "other")}
    slots = rounds[0]["slots"]
    per_client = [sum(r["per_client"][i] for r in rounds) for i in range(SAT_CLIENTS)]
    others: dict[str, int] = {}
    for r in rounds:
        for what, n in r["others"].items():
            others[what] = others.get(what, 0) + n
    mean_call_s = (TTFT_MS / 1000 + total["tokens"] / total["completed"] / TOKENS_PER_SECOND) if total["completed"] else 0
    out = {
        "utilisation": round(total["busy"] / (total["covered"] * slots), 4),
        # Cross-check from the work done: replies x their mean length over the whole of each round
        # (its start, while the queue fills, and its end, while it drains, included).
        "work_utilisation": round(total["completed"] * mean_call_s / (total["run_seconds"] * slots), 4),
        "sampled_seconds": round(total["covered"], 1), "samples": total["samples"],
        "sim_mean_call_ms": round(mean_call_s * 1000), "replies_per_s": round(total["ok"] / total["run_seconds"], 2),
        "max_busy": max(r["max_busy"] for r in rounds), "slots": slots,
        "ok": total["ok"], "replies_per_client": sorted(per_client), "jain_index": round(jain(per_client), 3),
        "other_answers": others,
    }
    if gatehouse:
        out.update({k: total[k] for k in ("refused", "refused_again", "refused_after_own_reply")})
        # Where the idle slot time went: nothing waited in Gatehouse's queue, or something did.
        out["idle_nothing_waiting"] = round(total["idle_empty"] / (total["covered"] * slots), 4)
        out["idle_while_waiting"] = round(total["idle_waiting"] / (total["covered"] * slots), 4)
    return out


async def bench_utilisation(world: World, sims: list[SimulatorProcess]) -> dict:
    # Gatehouse: both nodes have the pinned model ready; let it measure the call time first.
    deadline = time.monotonic() + 30
    kv = redis_sync.Redis.from_url(world.env["REDIS_URL"])
    while sorted(kv.hgetall(keys.placement(SAT_MODEL)).values()) != [b"ready"] * len(sims):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{SAT_MODEL} never became ready on every node")
        await asyncio.sleep(0.1)
    kv.close()
    async with httpx.AsyncClient() as client:
        await asyncio.gather(*(warm(client, world, SAT_MODEL, calls=3) for _ in range(2)))
    # Direct: Ollama's own scheduling on each node, with the num_ctx and fields Gatehouse would send.
    native = {"model": DIRECT_MODEL, "stream": False, "options": {"num_ctx": 2048}, "truncate": False, "shift": False,
              "messages": [{"role": "user", "content": "Say something."}]}
    async with httpx.AsyncClient(timeout=60) as client:
        for sim in sims:
            (await client.post(sim.url + "/api/chat", json=native)).raise_for_status()
    before = [sim.model_stats(SAT_MODEL) for sim in sims]
    # The machine's load drifts (other work shares its CPUs): the two modes take turns.
    rounds: dict[str, list[dict]] = {"gatehouse": [], "direct": []}
    for _ in range(SAT_ROUNDS):
        rounds["gatehouse"].append(await saturate(
            lambda i: world.webs[i % len(world.webs)].url + "/v1/chat/completions", world.headers(),
            chat_body(SAT_MODEL), sims, SAT_MODEL, world.env["REDIS_URL"]))
        rounds["direct"].append(await saturate(lambda i: sims[i % len(sims)].url + "/api/chat", {}, native, sims,
                                               DIRECT_MODEL))
    after = [sim.model_stats(SAT_MODEL) for sim in sims]
    gate, direct = combine(rounds["gatehouse"], True), combine(rounds["direct"], False)
    gate["per_node_max_in_flight"] = [s.get("max_generating", 0) for s in after]
    gate["loads_during_run"] = sum(a.get("loads", 0) - b.get("loads", 0) for a, b in zip(after, before, strict=True))
    direct["reloads"] = sum(sim.model_stats(DIRECT_MODEL).get("reloads", 0) for sim in sims)
    return {"gatehouse": gate, "direct": direct,
            "gatehouse_vs_direct": round(gate["utilisation"] / direct["utilisation"], 4),
            "work_gatehouse_vs_direct": round(gate["work_utilisation"] / direct["work_utilisation"], 4)}


# -- the world -------------------------------------------------------------------------------------

def code_version() -> str:
    """The commit measured, and whether inference/ had changes not yet committed."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout.strip()

    return git("rev-parse", "--short", "HEAD") + (" + uncommitted inference/ changes" if git("status", "--porcelain",
                                                                                              "inference") else "")


def own_redis() -> RedisServer:
    """A redis-server of our own. Other suites on the machine start and kill Redis servers on free ports
    too: if ours lost the race for its port, the one answering there is someone else's."""
    for _ in range(5):
        server = RedisServer()
        try:
            pid = redis_sync.Redis.from_url(server.url).info("server")["process_id"]
        except redis_sync.RedisError:
            pid = None
        if pid == server.proc.pid:
            return server
        server.stop()
    raise RuntimeError("could not start a redis-server of our own")


def check_alive(redis: RedisServer, sims: list[SimulatorProcess], world: World) -> None:
    for what, proc in [("redis-server", redis.proc), *(("simulator", s.proc) for s in sims),
                       *(("web process", w.proc) for w in world.webs)]:
        if proc.poll() is not None:
            raise RuntimeError(f"our {what} (pid {proc.pid}) exited with {proc.returncode}")


async def run(args) -> dict:
    workdir = tempfile.mkdtemp(prefix="gatehouse-bench-storms-")
    one_node = [RA_MODEL, RA_VARIED_MODEL, SDK_MODEL, COLD_MODEL, NEW_MODEL]
    both = [SAT_MODEL, DIRECT_MODEL]
    server = {"num_parallel": CONCURRENCY, "tokens_per_second": TOKENS_PER_SECOND, "reply_tokens": REPLY_TOKENS}
    redis = sims = world = None
    began = time.perf_counter()
    try:
        redis = own_redis()
        sims = [SimulatorProcess(sim_config(one_node + both, **server)), SimulatorProcess(sim_config(both, **server))]
        setup = (f"Model.objects.filter(ollama_name__startswith='storm-').update(concurrency={CONCURRENCY}, "
                 f"max_queue={MAX_QUEUE})\n"
                 f"Model.objects.filter(ollama_name='{SAT_MODEL}').update(pinned=True)\n")
        # The production default for node polling (bench/scheduling.py's World polls every 0.5 s).
        world = World(sims, workdir, redis, webs=2, setup=setup, NODE_PS_POLL_SECONDS="2",
                      LIMIT_REQUESTS_PER_MINUTE="0", LIMIT_TOKENS_PER_MINUTE="0")
        check_alive(redis, sims, world)
        kv = redis_sync.Redis.from_url(redis.url)
        results: dict = {"cpus": os.cpu_count(), "concurrency": CONCURRENCY, "max_queue": MAX_QUEUE,
                         "gatehouse": code_version(), "load_average_at_start": os.getloadavg()[0]}
        results["seconds"] = {"setup": round(time.perf_counter() - began, 1)}
        for name, part in (("retry_after", lambda: bench_retry_after(world, kv)),
                           ("sdk", lambda: bench_sdk(world, kv, sims[0])),
                           ("utilisation", lambda: bench_utilisation(world, sims))):
            if name in args.only:
                began = time.perf_counter()
                results[name] = await part()
                results["seconds"][name] = round(time.perf_counter() - began, 1)
                check_alive(redis, sims, world)
        kv.close()
        return results
    finally:
        if world:
            world.stop()
        for sim in sims or []:
            sim.stop()
        if redis:
            redis.stop()


def fmt(s: dict, unit: str = "") -> str:
    return f"median {s['median']:g}{unit} (p10 {s['p10']:g}{unit}, p90 {s['p90']:g}{unit})"


def lines(results: dict) -> list[str]:
    out = [f"Gatehouse request storms ({results['cpus']} CPUs shared by clients, Gatehouse and simulators, load average "
           f"{results['load_average_at_start']:.1f} at the start; concurrency {results['concurrency']}, max_queue "
           f"{results['max_queue']}; code {results['gatehouse']})", ""]
    if "retry_after" in results:
        out.append(f"1. Retry-After accuracy: {BURST} streams at once on a warm model, refused ones come back at "
                   "their retry-after-ms (target: median of time until in / first Retry-After within 0.7-1.3)")
        for name, what in (("fixed", "replies of 0.62 s"), ("varied", "replies of 0.77-1.5 s")):
            r = results["retry_after"][name]
            out += [f"   {name} ({what}; call measured at {r['measured_call_ms']} ms): {r['admitted_at_once']} in at "
                    f"once, {r['refused']} refused (all answered within {r['burst_answered_within_s']} s)",
                    f"     time until in / first Retry-After: {fmt(r['ratio'])}; in on the first retry "
                    f"{r['first_retry_admitted']}/{r['refused']}, most retries {r['retries_per_refused']['max']:.0f}",
                    f"     first Retry-After / time until its place opened: {fmt(r['place_ratio'])}",
                    f"     came back after its place opened by {fmt(r['came_after_place_opened_ms'], ' ms')}",
                    f"     retry-after-ms handed out: {fmt(r['retry_after_ms'], ' ms')}, max {r['retry_after_ms']['max']:.0f}"
                    f" ms; burst drained in {r['drained_s']} s"]
        out.append("")
    if "sdk" in results:
        s = results["sdk"]
        out.append(f"2. openai SDK (max_retries=2, honours retry-after-ms): {BURST} requests at once (target: >= 27/30)")
        for name in ("warm", "cold"):
            r = s[name]
            out.append(f"   {name:<5} {r['succeeded']}/{r['of']} succeeded; retries taken {r['retries_taken']}; "
                       f"outcomes {r['outcomes']}; slowest {r['slowest_s']} s")
        n = s["never_measured"]
        out += [f"   never-measured cold model: {n['refused']} refused with retry-after-ms "
                f"{fmt(n['retry_after_ms'], ' ms')}, max {n['retry_after_ms']['max']:.0f} ms; "
                f"the burst would have drained in ~{n['would_drain_s']} s", ""]
    if "utilisation" in results:
        u = results["utilisation"]
        g, d = u["gatehouse"], u["direct"]
        out += [f"3. Slot utilisation at saturation: {SAT_CLIENTS} clients, {SAT_ROUNDS} rounds of "
                f"{SAT_ROUND_SECONDS:.0f} s per mode, 2 nodes x {CONCURRENCY} slots (target: >= 97 %)",
                f"   gatehouse busy {g['utilisation']:.1%} (work done {g['work_utilisation']:.1%}); {g['ok']} replies, "
                f"{g['replies_per_s']}/s; most at once per node {g['per_node_max_in_flight']}",
                f"     {g['refused']} refusals: {g['refused_again']} of a retry, {g['refused_after_own_reply']} of a "
                "request sent right after the client's own reply",
                f"     idle slot time: {g['idle_nothing_waiting']:.1%} with nothing waiting in the queue, "
                f"{g['idle_while_waiting']:.1%} while something waited"
                + (f"; other answers {g['other_answers']}" if g["other_answers"] else ""),
                f"     replies per client {g['replies_per_client']} (Jain's index {g['jain_index']})",
                f"   direct    busy {d['utilisation']:.1%} (work done {d['work_utilisation']:.1%}); {d['ok']} replies, "
                f"{d['replies_per_s']}/s; Ollama's own queue, no refusals",
                f"     replies per client {d['replies_per_client']} (Jain's index {d['jain_index']})",
                f"   sampled {g['sampled_seconds']} s / {d['sampled_seconds']} s in {g['samples']} / {d['samples']} samples "
                f"(one every {SAMPLE_EVERY * 1000:.0f} ms when the machine keeps up); mean call on the node "
                f"{g['sim_mean_call_ms']} / {d['sim_mean_call_ms']} ms",
                f"   gatehouse / direct: busy {u['gatehouse_vs_direct']:.1%}, work done {u['work_gatehouse_vs_direct']:.1%}",
                ""]
    return out


def markdown(results: dict) -> str:
    rows = ["| what | measured | target |", "|---|---|---|"]
    if "retry_after" in results:
        for name, what in (("fixed", "replies of 0.62 s"), ("varied", "replies of 0.77-1.5 s")):
            r = results["retry_after"][name]
            rows += [f"| {what}: time until a refused client is in / its first Retry-After ({r['refused']} refused "
                     f"of {r['burst']}) | {fmt(r['ratio'])} | median 0.7-1.3 |",
                     f"| {what}: refused clients in on their first retry | {r['first_retry_admitted']}/{r['refused']} | |",
                     f"| {what}: first Retry-After / time until its place opened | {fmt(r['place_ratio'])} | |"]
    if "sdk" in results:
        s = results["sdk"]
        rows += [f"| openai SDK, {BURST} at once, warm model | {s['warm']['succeeded']}/{BURST} | >= 27/30 |",
                 f"| openai SDK, {BURST} at once, cold model (measured before) | {s['cold']['succeeded']}/{BURST} "
                 "| >= 27/30 |",
                 f"| retry-after-ms on a never-measured cold model | {fmt(s['never_measured']['retry_after_ms'], ' ms')}"
                 f" (drains in ~{s['never_measured']['would_drain_s']} s) | |"]
    if "utilisation" in results:
        u = results["utilisation"]
        rows += [f"| slot utilisation at saturation, Gatehouse | {u['gatehouse']['utilisation']:.1%} | >= 97 % |",
                 f"| ... straight to the nodes (Ollama's own queue) | {u['direct']['utilisation']:.1%} | |",
                 f"| ... Gatehouse / direct | {u['gatehouse_vs_direct']:.1%} (work done: "
                 f"{u['work_gatehouse_vs_direct']:.1%}) | |",
                 f"| replies per client at saturation (Jain's index), Gatehouse / direct | "
                 f"{u['gatehouse']['jain_index']} / {u['direct']['jain_index']} | |"]
    return "\n".join(["# Request storms (bench/storms.py)", "", lines(results)[0], "", *rows, ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", default=str(REPO / "bench" / "results" / "storms.json"))
    parser.add_argument("--only", type=lambda s: s.split(","), default=["retry_after", "sdk", "utilisation"])
    args = parser.parse_args()
    began = time.perf_counter()
    results = asyncio.run(run(args))
    results["bench_seconds"] = round(time.perf_counter() - began, 1)
    print("\n" + "\n".join(lines(results)))
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    path.with_suffix(".md").write_text(markdown(results))
    print(f"written to {path} and {path.with_suffix('.md')} ({results['bench_seconds']} s)")


if __name__ == "__main__":
    main()
