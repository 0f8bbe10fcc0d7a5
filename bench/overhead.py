"""How much latency Gatehouse adds over calling the backend directly.

Starts its own redis-server, an Ollama simulator (instant tokens, so only overhead is measured), a
throw-away SQLite database and a real daphne web process, then sends the same OpenAI chat request
(a) straight to the simulator's own /v1 endpoint and (b) through Gatehouse, and prints p50/p99 for
non-streaming requests at 1 and 32 concurrent clients, and time to first token for streams.

    .venv/bin/python bench/overhead.py [--requests 400] [--concurrency 1,32]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.processes import DaphneServer, RedisServer  # noqa: E402
from tests.support.simulator import SimulatorProcess  # noqa: E402

MODEL = "bench-model:latest"
SIM_CONFIG = {
    "server": {"num_parallel": 64, "tokens_per_second": 0, "time_to_first_token_ms": 0,
               "load_seconds_per_gib": 0, "response_tokens": [16, 16]},
    "models": [{"name": MODEL, "size": 1_000_000_000, "capabilities": ["completion"], "context_length": 8192}],
}
BODY = {"model": MODEL, "messages": [{"role": "user", "content": "Say something short."}], "max_tokens": 16,
        "seed": 1, "temperature": 0}


def manage(env: dict[str, str], *args: str) -> str:
    return subprocess.run([sys.executable, "manage.py", *args], cwd=REPO, env=env, check=True,
                          capture_output=True, text=True).stdout


def prepare(sim_url: str, redis_url: str, workdir: str) -> tuple[dict[str, str], str]:
    env = {**os.environ, "SQLITE_PATH": f"{workdir}/bench.sqlite3", "REDIS_URL": redis_url,
           "OLLAMA_NODES": sim_url, "DEBUG": "false", "ALLOWED_HOSTS": "127.0.0.1", "SECRET_KEY": "bench-secret", "LOG_LEVEL": "WARNING"}
    env.pop("DATABASE_URL", None)
    manage(env, "migrate", "--noinput")
    manage(env, "syncmodels")
    subprocess.run([sys.executable, "-c", "import django; django.setup(); from django.contrib.auth import "
                    "get_user_model; get_user_model().objects.create_user('bench')"],
                   cwd=REPO, env={**env, "DJANGO_SETTINGS_MODULE": "portal.settings"}, check=True)
    key = manage(env, "createapikey", "bench").strip()
    return env, key


async def timed_call(client: httpx.AsyncClient, url: str, headers: dict, stream: bool) -> float:
    start = time.perf_counter()
    if not stream:
        response = await client.post(url, json=BODY, headers=headers)
        if response.status_code != 200:
            raise RuntimeError(f"{url} answered {response.status_code}: {response.text}")
        return time.perf_counter() - start
    async with client.stream("POST", url, json={**BODY, "stream": True}, headers=headers) as response:
        if response.status_code != 200:
            raise RuntimeError(f"{url} answered {response.status_code}: {(await response.aread())!r}")
        first = None
        async for line in response.aiter_lines():
            if first is None and '"content":"' in line and '"content":""' not in line:
                first = time.perf_counter() - start
        if first is not None:
            return first
    raise RuntimeError("stream ended without content")


async def measure(url: str, headers: dict, *, requests: int, concurrency: int, stream: bool) -> list[float]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        for _ in range(min(20, requests)):  # warm up connections, caches and the loaded model
            await timed_call(client, url, headers, stream)
        samples: list[float] = []
        queue = iter(range(requests))

        async def worker() -> None:
            for _ in queue:
                samples.append(await timed_call(client, url, headers, stream))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return samples


def pct(samples: list[float], q: float) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[int(q) - 1] * 1000 if len(samples) > 1 else samples[0] * 1000


async def run(args) -> None:
    redis = RedisServer()
    workdir = tempfile.mkdtemp(prefix="gatehouse-bench-")
    try:
        with SimulatorProcess(SIM_CONFIG) as sim:
            env, key = prepare(sim.url, redis.url, workdir)
            web = DaphneServer({k: env[k] for k in ("SQLITE_PATH", "REDIS_URL", "OLLAMA_NODES", "DEBUG", "SECRET_KEY",
                                                     "LOG_LEVEL", "ALLOWED_HOSTS")})
            try:
                direct = (sim.url + "/v1/chat/completions", {"Authorization": "Bearer ollama"})
                gateway = (web.url + "/v1/chat/completions", {"Authorization": f"Bearer {key}"})
                rows = []
                for concurrency in args.concurrency:
                    for stream in (False, True):
                        if stream and concurrency != 1:
                            continue
                        result = {}
                        for name, (url, headers) in (("direct", direct), ("gatehouse", gateway)):
                            result[name] = await measure(url, headers, requests=args.requests,
                                                         concurrency=concurrency, stream=stream)
                        rows.append((concurrency, stream, result))
            finally:
                web.stop()
    finally:
        redis.stop()

    print(f"\nGatehouse overhead vs. the simulator's own /v1 endpoint ({args.requests} requests per cell, "
          f"{os.cpu_count()} CPUs, simulator answering instantly)\n")
    print(f"{'what':<28}{'clients':>8}{'direct p50':>12}{'gate p50':>10}{'added':>8}{'ratio':>7}"
          f"{'direct p99':>12}{'gate p99':>10}{'ratio':>7}")
    for concurrency, stream, result in rows:
        d50, g50 = pct(result["direct"], 50), pct(result["gatehouse"], 50)
        d99, g99 = pct(result["direct"], 99), pct(result["gatehouse"], 99)
        what = "stream: time to first token" if stream else "non-stream: full response"
        print(f"{what:<28}{concurrency:>8}{d50:>10.2f}ms{g50:>8.2f}ms{g50 - d50:>6.2f}ms{g50 / d50:>7.2f}"
              f"{d99:>10.2f}ms{g99:>8.2f}ms{g99 / d99:>7.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 32])
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
