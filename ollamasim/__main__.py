"""`python -m ollamasim --host 127.0.0.1 --port 11434 [--config sim.toml] [overrides]`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys

from ollamasim import config as sim_config
from ollamasim.server import serve


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m ollamasim", description="A faithful Ollama simulator.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=11434, help="0 picks a free port (printed when listening)")
    parser.add_argument("--config", help="a TOML file with [server], [[models]] and [[pullable]]")
    parser.add_argument("--num-parallel", type=int, help="OLLAMA_NUM_PARALLEL (slots per model)")
    parser.add_argument("--max-queue", type=int, help="OLLAMA_MAX_QUEUE (pending loads before 503)")
    parser.add_argument("--max-loaded-models", type=int, help="OLLAMA_MAX_LOADED_MODELS (0 = 3 per GPU)")
    parser.add_argument("--keep-alive", help="OLLAMA_KEEP_ALIVE, e.g. 5m, 30s, -1")
    parser.add_argument("--gpu-memory", help="VRAM budget, e.g. 24GiB")
    parser.add_argument("--num-ctx", type=int, help="default context length")
    parser.add_argument("--tokens-per-second", type=float)
    parser.add_argument("--time-to-first-token-ms", type=float)
    parser.add_argument("--load-seconds-per-gib", type=float)
    parser.add_argument("--chunk-style", choices=["head", "legacy"], help="OpenAI streaming chunk style")
    parser.add_argument("--no-fast-path", action="store_true", help="pre-v0.11.5: every request is queued")
    parser.add_argument("--version-string", dest="version", help="what /api/version reports")
    parser.add_argument("--log-level", default="WARNING")
    parser.add_argument("--access-log", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    overrides = {
        "num_parallel": args.num_parallel, "max_queue": args.max_queue,
        "max_loaded_models": args.max_loaded_models, "keep_alive": args.keep_alive,
        "gpu_memory": args.gpu_memory, "num_ctx": args.num_ctx, "tokens_per_second": args.tokens_per_second,
        "time_to_first_token_ms": args.time_to_first_token_ms,
        "load_seconds_per_gib": args.load_seconds_per_gib, "chunk_style": args.chunk_style,
        "fast_path": False if args.no_fast_path else None, "version": args.version,
    }
    try:
        cfg = sim_config.load(args.config, overrides)
    except (OSError, ValueError, TypeError) as exc:
        print(f"ollamasim: bad configuration: {exc}", file=sys.stderr)
        return 2

    async def run() -> None:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await serve(cfg, args.host, args.port, access_log=args.access_log)

    try:
        asyncio.run(run())
    except OSError as exc:
        print(f"ollamasim: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
