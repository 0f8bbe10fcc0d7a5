"""The Batch API on idle slots (issue 17): a 10,000-line batch runs while interactive clients keep the
same model busy. Does the batch slow the interactive clients down, and does it fill the slots they leave?

Starts its own redis-server, one simulator node, a throw-away SQLite database and a real web process
(as bench/scheduling.py's World makes them), a Celery worker with its beat and the batch feeder's worker
(`celery -A portal worker -Q batches --pool=solo`), and stops them all when it ends. One model,
`concurrency` 4 on a node that runs 4 requests at once (num_parallel 4); the node decodes
--tps tokens a second per request, 20 ms to the first token. Interactive replies are --reply-tokens
long (natural length, no max_tokens); batch lines ask for max_tokens --line-tokens, so a line is short.
Per-person rate limits are off (10,000 lines in minutes is past the default 600 requests a minute).

The interactive load: --clients closed-loop clients (each sends its next non-streaming chat request
when the previous answer arrives, after a random think time of --think seconds), each a person of their
own with an interactive key. Think times and replies are seeded: the n-th request of client i waits
the same think time and gets a reply of the same length in every phase through Gatehouse, so the phases
differ only in what Gatehouse and the machine do. Every request's latency is recorded, with Gatehouse's
x-gatehouse-queue-wait-ms (the time it waited for a slot).

1. direct:  the interactive load for --seconds straight to the simulator's own OpenAI endpoint (a twin
            model on the same node, so its counters stay apart): the backend without Gatehouse.
2. A:       the interactive load alone through Gatehouse for --seconds.
3. B:       a --lines line batch (chat lines, same model) uploaded with /v1/files and created with
            /v1/batches through the `openai` SDK, by a person of its own; once its first lines run, the
            same interactive load for --seconds. Then the batch runs alone until it completes (or
            --batch-timeout passes: then how far it got is reported and it is cancelled).
4. A again: (unless --no-after) the interactive load alone once more, to show how much the machine's
            own drift moves p95 between two runs of the same load.

Every 50 ms a sampler reads the node's /sim/stats (`generating`: requests holding one of its slots;
`in_flight`) and Gatehouse's two queues in Redis (interactive, batch). Slot utilisation = the mean over
samples of generating / concurrency. Reported: interactive p50/p95/p99 per phase, p95(B)/p95(A) (target
<= 1.10, with a 90 % bootstrap interval: what sampling noise alone would move it by) and
p95(A)/p95(direct); the latency less the queue wait; utilisation in A, in B's interactive window, with
the batch alone, and over the batch's whole run (target: near 100 %); batch lines/s and wall time;
how many lines Gatehouse held at once (the feeder's bound: BATCH_LINES_PER_SLOT x slots, no more waiting
than max_queue); request_counts; the output file checked (every custom_id once); the node's max_in_flight
(must be <= concurrency); the usage records Gatehouse wrote, by priority and status.

Each run is stored under its --label in bench/results/batch.json (other labels are kept, so several
settings can be compared), and batch.md is written from all of them (what follows its notes marker is
kept). About 9 minutes with the defaults.

    .venv/bin/python bench/batch.py [--label default] [--lines 10000] [--seconds 60] [--line-tokens 4]
        [--lines-per-slot 2] [--max-queue 64] [--tps 50] [--reply-tokens 10,20] [--clients 3] [--think 0.1,0.5]
        [--batch-timeout 420] [--no-after] [--json bench/results/batch.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
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

from bench.overhead import manage  # noqa: E402
from bench.scheduling import World  # noqa: E402
from bench.storms import code_version, own_redis, quantile  # noqa: E402
from common.store import keys  # noqa: E402
from tests.support.processes import BatchWorker, CeleryWorker  # noqa: E402
from tests.support.simulator import SimulatorProcess  # noqa: E402
from tests.support.stack import sim_config  # noqa: E402

MODEL = "bench-batch:latest"
DIRECT_MODEL = "bench-batch-direct:latest"  # its twin, called straight on the node
CONCURRENCY = 4
SAMPLE_EVERY = 0.05
REPLY_SEED = 7
BOOTSTRAP = 2000  # resamples for the confidence interval of a p95 ratio
WAITED_MS = 10  # a queue wait this long or longer was a wait for a slot (admission itself takes 0-5 ms)
CLIENTS = ("ann", "ben", "cat", "dan", "eve", "fay", "gus", "hal")
BATCHER = "batcher"


def latency_summary(records: list[dict]) -> dict:
    ok = [r for r in records if r["status"] == 200]
    seconds = [r["latency"] for r in ok]
    waits = [r["queue_wait_ms"] for r in ok if r["queue_wait_ms"] is not None]
    errors: dict[str, int] = {}
    for r in records:
        if r["status"] != 200:
            what = f"{r['status']} {r['error'][:80]}"
            errors[what] = errors.get(what, 0) + 1
    out = {"requests": len(records), "errors": len(records) - len(ok), "error_kinds": errors,
           **{f"p{q}_ms": round(quantile(seconds, q / 100) * 1000, 1) for q in (50, 95, 99)},
           "mean_ms": round(sum(seconds) / len(seconds) * 1000, 1) if seconds else None,
           "max_ms": round(max(seconds) * 1000, 1) if seconds else None}
    # Without the time spent waiting for a slot: what the call itself took, Gatehouse's overhead included.
    service = [r["latency"] - r["queue_wait_ms"] / 1000 for r in ok if r["queue_wait_ms"] is not None]
    if service:
        out["without_queue_wait"] = {f"p{q}_ms": round(quantile(service, q / 100) * 1000, 1) for q in (50, 95, 99)}
    out["latencies_ms"] = [round(x * 1000, 1) for x in seconds]
    if waits:
        out["queue_wait_ms"] = {"mean": round(sum(waits) / len(waits), 1), "p95": round(quantile(waits, 0.95), 1),
                                "max": max(waits), "share_waited": round(sum(w >= WAITED_MS for w in waits) / len(waits), 3)}
    return out


# -- the sampler ----------------------------------------------------------------------------------

class Sampler(threading.Thread):
    """Every SAMPLE_EVERY seconds: the node's own gauges for a model (generating, in_flight) and, for
    Gatehouse, how many interactive and batch tickets wait in its queue."""

    def __init__(self, sim_url: str, redis_url: str) -> None:
        super().__init__(daemon=True)
        self.sim_url, self.redis_url = sim_url, redis_url
        self.model = MODEL
        self.node = sim_url
        # (when, generating, in_flight, interactive waiting, batch waiting, running in Gatehouse's view)
        self.samples: list[tuple[float, int, int, int, int, int]] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        kv = redis_sync.Redis.from_url(self.redis_url)
        with httpx.Client(timeout=5) as client:
            tick = time.perf_counter()
            while not self.stopping.is_set():
                now = time.perf_counter()
                model = self.model
                stats = client.get(self.sim_url + "/sim/stats").json()["models"].get(model, {})
                pipe = kv.pipeline(transaction=False)
                pipe.zcard(keys.queue(model))
                pipe.zcard(keys.batch_queue(model))
                pipe.zcard(keys.run(model, self.node))
                waiting, waiting_batch, running = pipe.execute()
                self.samples.append((now, stats.get("generating", 0), stats.get("in_flight", 0), waiting, waiting_batch,
                                     running))
                tick = max(tick + SAMPLE_EVERY, time.perf_counter())  # a late sample does not make a burst of them
                self.stopping.wait(max(0.0, tick - time.perf_counter()))
        kv.close()

    def window(self, start: float, end: float) -> list[tuple[float, int, int, int, int, int]]:
        return [s for s in self.samples if start <= s[0] <= end]


def p95_ratio_interval(a_ms: list[float], b_ms: list[float], seed: int = 1) -> list[float]:
    """A 90 % bootstrap interval of p95(b) / p95(a): how far sampling noise alone moves the ratio."""
    rng = random.Random(seed)
    ratios = sorted(quantile(rng.choices(b_ms, k=len(b_ms)), 0.95) / quantile(rng.choices(a_ms, k=len(a_ms)), 0.95)
                    for _ in range(BOOTSTRAP))
    return [round(ratios[int(0.05 * BOOTSTRAP)], 3), round(ratios[int(0.95 * BOOTSTRAP) - 1], 3)]


def utilisation(samples: list[tuple[float, int, int, int, int, int]]) -> dict:
    """Mean of generating / concurrency over the samples, and how often every slot was busy."""
    if not samples:
        return {"samples": 0}
    busy = [s[1] for s in samples]
    return {"utilisation": round(sum(busy) / (len(busy) * CONCURRENCY), 4),
            "all_slots_busy": round(sum(b >= CONCURRENCY for b in busy) / len(busy), 4),
            "samples": len(samples), "seconds": round(samples[-1][0] - samples[0][0], 1),
            "max_generating": max(busy), "max_in_flight": max(s[2] for s in samples),
            # Slots idle while an interactive request waited in Gatehouse's queue (should not happen).
            "idle_while_interactive_waited": round(sum(CONCURRENCY - s[1] for s in samples if s[3])
                                                   / (len(samples) * CONCURRENCY), 4),
            "idle_while_batch_waited": round(sum(CONCURRENCY - s[1] for s in samples if s[4])
                                             / (len(samples) * CONCURRENCY), 4),
            # Slots Gatehouse counts as taken (granted, not yet released) while the node runs nothing on them:
            # the hand-over from one call to the next.
            "held_not_generating": round(sum(max(0, s[5] - s[1]) for s in samples) / (len(samples) * CONCURRENCY), 4),
            "batch_waiting_mean": round(sum(s[4] for s in samples) / len(samples), 2),
            "max_batch_waiting": max(s[4] for s in samples),
            "max_admitted": max(s[3] + s[4] + s[5] for s in samples),  # running + waiting, in Redis
            "batch_waiting_zero_share": round(sum(s[4] == 0 for s in samples) / len(samples), 4)}


# -- the interactive load -------------------------------------------------------------------------

async def interactive(url: str, model: str, headers: list[dict], seconds: float, think: tuple[float, float],
                      seed: int) -> list[dict]:
    """len(headers) closed-loop clients for `seconds`: send, read the answer, think, send again."""
    records: list[dict] = []
    end = time.perf_counter() + seconds

    async def client_loop(i: int, client: httpx.AsyncClient) -> None:
        rng = random.Random(seed * 100 + i)
        await asyncio.sleep(rng.uniform(*think))  # the clients do not start in lockstep
        n = 0
        while time.perf_counter() < end:
            # Seeded: the node's reply to the n-th question of client i has the same length in every phase.
            body = {"model": model, "seed": REPLY_SEED,
                    "messages": [{"role": "user", "content": f"Client {i} asks question {n}."}]}
            start = time.perf_counter()
            try:
                response = await client.post(url, json=body, headers=headers[i])
                status, wait = response.status_code, response.headers.get("x-gatehouse-queue-wait-ms")
                text = ""
                if status != 200:
                    try:
                        text = response.json()["error"].get("code") or response.text[:200]
                    except (ValueError, KeyError, AttributeError):
                        text = response.text[:200]
            except httpx.HTTPError as exc:
                status, wait, text = -1, None, repr(exc)
            records.append({"client": i, "start": start, "latency": time.perf_counter() - start, "status": status,
                            "queue_wait_ms": int(wait) if wait is not None else None, "error": text})
            n += 1
            await asyncio.sleep(rng.uniform(*think))

    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=len(headers) + 2)) as client:
        await asyncio.gather(*(client_loop(i, client) for i in range(len(headers))))
    return records


async def warm(url: str, model: str, headers: dict, calls: int = 6) -> None:
    async with httpx.AsyncClient(timeout=120) as client:
        for _ in range(calls):
            body = {"model": model, "messages": [{"role": "user", "content": "Warm up."}]}
            response = await client.post(url, json=body, headers=headers)
            if response.status_code != 200:
                raise RuntimeError(f"warming {model} at {url}: {response.status_code} {response.text[:300]}")


# -- the batch ------------------------------------------------------------------------------------

def batch_file(lines: int, line_tokens: int, mixed_spelling: bool = False) -> bytes:
    """Chat lines for MODEL; with mixed_spelling every other line names it without its tag (the same model)."""
    out = []
    for i in range(lines):
        model = MODEL.removesuffix(":latest") if mixed_spelling and i % 2 else MODEL
        out.append(json.dumps({"custom_id": f"line-{i}", "method": "POST", "url": "/v1/chat/completions",
                               "body": {"model": model, "max_tokens": line_tokens,
                                        "messages": [{"role": "user", "content": f"Classify item {i}."}]}}))
    return ("\n".join(out) + "\n").encode()


def counts(batch) -> dict:
    c = batch.request_counts
    return {"total": c.total, "completed": c.completed, "failed": c.failed}


def check_output(client: openai.OpenAI, batch, lines: int) -> dict:
    """Every custom_id once in the output and error files."""
    ids: list[str] = []
    statuses: dict[str, int] = {}
    for file_id in (batch.output_file_id, batch.error_file_id):
        if not file_id:
            continue
        for raw in client.files.content(file_id).text.splitlines():
            line = json.loads(raw)
            ids.append(line["custom_id"])
            code = str((line.get("response") or {}).get("status_code") or (line.get("error") or {}).get("code"))
            statuses[code] = statuses.get(code, 0) + 1
    return {"lines_in_files": len(ids), "distinct_custom_ids": len(set(ids)),
            "every_line_once": sorted(ids) == sorted(f"line-{i}" for i in range(lines)), "by_status": statuses}


async def run_batch_phase(args, world: World, sampler: Sampler, headers: list[dict], client: openai.OpenAI,
                          sim: SimulatorProcess) -> dict:
    url = world.webs[0].url + "/v1/chat/completions"
    began = time.perf_counter()
    data = batch_file(args.lines, args.line_tokens, args.mixed_spelling)
    file_id = (await asyncio.to_thread(client.files.create, file=("batch.jsonl", data), purpose="batch")).id
    uploaded = time.perf_counter()
    batch = await asyncio.to_thread(client.batches.create, input_file_id=file_id, endpoint="/v1/chat/completions",
                                    completion_window="24h")
    created = time.perf_counter()
    # Phase B starts once the batch's lines run on the node.
    deadline = time.monotonic() + 120
    while sim.model_stats(MODEL).get("generating", 0) == 0:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the batch's lines never ran: {client.batches.retrieve(batch.id)}")
        await asyncio.sleep(0.02)
    first_line = time.perf_counter()
    records = await interactive(url, MODEL, headers, args.seconds, args.think, seed=1)
    window_end = time.perf_counter()
    at_window_end = counts(await asyncio.to_thread(client.batches.retrieve, batch.id))
    # The batch alone until it is done.
    timed_out = False
    while True:
        current = await asyncio.to_thread(client.batches.retrieve, batch.id)
        if current.status in ("completed", "failed", "expired", "cancelled"):
            break
        if time.perf_counter() - first_line > args.batch_timeout:
            timed_out = True
            break
        await asyncio.sleep(0.25)
    done_at = time.perf_counter()
    if timed_out:
        progress = counts(current)
        await asyncio.to_thread(client.batches.cancel, batch.id)
        for _ in range(120):  # lines already running finish first
            current = await asyncio.to_thread(client.batches.retrieve, batch.id)
            if current.status == "cancelled":
                break
            await asyncio.sleep(0.5)
    else:
        progress = counts(current)
    # The last line ends a moment before the status says so: the batch ran until the node went idle.
    last_busy = max((s[0] for s in sampler.window(first_line, done_at) if s[1] > 0), default=done_at)
    finished = current.status == "completed"
    lines_done = progress["completed"] + progress["failed"]
    out = {
        "batch_id": batch.id, "status": current.status, "timed_out": timed_out,
        "request_counts_at_end": counts(current), "request_counts_when_interactive_stopped": at_window_end,
        "lines_run": lines_done,
        "upload_s": round(uploaded - began, 2), "create_s": round(created - uploaded, 2),
        "create_to_first_line_s": round(first_line - created, 2),
        "first_line_to_last_line_s": round(last_busy - first_line, 1),
        "create_to_status_completed_s": round(done_at - created, 1),
        "server_created_to_completed_s": (current.completed_at - current.created_at) if current.completed_at else None,
        "lines_per_s": round(lines_done / (last_busy - first_line), 2),
        "lines_per_s_with_interactive": round((at_window_end["completed"] + at_window_end["failed"])
                                              / (window_end - first_line), 2),
        "lines_per_s_alone": round((lines_done - at_window_end["completed"] - at_window_end["failed"])
                                   / max(1e-9, last_busy - window_end), 2),
        "usage": current.usage.model_dump() if current.usage else None,
    }
    if finished:
        out["output"] = await asyncio.to_thread(check_output, client, current, args.lines)
    out["interactive"] = latency_summary(records)
    out["util_interactive_window"] = utilisation(sampler.window(first_line, window_end))
    out["util_batch_alone"] = utilisation(sampler.window(window_end, last_busy))
    out["util_whole_batch"] = utilisation(sampler.window(first_line, last_busy))
    out["_records"] = records
    return out


# -- the world ------------------------------------------------------------------------------------

def check_alive(procs: list[tuple[str, object]]) -> None:
    for what, proc in procs:
        if proc.poll() is not None:
            raise RuntimeError(f"our {what} (pid {proc.pid}) exited with {proc.returncode}")


async def run(args) -> dict:
    workdir = tempfile.mkdtemp(prefix="gatehouse-bench-batch-")
    people = CLIENTS[:args.clients]
    server = {"tokens_per_second": args.tps, "response_tokens": list(args.reply_tokens)}
    env = {"BATCH_FILES_DIR": f"{workdir}/files", "BATCH_LINES_PER_SLOT": str(args.lines_per_slot),
           "BATCH_FILE_MAX_LINES": str(max(50_000, args.lines)),
           "LIMIT_REQUESTS_PER_MINUTE": "0", "LIMIT_TOKENS_PER_MINUTE": "0",
           "NODE_POLL_SECONDS": "3600", "NODE_PS_POLL_SECONDS": "2"}
    redis = sim = world = worker = feeder = None
    results: dict = {"cpus": os.cpu_count(), "load_average_at_start": round(os.getloadavg()[0], 2),
                     "gatehouse": code_version(), "settings": {
                         "lines": args.lines, "seconds": args.seconds, "clients": args.clients,
                         "think_s": list(args.think), "tokens_per_second": args.tps,
                         "reply_tokens": list(args.reply_tokens), "line_max_tokens": args.line_tokens,
                         "batch_lines_per_slot": args.lines_per_slot, "concurrency": CONCURRENCY,
                         "max_queue": args.max_queue, "mixed_model_spelling": args.mixed_spelling,
                         "num_parallel": CONCURRENCY, "time_to_first_token_ms": 20}}
    began = time.perf_counter()
    try:
        redis = own_redis()
        sim = SimulatorProcess(sim_config([MODEL, DIRECT_MODEL], num_parallel=CONCURRENCY, **server))
        setup = (f"Model.objects.filter(ollama_name__in=['{MODEL}', '{DIRECT_MODEL}']).update("
                 f"concurrency={CONCURRENCY}, max_queue={args.max_queue})\n"
                 + "".join(f"U().objects.get_or_create(username='{p}')\n" for p in (*people, BATCHER)))
        world = World([sim], workdir, redis, setup=setup, **env)
        for person in (*people, BATCHER):
            world.keys[person] = manage(world.env, "createapikey", person).strip()
        worker = CeleryWorker(world.env)
        feeder = BatchWorker(world.env)
        procs = [("redis-server", redis.proc), ("simulator", sim.proc), ("web process", world.webs[0].proc),
                 ("celery worker", worker.proc), ("batch worker", feeder.proc)]
        headers = [world.headers(p) for p in people]
        gate_url = world.webs[0].url + "/v1/chat/completions"
        direct_url = sim.url + "/v1/chat/completions"
        await warm(gate_url, MODEL, headers[0])
        await warm(direct_url, DIRECT_MODEL, {})
        results["seconds"] = {"setup": round(time.perf_counter() - began, 1)}

        sampler = Sampler(sim.url, redis.url)
        sampler.start()
        try:
            # 1. direct
            sampler.model = DIRECT_MODEL
            t0 = time.perf_counter()
            records = await interactive(direct_url, DIRECT_MODEL, [{}] * len(people), args.seconds, args.think, seed=1)
            results["direct"] = {"interactive": latency_summary(records),
                                 "util": utilisation(sampler.window(t0, time.perf_counter()))}
            sampler.model = MODEL
            check_alive(procs)
            # 2. A
            sim.reset()  # the node's counters (max_in_flight) from here on
            t0 = time.perf_counter()
            records_a = await interactive(gate_url, MODEL, headers, args.seconds, args.think, seed=1)
            results["A"] = {"interactive": latency_summary(records_a),
                            "util": utilisation(sampler.window(t0, time.perf_counter()))}
            check_alive(procs)
            # 3. B
            t0 = time.perf_counter()
            client = openai.OpenAI(base_url=world.webs[0].url + "/v1", api_key=world.keys[BATCHER], timeout=120)
            b = await run_batch_phase(args, world, sampler, headers, client, sim)
            records_b = b.pop("_records")
            results["B"] = b
            results["seconds"]["B"] = round(time.perf_counter() - t0, 1)
            check_alive(procs)
            # 4. A again
            if not args.no_after:
                t0 = time.perf_counter()
                records = await interactive(gate_url, MODEL, headers, args.seconds, args.think, seed=1)
                results["A_again"] = {"interactive": latency_summary(records),
                                      "util": utilisation(sampler.window(t0, time.perf_counter()))}
        finally:
            sampler.stopping.set()
            sampler.join()
        results["usage_records"] = usage_records(world)
        node = sim.model_stats(MODEL)
        results["node"] = {k: node.get(k) for k in ("requests", "completed", "errors", "max_in_flight",
                                                    "max_generating", "max_waiting_for_slot", "loads", "reloads")}
        pa, pb = results["A"]["interactive"]["p95_ms"], results["B"]["interactive"]["p95_ms"]
        results["p95_B_over_A"] = round(pb / pa, 3)
        results["p95_A_over_direct"] = round(pa / results["direct"]["interactive"]["p95_ms"], 3)
        lat_a, lat_b = results["A"]["interactive"]["latencies_ms"], results["B"]["interactive"]["latencies_ms"]
        results["p95_B_over_A_90pct_interval"] = p95_ratio_interval(lat_a, lat_b)
        if "A_again" in results:
            results["p95_A_again_over_A"] = round(results["A_again"]["interactive"]["p95_ms"] / pa, 3)
            results["p95_A_again_over_A_90pct_interval"] = p95_ratio_interval(
                lat_a, results["A_again"]["interactive"]["latencies_ms"])
        results["interactive_waits_B"] = waits_detail(records_b)
        results["interactive_waits_A"] = waits_detail(records_a)
        return results
    finally:
        if feeder:
            feeder.kill()  # a warm shutdown would wait out the feeder's idle time
        if worker:
            worker.stop()
        if world:
            world.stop()
        if sim:
            sim.stop()
        if redis:
            redis.stop()
        shutil.rmtree(workdir, ignore_errors=True)


USAGE_QUERY = """
import json
from django.db.models import Count
from usage.models import UsageRecord
rows = UsageRecord.objects.values("priority", "status").annotate(n=Count("id")).order_by("priority", "status")
print(json.dumps({f"{r['priority']} {r['status']}": r["n"] for r in rows}))
"""


def usage_records(world: World) -> dict:
    """Gatehouse's usage records by priority and status, once the worker has drained them all from Redis:
    every request that reached the pipeline, refused ones included."""
    kv = redis_sync.Redis.from_url(world.env["REDIS_URL"])
    deadline = time.monotonic() + 60
    while sum(kv.xlen(stream) for stream in keys.usage_streams()) and time.monotonic() < deadline:
        time.sleep(0.5)
    kv.close()
    return json.loads(manage(world.env, "shell", "-c", USAGE_QUERY).strip().splitlines()[-1])


def waits_detail(records: list[dict]) -> dict:
    """How the interactive requests that waited for a slot in Gatehouse's queue compare with the rest."""
    ok = [r for r in records if r["status"] == 200 and r["queue_wait_ms"] is not None]
    waited = [r for r in ok if r["queue_wait_ms"] >= WAITED_MS]
    p95 = quantile([r["latency"] for r in ok], 0.95)
    slow = [r for r in ok if r["latency"] >= p95]
    return {"waited": len(waited), "of": len(ok),
            "wait_ms_when_waited": {"median": round(quantile([r["queue_wait_ms"] for r in waited], 0.5), 1),
                                    "max": max((r["queue_wait_ms"] for r in waited), default=0)},
            "slowest_5pct_that_waited": f"{sum(r['queue_wait_ms'] >= WAITED_MS for r in slow)}/{len(slow)}",
            "slowest_5pct_mean_wait_ms": round(sum(r["queue_wait_ms"] for r in slow) / max(1, len(slow)), 1)}


