"""What the rate limiter adds to a request.

Starts its own redis-server, an instant Ollama simulator, a throw-away SQLite database and two daphne
web processes on them: one with every limit switched on (per key and per person: requests and tokens
per minute, concurrent requests, daily and monthly quotas; all high enough never to refuse) and one
with RATE_LIMITS_ENABLED=false. It sends the same chat request through each and prints p50/p99 and
their ratio (limiter on / off), at 1 and 32 concurrent clients. Then, in this process, it times the
admission script alone against a Redis PING: one round trip each.

    .venv/bin/python bench/ratelimit.py [--requests 400] [--concurrency 1,32]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from overhead import SIM_CONFIG, measure, pct, prepare  # noqa: E402

from tests.support.processes import DaphneServer, RedisServer  # noqa: E402
from tests.support.simulator import SimulatorProcess  # noqa: E402

HIGH = str(10**9)
LIMITS_ON = {name: HIGH for name in (
    "LIMIT_REQUESTS_PER_MINUTE", "LIMIT_TOKENS_PER_MINUTE", "LIMIT_CONCURRENT_REQUESTS", "LIMIT_TOKENS_PER_DAY",
    "LIMIT_TOKENS_PER_MONTH", "KEY_LIMIT_REQUESTS_PER_MINUTE", "KEY_LIMIT_TOKENS_PER_MINUTE",
    "KEY_LIMIT_CONCURRENT_REQUESTS", "KEY_LIMIT_TOKENS_PER_DAY", "KEY_LIMIT_TOKENS_PER_MONTH")}


async def script_round_trips(redis_url: str, count: int) -> tuple[list[float], list[float]]:
    """The admission script (plus its settlement, off the clock) against PING, from this process."""
    os.environ["REDIS_URL"] = redis_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    import django

    django.setup()
    from apiaccess.limits import Limits
    from common.store.client import redis_client
    from inference.accounting import ratelimit

    limits = Limits(*(10**9,) * 5)
    admit, ping = [], []
    for i in range(count):
        start = time.perf_counter()
        grant = await ratelimit.acquire(user_id=1, key_id=1, key_limits=limits, person_limits=limits, estimate=10)
        admit.append(time.perf_counter() - start)
        grant.settle(20)
        start = time.perf_counter()
        await redis_client().ping()
        ping.append(time.perf_counter() - start)
        if i % 50 == 0:
            await asyncio.sleep(0)  # let the settlements run
    return admit, ping


async def run(args) -> None:
    redis = RedisServer()
    workdir = tempfile.mkdtemp(prefix="gatehouse-bench-")
    rows = []
    try:
        with SimulatorProcess(SIM_CONFIG) as sim:
            env, key = prepare(sim.url, redis.url, workdir)
            base = {k: env[k] for k in ("SQLITE_PATH", "REDIS_URL", "OLLAMA_NODES", "DEBUG", "SECRET_KEY",
                                        "LOG_LEVEL", "ALLOWED_HOSTS")}
            webs = {"on": DaphneServer({**base, **LIMITS_ON}),
                    "off": DaphneServer({**base, "RATE_LIMITS_ENABLED": "false"})}
            try:
                headers = {"Authorization": f"Bearer {key}"}
                for concurrency in args.concurrency:
                    result = {}
                    for name in ("off", "on", "off2", "on2"):  # twice each, interleaved, against drift
                        url = webs[name[:-1] if name.endswith("2") else name].url + "/v1/chat/completions"
                        samples = await measure(url, headers, requests=args.requests // 2,
                                                concurrency=concurrency, stream=False)
                        result.setdefault(name.rstrip("2"), []).extend(samples)
                    rows.append((concurrency, result))
            finally:
                for web in webs.values():
                    web.stop()
        admit, ping = await script_round_trips(redis.url, args.requests)
    finally:
        redis.stop()

    print(f"\nRate limiter: limits on vs RATE_LIMITS_ENABLED=false ({args.requests} requests per cell, "
          f"{os.cpu_count()} CPUs, simulator answering instantly)\n")
    print(f"{'clients':>8}{'off p50':>10}{'on p50':>10}{'added':>9}{'ratio':>7}{'off p99':>10}{'on p99':>10}{'ratio':>7}")
    for concurrency, result in rows:
        o50, n50 = pct(result["off"], 50), pct(result["on"], 50)
        o99, n99 = pct(result["off"], 99), pct(result["on"], 99)
        print(f"{concurrency:>8}{o50:>8.2f}ms{n50:>8.2f}ms{n50 - o50:>7.2f}ms{n50 / o50:>7.2f}"
              f"{o99:>8.2f}ms{n99:>8.2f}ms{n99 / o99:>7.2f}")
    a50, p50 = pct(admit, 50), pct(ping, 50)
    print(f"\nadmission script p50 {a50:.3f} ms vs PING p50 {p50:.3f} ms (ratio {a50 / p50:.2f}): one round trip")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 32])
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
