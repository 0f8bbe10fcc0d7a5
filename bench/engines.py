"""Gatehouse in front of a real llama-server vs. calling it directly.

Starts a real llama.cpp server (SmolLM2-135M, from scripts/fetch-llama.py's cache), its own
redis-server, a throw-away SQLite database and a daphne web process with the server registered as an
OpenAI-compatible node, then sends the same streamed chat requests (a) straight to llama-server and
(b) through Gatehouse, and reports, as ratios gatehouse / direct in one run:

- time to first token (one client at a time): what the queue, limits and relay add before the first
  token, in ms and as a ratio;
- tokens per second relayed to one client, from its first token to its last;
- aggregate tokens per second with as many clients as the server has slots.

The end-of-turn tokens are banned (logit_bias), so every reply is exactly `--tokens` long on both paths.

    .venv/bin/python bench/engines.py [--requests 30] [--tokens 64] [--slots 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
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

from tests.support.llama import LlamaServer  # noqa: E402
from tests.support.processes import DaphneServer, RedisServer  # noqa: E402

MODEL = "smollm2"
NO_EOS = {"0": -100, "2": -100}
RESULTS = REPO / "bench" / "results"


def manage(env: dict[str, str], *args: str) -> str:
    return subprocess.run([sys.executable, "manage.py", *args], cwd=REPO, env=env, check=True,
                          capture_output=True, text=True).stdout


def prepare(llama_url: str, redis_url: str, workdir: str) -> tuple[dict[str, str], str]:
    env = {**os.environ, "SQLITE_PATH": f"{workdir}/bench.sqlite3", "REDIS_URL": redis_url, "OLLAMA_NODES": "",
           "DEBUG": "false", "ALLOWED_HOSTS": "127.0.0.1", "SECRET_KEY": "bench-secret", "LOG_LEVEL": "WARNING"}
    env.pop("DATABASE_URL", None)
    manage(env, "migrate", "--noinput")
    script = ("import django; django.setup(); from django.contrib.auth import get_user_model; "
              "from inference.models import Node; from inference.catalogue import sync_node; "
              f"node = Node.objects.create(url={llama_url!r}, name='llama', kind='openai'); "
              "assert sync_node(node).healthy; get_user_model().objects.create_user('bench')")
    subprocess.run([sys.executable, "-c", script], cwd=REPO, check=True,
                   env={**env, "DJANGO_SETTINGS_MODULE": "portal.settings"})
    key = manage(env, "createapikey", "bench").strip()
    return env, key


async def one_stream(client: httpx.AsyncClient, url: str, headers: dict, tokens: int) -> tuple[float, float, int]:
    """(time to first token, time from first to last token, content chunks) of one streamed reply, sent again
    once if a pooled connection turns out closed (llama-server closes much-used keep-alive connections)."""
    try:
        return await _one_stream(client, url, headers, tokens)
    except httpx.RemoteProtocolError:
        return await _one_stream(client, url, headers, tokens)


async def _one_stream(client: httpx.AsyncClient, url: str, headers: dict, tokens: int) -> tuple[float, float, int]:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Tell me a story."}], "max_tokens": tokens,
            "logit_bias": NO_EOS, "temperature": 0, "stream": True}
    start = time.perf_counter()
    first = last = None
    chunks = 0
    async with client.stream("POST", url, json=body, headers=headers) as response:
        if response.status_code != 200:
            raise RuntimeError(f"{url} answered {response.status_code}: {(await response.aread())!r}")
        async for line in response.aiter_lines():
            if line.startswith("data: {") and '"content":"' in line and '"content":""' not in line:
                last = time.perf_counter()
                first = first or last
                chunks += 1
    if first is None:
        raise RuntimeError("stream ended without content")
    return first - start, last - first, chunks


async def sequential(url: str, headers: dict, requests: int, tokens: int) -> list[tuple[float, float, int]]:
    async with httpx.AsyncClient(timeout=120) as client:
        for _ in range(3):  # warm up connections and the server's prompt cache
            await one_stream(client, url, headers, tokens)
        return [await one_stream(client, url, headers, tokens) for _ in range(requests)]


async def aggregate(url: str, headers: dict, requests: int, tokens: int, clients: int) -> float:
    """Tokens per second over the whole run with `clients` streams at once."""
    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=clients)) as client:
        await one_stream(client, url, headers, tokens)
        work = iter(range(requests))
        counted = 0

        async def worker() -> None:
            nonlocal counted
            for _ in work:
                counted += (await one_stream(client, url, headers, tokens))[2]

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        return counted / (time.perf_counter() - start)


def p50(values: list[float]) -> float:
    return statistics.median(values)


async def run(args) -> dict:
    redis = RedisServer()
    workdir = tempfile.mkdtemp(prefix="gatehouse-bench-")
    try:
        with LlamaServer(alias=MODEL, ctx_size=1024 * args.slots, parallel=args.slots, threads=1) as llama:
            env, key = prepare(llama.url, redis.url, workdir)
            web = DaphneServer({k: env[k] for k in ("SQLITE_PATH", "REDIS_URL", "OLLAMA_NODES", "DEBUG", "SECRET_KEY",
                                                     "LOG_LEVEL", "ALLOWED_HOSTS")})
            try:
                paths = {"direct": (llama.url + "/v1/chat/completions", {}),
                         "gatehouse": (web.url + "/v1/chat/completions", {"Authorization": f"Bearer {key}"})}
                results = {}
                for name, (url, headers) in paths.items():
                    runs = await sequential(url, headers, args.requests, args.tokens)
                    results[name] = {
                        "ttft_ms_p50": p50([r[0] for r in runs]) * 1000,
                        "relay_tokens_per_s_p50": p50([(r[2] - 1) / r[1] for r in runs if r[1] > 0]),
                        "aggregate_tokens_per_s": await aggregate(url, headers, args.requests, args.tokens, args.slots),
                    }
            finally:
                web.stop()
    finally:
        redis.stop()
    direct, gate = results["direct"], results["gatehouse"]
    return {
        "setup": {"requests": args.requests, "tokens": args.tokens, "slots": args.slots, "cpus": os.cpu_count(),
                  "model": "SmolLM2-135M-Instruct Q4_1 on llama-server b10068 (CPU)"},
        **results,
        "ratios": {
            "ttft": gate["ttft_ms_p50"] / direct["ttft_ms_p50"],
            "ttft_added_ms": gate["ttft_ms_p50"] - direct["ttft_ms_p50"],
            "relay_tokens_per_s": gate["relay_tokens_per_s_p50"] / direct["relay_tokens_per_s_p50"],
            "aggregate_tokens_per_s": gate["aggregate_tokens_per_s"] / direct["aggregate_tokens_per_s"],
        },
    }


def report(result: dict) -> str:
    d, g, r = result["direct"], result["gatehouse"], result["ratios"]
    s = result["setup"]
    return "\n".join([
        f"Gatehouse in front of a real llama-server vs. direct ({s['model']}; {s['requests']} streamed replies of "
        f"{s['tokens']} tokens per path, {s['slots']} slots, {s['cpus']} CPUs shared by everything)",
        "",
        "| what | direct | through Gatehouse | gatehouse / direct |",
        "|---|---|---|---|",
        f"| time to first token, p50 | {d['ttft_ms_p50']:.1f} ms | {g['ttft_ms_p50']:.1f} ms | {r['ttft']:.2f} "
        f"(+{r['ttft_added_ms']:.1f} ms) |",
        f"| tokens/s relayed to one client, p50 | {d['relay_tokens_per_s_p50']:.1f} | "
        f"{g['relay_tokens_per_s_p50']:.1f} | {r['relay_tokens_per_s']:.2f} |",
        f"| tokens/s, {s['slots']} clients at once | {d['aggregate_tokens_per_s']:.1f} | "
        f"{g['aggregate_tokens_per_s']:.1f} | {r['aggregate_tokens_per_s']:.2f} |",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--slots", type=int, default=2)
    result = asyncio.run(run(parser.parse_args()))
    text = report(result)
    print("\n" + text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "engines.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "engines.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