# -- the report -----------------------------------------------------------------------------------

def lat(s: dict) -> str:
    return f"p50 {s['p50_ms']:.0f} ms, p95 {s['p95_ms']:.0f} ms, p99 {s['p99_ms']:.0f} ms ({s['requests']} requests" + \
        (f", {s['errors']} errors: {s['error_kinds']})" if s["errors"] else ")")


def feeder_bound(s: dict) -> int:
    """The most lines the feeder keeps in flight on one model (batches/feeder.py `room`)."""
    return CONCURRENCY + min(CONCURRENCY * (s["batch_lines_per_slot"] - 1), s.get("max_queue", 64))


def lines(label: str, r: dict) -> list[str]:
    s, b = r["settings"], r["B"]
    w = b["util_whole_batch"]
    out = [f"[{label}] {r['cpus']} CPUs shared by everything (load average {r['load_average_at_start']} at the "
           f"start), the node is the Ollama simulator; code {r['gatehouse']}",
           f"  {s['clients']} interactive clients, think {s['think_s'][0]}-{s['think_s'][1]} s, replies "
           f"{s['reply_tokens'][0]}-{s['reply_tokens'][1]} tokens at {s['tokens_per_second']} tokens/s; batch lines "
           f"max_tokens {s['line_max_tokens']}; concurrency {s['concurrency']}, BATCH_LINES_PER_SLOT "
           f"{s['batch_lines_per_slot']}, max_queue {s.get('max_queue', 64)}"
           f"{'; every other line names the model without its tag' if s.get('mixed_model_spelling') else ''}; "
           f"{s['seconds']} s per phase",
           f"  direct (no Gatehouse):  {lat(r['direct']['interactive'])}; slots busy {r['direct']['util']['utilisation']:.1%}",
           f"  A (interactive alone):  {lat(r['A']['interactive'])}; slots busy {r['A']['util']['utilisation']:.1%}",
           f"  B (with the batch):     {lat(b['interactive'])}; slots busy "
           f"{b['util_interactive_window']['utilisation']:.1%}"]
    if "A_again" in r:
        out.append(f"  A again (alone):        {lat(r['A_again']['interactive'])}; slots busy "
                   f"{r['A_again']['util']['utilisation']:.1%}")
    wb, wa = r["interactive_waits_B"], r["interactive_waits_A"]
    if "without_queue_wait" in b["interactive"]:
        na, nb = r["A"]["interactive"]["without_queue_wait"], b["interactive"]["without_queue_wait"]
        out.append(f"  latency less the queue wait: A p50 {na['p50_ms']:.0f} / p95 {na['p95_ms']:.0f} ms, B p50 "
                   f"{nb['p50_ms']:.0f} / p95 {nb['p95_ms']:.0f} ms; B's queue wait mean "
                   f"{b['interactive']['queue_wait_ms']['mean']:.0f} ms, p95 {b['interactive']['queue_wait_ms']['p95']:.0f} ms")
    ci = r.get("p95_B_over_A_90pct_interval")
    ci_again = r.get("p95_A_again_over_A_90pct_interval")
    out += [f"  p95 B / A = {r['p95_B_over_A']}" + (f" (90 % bootstrap interval {ci[0]}-{ci[1]})" if ci else "")
            + f", target <= 1.10; A / direct = {r['p95_A_over_direct']}"
            + (f"; A again / A = {r['p95_A_again_over_A']}" if "p95_A_again_over_A" in r else "")
            + (f" ({ci_again[0]}-{ci_again[1]})" if ci_again else ""),
            f"  interactive requests that waited for a slot: A {wa['waited']}/{wa['of']}, B {wb['waited']}/{wb['of']} "
            f"(median wait {wb['wait_ms_when_waited']['median']} ms, max {wb['wait_ms_when_waited']['max']} ms); "
            f"of B's slowest 5 % {wb['slowest_5pct_that_waited']} waited",
            f"  batch: {b['status']}, {b['lines_run']} lines in {b['first_line_to_last_line_s']} s ({b['lines_per_s']} "
            f"lines/s; {b['lines_per_s_with_interactive']}/s beside the clients, {b['lines_per_s_alone']}/s alone); "
            f"create to completed {b['create_to_status_completed_s']} s; request_counts {b['request_counts_at_end']}",
            f"  slot utilisation while the batch ran: {b['util_whole_batch']['utilisation']:.1%} (beside the clients "
            f"{b['util_interactive_window']['utilisation']:.1%}, alone {b['util_batch_alone']['utilisation']:.1%}; "
            f"all {CONCURRENCY} busy in {b['util_whole_batch']['all_slots_busy']:.1%} of samples)",
            f"  idle slot time while the batch ran: {1 - w['utilisation']:.1%}, of which {w['idle_while_batch_waited']:.1%} "
            f"while batch lines waited in Gatehouse's queue (slots granted but not yet generating at the node: "
            f"{w['held_not_generating']:.1%}, the hand-over from one call to the next); batch lines waiting: mean "
            f"{w['batch_waiting_mean']}, max {w.get('max_batch_waiting', '?')}; with the batch alone, most lines in Gatehouse at "
            f"once (running + waiting) {b['util_batch_alone'].get('max_admitted', '?')} (the feeder's bound: "
            f"{feeder_bound(s)})",
            f"  node: max_in_flight {r['node']['max_in_flight']} (concurrency {CONCURRENCY}), max_generating "
            f"{r['node']['max_generating']}, loads {r['node']['loads']}, reloads {r['node']['reloads']}"]
    if "usage_records" in r:
        out.append(f"  usage records (priority status: count): {r['usage_records']}")
    if "output" in b:
        o = b["output"]
        out.append(f"  output files: {o['lines_in_files']} lines, {o['distinct_custom_ids']} distinct custom_ids, every "
                   f"line once: {o['every_line_once']}, by status {o['by_status']}")
    return out


