"""Exact counters, per model and overall, served at GET /sim/stats.

Everything runs on one event loop, so plain integers are exact: tests and benchmarks use these numbers
to prove what a gateway did (how many requests overlapped, whether it caused reloads, ...).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

STAGES = ("queue", "load", "slot", "generation")


@dataclass
class ModelStats:
    requests: int = 0  # inference requests that named this (existing) model
    completed: int = 0  # ... that ended normally (including load/unload answers)
    errors: int = 0  # ... that ended with an error status or an error line
    in_flight: int = 0  # requests inside the server for this model right now
    max_in_flight: int = 0
    waiting_for_slot: int = 0  # scheduled, waiting on the NUM_PARALLEL semaphore
    max_waiting_for_slot: int = 0
    generating: int = 0  # holding a slot
    max_generating: int = 0
    queued: int = 0  # in the scheduler's pending queue (needing a load) right now
    fast_path: int = 0  # served by a loaded runner without entering the pending queue
    queue_full_rejections: int = 0  # 503 "server busy"
    loads: int = 0  # loads that finished
    load_failures: int = 0
    load_aborts: int = 0  # the requester left during the load, so the load was thrown away
    reloads: int = 0  # a loaded runner expired because load-time options differed
    evictions: int = 0  # unloaded to make room for another model
    unloads: int = 0  # every unload (idle timeout, keep_alive 0, eviction, reload, explicit)
    cancellations: int = 0  # client disconnects, at any stage
    cancellations_by_stage: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STAGES, 0))
    injected_faults: int = 0
    prompt_tokens: int = 0
    eval_tokens: int = 0


class Stats:
    def __init__(self) -> None:
        self.started = time.time()
        self.models: dict[str, ModelStats] = {}
        self.endpoints: Counter[str] = Counter()
        self.queue_depth = 0
        self.max_queue_depth = 0
        self.queue_full_rejections = 0

    def model(self, name: str) -> ModelStats:
        stats = self.models.get(name)
        if stats is None:
            stats = self.models[name] = ModelStats()
        return stats

    # Gauges keep their maximum alongside, so a test can assert "never more than N at once".
    def enter(self, name: str, gauge: str) -> None:
        stats = self.model(name)
        value = getattr(stats, gauge) + 1
        setattr(stats, gauge, value)
        peak = "max_" + gauge
        if hasattr(stats, peak) and value > getattr(stats, peak):
            setattr(stats, peak, value)

    def leave(self, name: str, gauge: str) -> None:
        stats = self.model(name)
        setattr(stats, gauge, getattr(stats, gauge) - 1)

    def count(self, name: str, counter: str, n: int = 1) -> None:
        stats = self.model(name)
        setattr(stats, counter, getattr(stats, counter) + n)

    def cancelled(self, name: str, stage: str) -> None:
        stats = self.model(name)
        stats.cancellations += 1
        stats.cancellations_by_stage[stage] = stats.cancellations_by_stage.get(stage, 0) + 1

    def set_queue_depth(self, depth: int) -> None:
        self.queue_depth = depth
        self.max_queue_depth = max(self.max_queue_depth, depth)

    def reset(self) -> None:
        """Zero the counters; gauges keep their current value and their peaks restart from it."""
        for name, old in list(self.models.items()):
            fresh = ModelStats(in_flight=old.in_flight, waiting_for_slot=old.waiting_for_slot,
                               generating=old.generating, queued=old.queued)
            fresh.max_in_flight = old.in_flight
            fresh.max_waiting_for_slot = old.waiting_for_slot
            fresh.max_generating = old.generating
            self.models[name] = fresh
        self.endpoints.clear()
        self.max_queue_depth = self.queue_depth
        self.queue_full_rejections = 0
        self.started = time.time()

    def snapshot(self, loaded: list[dict[str, Any]]) -> dict[str, Any]:
        models = {name: asdict(stats) for name, stats in sorted(self.models.items())}
        totals: Counter[str] = Counter()
        for stats in models.values():
            for key, value in stats.items():
                if isinstance(value, int) and not key.startswith("max_"):
                    totals[key] += value
        return {
            "since": self.started,
            "pending_queue": {"depth": self.queue_depth, "max_depth": self.max_queue_depth},
            "queue_full_rejections": self.queue_full_rejections,
            "totals": dict(totals),
            "endpoints": dict(self.endpoints),
            "loaded": loaded,
            "models": models,
        }
