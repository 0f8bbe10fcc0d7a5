"""What the scheduler buys, measured against the same simulator called directly (Ollama's own scheduling).

Starts its own redis-server, simulators, a throw-away SQLite database and real daphne processes, then:

1. swap:     60 requests interleaved A B C... for three models on a node whose memory fits one;
             Gatehouse vs the same requests sent straight to the node (native /api/chat, same num_ctx).
2. fairness: person A sends 40 requests at once, person B 4 a moment later (one model, 4 slots);
             Jain's index of the two people's completions while B has work, Gatehouse vs direct.
3. overhead: a request that finds a free slot, with the queue on vs QUEUE_ENABLED=false (p50/p99).
4. redis:    admissions + releases per second through the Lua scripts, from one and two processes.
5. waiting:  2,000 concurrent streams waiting in one web process's queue, and that process's RSS.
6. disconnect: how soon a running stream's slot is free after its client leaves.

    .venv/bin/python bench/scheduling.py [--json bench/results/scheduling.json] [--only swap,fairness,...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.overhead import manage, pct  # noqa: E402
from common.store import keys  # noqa: E402
from tests.support.processes import DaphneServer, RedisServer  # noqa: E402
from tests.support.simulator import SimulatorProcess  # noqa: E402

GIB = 1 << 30
SWAP_MODELS = ["bench-a:latest", "bench-b:latest", "bench-c:latest"]
FAIR_MODEL = "bench-fair:latest"
FAST_MODEL = "bench-fast:latest"
WAIT_MODEL = "bench-wait:latest"


def sim_config(models: list[str], **server) -> dict:
    return {"server": {"num_parallel": 4, "tokens_per_second": 40, "time_to_first_token_ms": 20,
                       "load_seconds_per_gib": 0.5, "response_tokens": [10, 10], **server},
            "models": [{"name": m, "size": GIB, "capabilities": ["completion"], "context_length": 2048} for m in models]}


class World:
    """A database, a Redis and web processes in front of the given simulators."""

    def __init__(self, sims: list[SimulatorProcess], workdir: str, redis: RedisServer, *, webs: int = 1,
                 setup: str = "", **env: str) -> None:
        self.env = {**os.environ, "SQLITE_PATH": f"{workdir}/bench.sqlite3", "REDIS_URL": redis.url,
                    "OLLAMA_NODES": ",".join(s.url for s in sims), "DEBUG": "false", "ALLOWED_HOSTS": "127.0.0.1",
                    "SECRET_KEY": "bench-secret", "LOG_LEVEL": "WARNING", "NODE_PS_POLL_SECONDS": "0.5", **env}
        self.env.pop("DATABASE_URL", None)
        manage(self.env, "migrate", "--noinput")
        manage(self.env, "syncmodels")
        code = ("from django.contrib.auth import get_user_model as U\n"
                "from inference.models import Model, Node\n"
                "for name in ('alice', 'bob'): U().objects.get_or_create(username=name)\n" + setup)
        manage(self.env, "shell", "-c", code)
        self.keys = {name: manage(self.env, "createapikey", name).strip() for name in ("alice", "bob")}
        web_env = {k: self.env[k] for k in ("SQLITE_PATH", "REDIS_URL", "OLLAMA_NODES", "DEBUG", "SECRET_KEY",
                                             "LOG_LEVEL", "ALLOWED_HOSTS", "NODE_PS_POLL_SECONDS", *env)}
        self.webs = [DaphneServer(web_env) for _ in range(webs)]
        for web in self.webs:
            httpx.get(web.url + "/healthz", timeout=10)

    def headers(self, who: str = "alice") -> dict:
        return {"Authorization": f"Bearer {self.keys[who]}"}

    def stop(self) -> None:
        for web in self.webs:
            web.stop()


def chat_body(model: str, **extra) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": "Say something."}], **extra}


async def timed(client: httpx.AsyncClient, url: str, body: dict, headers: dict) -> tuple[float, float, httpx.Response]:
    start = time.perf_counter()
    response = await client.post(url, json=body, headers=headers)
    if response.status_code != 200:
        raise RuntimeError(f"{url}: {response.status_code} {response.text[:200]}")
    return start, time.perf_counter(), response


# -- 1. swap-aware scheduling ---------------------------------------------------------------------------

async def swap_run(url: str, headers: dict, native: bool) -> dict:
    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=100)) as client:
        models = [SWAP_MODELS[i % 3] for i in range(60)]
        if native:  # Ollama's own API with the num_ctx Gatehouse would send, so both runs use equal runners
            bodies = [{"model": m, "stream": False, "options": {"num_ctx": 2048},
                       "messages": [{"role": "user", "content": "Say something."}]} for m in models]
        else:
            bodies = [chat_body(m) for m in models]
        began = time.perf_counter()
        results = await asyncio.gather(*(timed(client, url, b, headers) for b in bodies))
        total = time.perf_counter() - began
    per_model = {}
    for model in SWAP_MODELS:
        latencies = [end - start for (start, end, _), m in zip(results, models, strict=True) if m == model]
        per_model[model] = {"p50_s": round(pct(latencies, 50) / 1000, 2), "p95_s": round(pct(latencies, 95) / 1000, 2)}
    longest = max(end - start for start, end, _ in results)
    waits = [int(r.headers.get("x-gatehouse-queue-wait-ms", 0)) for _, _, r in results]
    return {"total_s": round(total, 2), "per_model": per_model, "longest_request_s": round(longest, 2),
            "longest_queue_wait_s": round(max(waits) / 1000, 2) if not native else None}


async def bench_swap(workdir: str) -> dict:
    out = {}
    for mode in ("direct", "gatehouse"):
        redis = RedisServer()
        # Direct: a short server keep_alive. With Ollama's default 5m, a model chosen for eviction whose
        # requests keep arriving is kept alive by them (ollama#17408) and the whole queue stalls for
        # minutes; 5 s is the kindest setting for the direct run.
        sim = SimulatorProcess(sim_config(SWAP_MODELS, gpu_memory="3GiB", keep_alive="5s"))
        world = None
        try:
            if mode == "direct":
                result = await swap_run(sim.url + "/api/chat", {}, native=True)
            else:
                world = World([sim], f"{workdir}/swap", redis, setup="Node.objects.update(gpu_memory_bytes=3 << 30)")
                result = await swap_run(world.webs[0].url + "/v1/chat/completions", world.headers(), native=False)
            stats = sim.stats()["models"]
            result["loads"] = sum(stats.get(m, {}).get("loads", 0) for m in SWAP_MODELS)
            out[mode] = result
        finally:
            if world:
                world.stop()
            sim.stop()
            redis.stop()
    out["speedup"] = round(out["direct"]["total_s"] / out["gatehouse"]["total_s"], 2)
    return out


# -- 2. fairness -------------------------------------------------------------------------------------------

def jain(values: list[float]) -> float:
    return sum(values) ** 2 / (len(values) * sum(v * v for v in values)) if any(values) else 1.0


async def fairness_run(url: str, headers_a: dict, headers_b: dict, native: bool) -> dict:
    body = ({"model": FAIR_MODEL, "stream": False, "options": {"num_ctx": 2048},
             "messages": [{"role": "user", "content": "x"}]} if native else chat_body(FAIR_MODEL))
    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=100)) as client:
        await timed(client, url, body, headers_a)  # loaded
        start, end, _ = await timed(client, url, body, headers_a)
        service = end - start  # every request here takes the same time once it has a slot
        done: list[tuple[str, float]] = []

        async def one(who: str, headers: dict) -> None:
            await timed(client, url, body, headers)
            done.append((who, time.perf_counter()))

        flood = [asyncio.create_task(one("A", headers_a)) for _ in range(40)]
        await asyncio.sleep(0.3)  # B arrives a moment later
        b_start = time.perf_counter()
        few = [asyncio.create_task(one("B", headers_b)) for _ in range(4)]
        await asyncio.gather(*flood, *few)
    # Requests that got a slot while B had work waiting (start = end - service time): a fair scheduler
    # shares those slots equally between A and B. Requests already running when B arrived do not count.
    b_last_start = max(t for who, t in done if who == "B") - service
    window = [who for who, t in done if b_start <= t - service + 0.05 <= b_last_start + 0.1]
    order = [who for who, _ in sorted(done, key=lambda x: x[1])]
    last_b = max(i for i, who in enumerate(order) if who == "B")
    return {"jain_index": round(jain([window.count("A"), window.count("B")]), 3),
            "slots_while_b_waited": {"A": window.count("A"), "B": window.count("B")},
            "b_last_completion_rank": last_b + 1, "completions": len(order),
            "b_wait_s": round(b_last_start + service - b_start, 2)}


async def bench_fairness(workdir: str) -> dict:
    redis = RedisServer()
    sim = SimulatorProcess(sim_config([FAIR_MODEL]))
    world = World([sim], f"{workdir}/fair", redis, setup=f"Model.objects.filter(ollama_name='{FAIR_MODEL}')"
                                                          ".update(concurrency=4, max_queue=100)")
    try:
        direct = await fairness_run(sim.url + "/api/chat", {}, {}, native=True)
        gate = await fairness_run(world.webs[0].url + "/v1/chat/completions", world.headers("alice"),
                                  world.headers("bob"), native=False)
    finally:
        world.stop()
        sim.stop()
        redis.stop()
    return {"direct": direct, "gatehouse": gate}


# -- 3. queue overhead with a free slot --------------------------------------------------------------------

async def bench_overhead(workdir: str, requests: int) -> dict:
    redis = RedisServer()
    sim = SimulatorProcess({**sim_config([FAST_MODEL], num_parallel=64, tokens_per_second=0,
                                         time_to_first_token_ms=0, load_seconds_per_gib=0)})
    out = {}
    try:
        for name, enabled in (("queue_off", "false"), ("queue_on", "true")):
            world = World([sim], f"{workdir}/overhead-{name}", redis, QUEUE_ENABLED=enabled)
            url = world.webs[0].url + "/v1/chat/completions"
            body = chat_body(FAST_MODEL, max_tokens=4)
            async with httpx.AsyncClient(timeout=60) as client:
                for _ in range(30):
                    await timed(client, url, body, world.headers())
                samples = []
                for _ in range(requests):
                    start, end, _ = await timed(client, url, body, world.headers())
                    samples.append(end - start)
            out[name] = {"p50_ms": round(pct(samples, 50), 2), "p99_ms": round(pct(samples, 99), 2)}
            world.stop()
    finally:
        sim.stop()
        redis.stop()
    out["added_p50_ms"] = round(out["queue_on"]["p50_ms"] - out["queue_off"]["p50_ms"], 2)
    out["added_p99_ms"] = round(out["queue_on"]["p99_ms"] - out["queue_off"]["p99_ms"], 2)
    return out


# -- 4. Redis script throughput ----------------------------------------------------------------------------

def _cycle_worker(redis_url: str, seconds: float, result: multiprocessing.Queue) -> None:
    os.environ.update({"REDIS_URL": redis_url, "DJANGO_SETTINGS_MODULE": "portal.settings"})
    import django

    django.setup()
    from inference.scheduler import queue

    policy = queue.Policy(concurrency=10_000, max_queue=10_000, lease_ms=15000, batch_bound_ms=120000,
                          nodes=("http://node",))

    async def main() -> int:
        client = queue.redis_client()
        await client.hset(keys.placement("bench"), "http://node", "ready")
        count = 0
        deadline = time.perf_counter() + seconds

        async def loop(i: int) -> None:
            nonlocal count
            n = 0
            while time.perf_counter() < deadline:
                ticket = f"{os.getpid()}-{i}-{n}"
                n += 1
                await queue.admit("bench", policy, owner="bench", user=str(i % 10), batch=False, tickets=[ticket])
                await queue.release("bench", policy, ticket, 5)
                count += 1

        await asyncio.gather(*(loop(i) for i in range(16)))
        return count

    result.put(asyncio.run(main()))


def bench_redis(seconds: float = 5.0) -> dict:
    out = {}
    for processes in (1, 2):
        redis = RedisServer()
        try:
            results: multiprocessing.Queue = multiprocessing.Queue()
            workers = [multiprocessing.Process(target=_cycle_worker, args=(redis.url, seconds, results))
                       for _ in range(processes)]
            for w in workers:
                w.start()
            total = sum(results.get(timeout=seconds + 60) for _ in workers)
            for w in workers:
                w.join()
        finally:
            redis.stop()
        out[f"{processes}_process"] = {"admit_release_cycles_per_s": round(total / seconds)}
    return out


# -- 5. many waiting streams -------------------------------------------------------------------------------

def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def bench_waiting(workdir: str, streams: int) -> dict:
    redis = RedisServer()
    sim = SimulatorProcess(sim_config([WAIT_MODEL]))
    world = World([sim], f"{workdir}/waiting", redis, SSE_KEEPALIVE_SECONDS="5",
                  setup=f"Model.objects.filter(ollama_name='{WAIT_MODEL}').update(concurrency=1, max_queue={streams + 10})")
    web = world.webs[0]
    url = web.url + "/v1/chat/completions"
    try:
        sim.set_faults(WAIT_MODEL, stall_after_tokens=1)  # the one slot stays busy: everyone else waits
        import redis as redis_sync

        kv = redis_sync.Redis.from_url(redis.url)
        rss_before = rss_mb(web.proc.pid)
        async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=streams + 10)) as client:
            async def hold() -> None:
                async with client.stream("POST", url, json=chat_body(WAIT_MODEL, stream=True),
                                         headers=world.headers()) as response:
                    async for _ in response.aiter_lines():
                        pass

            tasks = []
            for i in range(streams + 1):
                tasks.append(asyncio.create_task(hold()))
                if i % 40 == 39:  # open connections in waves, as many clients arriving over a moment would
                    await asyncio.sleep(0.05)
            deadline = time.monotonic() + 120
            for _ in iter(lambda: kv.zcard(keys.enqueued(WAIT_MODEL)) < streams and time.monotonic() < deadline, False):
                await asyncio.sleep(0.2)  # polling Redis, the only place that knows the depth
            waiting = kv.zcard(keys.enqueued(WAIT_MODEL))
            rss = rss_mb(web.proc.pid)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return {"waiting_streams": waiting, "rss_mb": round(rss, 1), "rss_before_mb": round(rss_before, 1)}
    finally:
        world.stop()
        sim.stop()
        redis.stop()


# -- 6. slot release after a client disconnects ---------------------------------------------------------

async def bench_disconnect(workdir: str, rounds: int = 30) -> dict:
    """A client reads the first token of a long stream and leaves: how soon is its slot free again?"""
    redis = RedisServer()
    sim = SimulatorProcess(sim_config([WAIT_MODEL], tokens_per_second=20, response_tokens=[200, 200]))
    world = World([sim], f"{workdir}/disconnect", redis)
    url = world.webs[0].url + "/v1/chat/completions"
    import redis as redis_sync

    kv = redis_sync.Redis.from_url(redis.url)
    running = keys.run(WAIT_MODEL, sim.url)
    samples = []
    try:
        async with httpx.AsyncClient(timeout=60) as client:
            for _ in range(rounds):
                async with client.stream("POST", url, json=chat_body(WAIT_MODEL, stream=True),
                                         headers=world.headers()) as response:
                    async for line in response.aiter_lines():
                        if line.startswith("data: "):
                            break
                left = time.perf_counter()
                while kv.zcard(running):  # noqa: ASYNC110 - polling Redis, the only place that knows
                    await asyncio.sleep(0.001)
                samples.append(time.perf_counter() - left)
    finally:
        world.stop()
        sim.stop()
        redis.stop()
    return {"p50_ms": round(pct(samples, 50), 1), "max_ms": round(max(samples) * 1000, 1), "rounds": rounds}


async def run(args) -> dict:
    workdir = tempfile.mkdtemp(prefix="gatehouse-bench-sched-")
    for sub in ("swap", "fair", "overhead-queue_off", "overhead-queue_on", "waiting", "disconnect"):
        os.makedirs(f"{workdir}/{sub}", exist_ok=True)
    results: dict = {"cpus": os.cpu_count()}
    if "swap" in args.only:
        results["swap"] = await bench_swap(workdir)
    if "fairness" in args.only:
        results["fairness"] = await bench_fairness(workdir)
    if "overhead" in args.only:
        results["overhead"] = await bench_overhead(workdir, args.requests)
    if "redis" in args.only:
        results["redis"] = bench_redis()
    if "waiting" in args.only:
        results["waiting"] = await bench_waiting(workdir, args.streams)
    if "disconnect" in args.only:
        results["disconnect"] = await bench_disconnect(workdir)
    return results


def report(results: dict) -> None:
    print(f"\nGatehouse scheduling benchmark ({results['cpus']} CPUs shared by clients, Gatehouse and simulators)\n")
    if "swap" in results:
        s = results["swap"]
        print("1. Swap-aware: 60 requests A B C A B C..., node memory fits one model (target: >= 2x faster)")
        for mode in ("direct", "gatehouse"):
            r = s[mode]
            lat = "  ".join(f"{m.split(':')[0][-1].upper()} p50 {v['p50_s']}s p95 {v['p95_s']}s" for m, v in r["per_model"].items())
            print(f"   {mode:<10} total {r['total_s']:>6}s  loads {r['loads']:>3}  longest {r['longest_request_s']}s  {lat}")
        print(f"   speedup {s['speedup']}x; longest queue wait {s['gatehouse']['longest_queue_wait_s']}s\n")
    if "fairness" in results:
        f = results["fairness"]
        print("2. Fairness: A sends 40, B sends 4 a moment later (target: Jain's index >= 0.9)")
        for mode in ("direct", "gatehouse"):
            r = f[mode]
            print(f"   {mode:<10} Jain {r['jain_index']:<6} B's last completion {r['b_last_completion_rank']}/"
                  f"{r['completions']}  B waited {r['b_wait_s']}s")
        print()
    if "overhead" in results:
        o = results["overhead"]
        print("3. Queue cost when a slot is free (target: <= 1 ms added at p50)")
        print(f"   queue off p50 {o['queue_off']['p50_ms']}ms p99 {o['queue_off']['p99_ms']}ms; queue on p50 "
              f"{o['queue_on']['p50_ms']}ms p99 {o['queue_on']['p99_ms']}ms; added p50 {o['added_p50_ms']}ms "
              f"p99 {o['added_p99_ms']}ms\n")
    if "redis" in results:
        r = results["redis"]
        print("4. Admission + release cycles per second through Redis")
        print(f"   1 process {r['1_process']['admit_release_cycles_per_s']}/s; 2 processes "
              f"{r['2_process']['admit_release_cycles_per_s']}/s\n")
    if "waiting" in results:
        w = results["waiting"]
        print("5. Waiting streams in one web process (target: 2,000 in < 300 MB RSS)")
        print(f"   {w['waiting_streams']} waiting; RSS {w['rss_mb']} MB (idle {w['rss_before_mb']} MB)\n")
    if "disconnect" in results:
        d = results["disconnect"]
        print("6. Slot free again after the client of a running stream leaves (target: within 100 ms)")
        print(f"   p50 {d['p50_ms']} ms, max {d['max_ms']} ms over {d['rounds']} rounds\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", default=str(REPO / "bench" / "results" / "scheduling.json"))
    parser.add_argument("--only", type=lambda s: s.split(","), default=["swap", "fairness", "overhead", "redis", "waiting", "disconnect"])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--streams", type=int, default=2000)
    args = parser.parse_args()
    results = asyncio.run(run(args))
    report(results)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {args.json}")


if __name__ == "__main__":
    main()