NOTES = "<!-- notes: kept when the bench rewrites this file -->"


def markdown(runs: dict, notes: str = "") -> str:
    """The table and each run's figures; `notes` (what follows NOTES in the file already there, written by
    hand) is kept."""
    def interval(ci: list[float] | None) -> str:
        return f" ({ci[0]}-{ci[1]})" if ci else ""

    rows = ["| setting | interactive p95 A / B | p95 B ÷ A (90 % interval) | p95 A ÷ direct | interactive errors in B | slots busy: "
            "beside clients / batch alone / whole batch | batch lines/s | batch | max_in_flight |",
            "|---|---|---|---|---|---|---|---|---|"]
    for label, r in runs.items():
        b, s = r["B"], r["settings"]
        rows.append(f"| {label} ({s['lines']} lines of max_tokens {s['line_max_tokens']}, "
                    f"{s['batch_lines_per_slot']} per slot, max_queue {s.get('max_queue', 64)}"
                    f"{', the model named two ways' if s.get('mixed_model_spelling') else ''}) | "
                    f"{r['A']['interactive']['p95_ms']:.0f} / {b['interactive']['p95_ms']:.0f} ms | "
                    f"**{r['p95_B_over_A']}**{interval(r.get('p95_B_over_A_90pct_interval'))} | {r['p95_A_over_direct']} | {b['interactive']['errors']} of "
                    f"{b['interactive']['requests']} | {b['util_interactive_window']['utilisation']:.1%} / "
                    f"{b['util_batch_alone']['utilisation']:.1%} / **{b['util_whole_batch']['utilisation']:.1%}** | "
                    f"{b['lines_per_s']} | {b['status']}, {b['lines_run']} lines in {b['first_line_to_last_line_s']} s | "
                    f"{r['node']['max_in_flight']} (≤ {CONCURRENCY}) |")
    details = []
    for label, r in runs.items():
        details += ["```", *lines(label, r), "```", ""]
    return "\n".join(["# The Batch API on idle slots (bench/batch.py)", "", *rows, "", *details, NOTES, "",
                      notes.strip("\n"), ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    pair = lambda cast: lambda s: tuple(cast(x) for x in s.split(","))  # noqa: E731
    parser.add_argument("--json", default=str(REPO / "bench" / "results" / "batch.json"))
    parser.add_argument("--label", default="default", help="the run's name in the results (others are kept)")
    parser.add_argument("--lines", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=60.0, help="each interactive phase")
    parser.add_argument("--clients", type=int, default=3)
    parser.add_argument("--think", type=pair(float), default=(0.1, 0.5), help="think time range, seconds")
    parser.add_argument("--tps", type=float, default=50.0, help="the node's tokens per second per request")
    parser.add_argument("--reply-tokens", type=pair(int), default=(10, 20), help="interactive reply length range")
    parser.add_argument("--line-tokens", type=int, default=4, help="max_tokens of every batch line")
    parser.add_argument("--max-queue", type=int, default=64, help="the model's max_queue")
    parser.add_argument("--lines-per-slot", type=int, default=2, help="BATCH_LINES_PER_SLOT")
    parser.add_argument("--batch-timeout", type=float, default=420.0, help="from the first line; then cancel")
    parser.add_argument("--mixed-spelling", action="store_true",
                        help=f"every other line names the model {MODEL.removesuffix(':latest')!r}, the rest {MODEL!r}")
    parser.add_argument("--no-after", action="store_true", help="skip the second run of phase A")
    args = parser.parse_args()
    began = time.perf_counter()
    result = asyncio.run(run(args))
    result["bench_seconds"] = round(time.perf_counter() - began, 1)
    print("\n" + "\n".join(lines(args.label, result)))
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    runs = json.loads(path.read_text()).get("runs", {}) if path.exists() else {}
    runs[args.label] = result
    path.write_text(json.dumps({"runs": runs}, indent=2) + "\n")
    md = path.with_suffix(".md")
    notes = md.read_text().partition(NOTES)[2] if md.exists() else ""
    md.write_text(markdown(runs, notes))
    print(f"written to {path} and {path.with_suffix('.md')} ({result['bench_seconds']} s)")


if __name__ == "__main__":
    main()
