"""What the simulation records while it runs: time integrals per hour, Redis commands per category,
and the moments places opened in full queues (to judge Retry-After).
"""

from __future__ import annotations

import contextlib
import re
from collections import Counter, deque
from dataclasses import dataclass, field

import redis

HOUR_MS = 3_600_000


class HourlyIntegral:
    """The integral of a level over time (level x ms), per hour of the simulated window."""

    def __init__(self, start_ms: int, end_ms: int) -> None:
        self.start_ms, self.end_ms = start_ms, end_ms
        self.hours = [0.0] * max(1, -(-(end_ms - start_ms) // HOUR_MS))
        self.level = 0.0
        self.at = start_ms

    def change(self, now_ms: int, delta: float) -> None:
        self.advance(now_ms)
        self.level += delta

    def advance(self, now_ms: int) -> None:
        begin, end = max(self.at, self.start_ms), min(now_ms, self.end_ms)
        while begin < end and self.level:
            hour = (begin - self.start_ms) // HOUR_MS
            upto = min(end, self.start_ms + (hour + 1) * HOUR_MS)
            self.hours[hour] += self.level * (upto - begin)
            begin = upto
        self.at = max(self.at, now_ms)

    @property
    def total(self) -> float:
        return sum(self.hours)


class RedisCounters:
    """Commands Redis ran (INFO commandstats: top-level ones and those inside scripts), split by what the
    simulation was doing. Whatever runs outside a bracket is the request path (admit, release)."""

    STAT = re.compile(r"^cmdstat_([^:]+):calls=(\d+),usec=(\d+)", re.MULTILINE)

    def __init__(self, redis_url: str) -> None:
        # A connection of its own whose INFO replies stay text: redis-py's parsing of INFO would cost
        # more than the command, and the simulation reads it twice around every actor round.
        self.sync = redis.Redis.from_url(redis_url, decode_responses=True)
        self.sync.set_response_callback("INFO", lambda response, **options: response)
        self.calls: dict[str, Counter] = {}
        self.usec: dict[str, Counter] = {}
        self.brackets: Counter = Counter()  # brackets measured, per category
        self.events: Counter = Counter()  # brackets asked for, per category (some are only counted)

    def snapshot(self) -> tuple[Counter, Counter]:
        calls, usec = Counter(), Counter()
        for command, count, spent in self.STAT.findall(self.sync.execute_command("INFO", "commandstats")):
            if command != "info":
                calls[command] = int(count)
                usec[command] = int(spent)
        return calls, usec

    def cpu_seconds(self) -> float:
        """Redis's own CPU time so far (used_cpu_sys + used_cpu_user)."""
        info = self.sync.execute_command("INFO", "cpu")
        return sum(float(v) for v in re.findall(r"^used_cpu_(?:sys|user):([\d.]+)", info, re.MULTILINE))

    def close(self) -> None:
        self.sync.close()

    @contextlib.contextmanager
    def bracket(self, category: str, every: int = 1):
        """Count what runs inside under `category`; with `every` > 1 only one in `every` is measured and
        `finish` scales the category up (two INFO readings cost more than many a round they measure)."""
        self.events[category] += 1
        if (self.events[category] - 1) % every:
            yield
            return
        before_calls, before_usec = self.snapshot()
        try:
            yield
        finally:
            after_calls, after_usec = self.snapshot()
            self.calls.setdefault(category, Counter()).update(after_calls - before_calls)
            self.usec.setdefault(category, Counter()).update(after_usec - before_usec)
            self.brackets[category] += 1

    def finish(self, start: tuple[Counter, Counter]) -> None:
        """Everything since `start` not counted in a bracket is the request path's."""
        calls, usec = self.snapshot()
        total_calls, total_usec = calls - start[0], usec - start[1]
        for category in list(self.calls):
            factor = self.events[category] / self.brackets[category]
            if factor != 1:
                self.calls[category] = Counter({k: round(v * factor) for k, v in self.calls[category].items()})
                self.usec[category] = Counter({k: round(v * factor) for k, v in self.usec[category].items()})
            total_calls -= self.calls[category]
            total_usec -= self.usec[category]
        self.calls["request"] = total_calls
        self.usec["request"] = total_usec


@dataclass
class Refusal:
    """A 503 queue_full told its client to come back at `told_ms`; `opened_ms` is when a place in the
    model's queue opened for it (matched in the order refusals happened), None if none did."""

    model: str
    at_ms: int
    told_ms: int
    opened_ms: int | None = None
    returned: bool = False  # its client came back (or gave up): a place matched now is not held for it
    holding: bool = False


@dataclass
class PlaceWatch:
    """For Retry-After accuracy: when places open in a model's queue, in the terms of admit.lua's bound
    (interactive waiting + running on ready nodes <= slots it has or will have + max_queue), without the
    reservations (they are what is being judged). Refused clients are matched to opening places in the
    order they were refused; a matched place is held for its client until it comes back."""

    pending: dict[str, deque] = field(default_factory=dict)
    held: Counter = field(default_factory=Counter)
    refusals: list[Refusal] = field(default_factory=list)

    def refused(self, model: str, at_ms: int, told_ms: int, comes_back: bool) -> Refusal:
        refusal = Refusal(model, at_ms, told_ms, returned=not comes_back)
        self.refusals.append(refusal)
        self.pending.setdefault(model, deque()).append(refusal)
        return refusal

    def came_back(self, refusal: Refusal) -> None:
        refusal.returned = True
        if refusal.holding:
            refusal.holding = False
            self.held[refusal.model] -= 1

    def watching(self, model: str) -> bool:
        return bool(self.pending.get(model))

    def places_changed(self, model: str, free_places: int, now_ms: int) -> None:
        """`free_places`: how many more interactive requests the bound would admit now."""
        waiting = self.pending.get(model)
        free = free_places - self.held[model]
        while waiting and free > 0:
            refusal = waiting.popleft()
            refusal.opened_ms = now_ms
            free -= 1
            if not refusal.returned:
                refusal.holding = True
                self.held[model] += 1
