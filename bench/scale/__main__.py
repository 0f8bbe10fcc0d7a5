"""Run the scale simulation (bench/scale/), then the Redis ceiling measurement, and write the results.

    .venv/bin/python -m bench.scale                 # the full day: 100 nodes, 200 models, 5,000 people
    .venv/bin/python -m bench.scale --scale 0.1 --hours 2 --start-hour 9   # a quick look
    .venv/bin/python -m bench.scale --every-round   # the actor every 0.2 s, as in production (slow)

Writes bench/results/scale.json and scale.md, and the plots under docs/images/ (with matplotlib, the
`bench` extra). --raw keeps the simulation's raw record (a pickle) so --from-raw can redo the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import pickle
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of nodes, models, people and requests")
    parser.add_argument("--hours", type=float, default=24.0, help="how many hours of the day to simulate")
    parser.add_argument("--start-hour", type=float, default=0.0, help="the hour of the day the window starts at")
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument("--every-round", action="store_true", help="a swap-actor round every 0.2 s, not only when it can act")
    parser.add_argument("--json", type=Path, default=REPO / "bench/results/scale.json")
    parser.add_argument("--md", type=Path, default=REPO / "bench/results/scale.md")
    parser.add_argument("--images", type=Path, default=REPO / "docs/images")
    parser.add_argument("--no-ceiling", action="store_true", help="skip the Redis ceiling measurement")
    parser.add_argument("--ceiling-seconds", type=float, default=8.0, help="length of each ceiling measurement")
    parser.add_argument("--raw", type=Path, help="also keep the simulation's raw record here (pickle)")
    parser.add_argument("--from-raw", type=Path, help="no simulation: the figures from a kept raw record")
    return parser.parse_args(argv)


def say(text: str) -> None:
    print(text, flush=True)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    import django

    django.setup()
    from bench.scale import render, report, workload

    if args.from_raw:
        raw = pickle.loads(args.from_raw.read_bytes())
    else:
        spec = dataclasses.replace(workload.Spec.full().scaled(args.scale) if args.scale != 1 else workload.Spec.full(),
                                   hours=args.hours, start_hour=args.start_hour, seed=args.seed)
        raw = simulate(spec, every_round=args.every_round)
        if args.raw:
            args.raw.write_bytes(pickle.dumps(raw))
    summary = report.summarize(raw)
    if not args.no_ceiling:
        from bench.scale import ceiling

        say("measuring the Redis ceiling ...")
        summary["ceiling"] = ceiling.measure(summary, raw, seconds=args.ceiling_seconds, progress=say)
    summary["machine"] = {"cpus": os.cpu_count(), "load_average_at_end": list(os.getloadavg()),
                          "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(summary, indent=1) + "\n")
    args.md.write_text(render.markdown(summary))
    for line in render.plots(summary, args.images):
        say(line)
    say(render.headline(summary))
    return summary


def simulate(spec, *, every_round: bool) -> dict:
    from bench.scale import report, workload
    from bench.scale.driver import Simulation
    from bench.scale.harness import SimRedis

    began = time.perf_counter()
    world = workload.build(spec)
    say(f"{len(world.nodes)} nodes, {len(world.models)} models, {spec.people} people: {len(world.arrivals)} requests "
        f"and {sum(len(j.lines) for j in world.batch_jobs)} batch lines in {spec.hours:g} h "
        f"(built in {time.perf_counter() - began:.1f} s)")
    server = SimRedis()
    try:
        simulation = Simulation(world, server.socket_url, every_round=every_round, progress=say)
        asyncio.run(simulation.run())
        return report.collect(simulation)
    finally:
        server.stop()


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
