"""The batch feeder's side of a batch line, as batches/feeder.py does it: at most a model's `room` of
lines in flight; a full queue holds back every line of the model until one of them ends or the
refusal's Retry-After passes (the refused line goes first then); a line whose wait ran out is tried
again 5 s later, three times at most. A mixin of bench/scale/driver.py's Simulation.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from django.conf import settings

from bench.scale.workload import CONCURRENCY, MAX_QUEUE

if TYPE_CHECKING:
    from bench.scale.driver import Call

BATCH_TRANSIENT_RETRY_MS = 5000  # batches/feeder.py TRANSIENT_RETRY_SECONDS
BATCH_TRANSIENT_ATTEMPTS = 3


@dataclass
class BatchRun:
    """One batch's lines: those not started yet, those to try again (when), and how many are in flight."""

    model: str
    pending: deque
    retries: list = field(default_factory=list)  # (ready at, call)
    in_flight: int = 0


class BatchFeeding:
    """The feeder's rules, on the Simulation's state (jobs, batch_in_flight, batch_paused_until)."""

    async def submit_batch(self, job) -> None:
        model = self.world.models[job.model].name
        run = BatchRun(model, deque())
        for prompt, completion in job.lines:
            run.pending.append(self.new_call(job.person, model, "batch", prompt, completion, run))
        self.jobs.setdefault(model, []).append(run)
        await self.feed(model)

    def room(self, model: str) -> int:
        """Lines of a model the feeder keeps in flight (feeder.Feeder.room)."""
        slots = CONCURRENCY * max(1, len(self.models[model].route.node_urls))
        return slots + min(slots * (settings.BATCH_LINES_PER_SLOT - 1), MAX_QUEUE)

    async def feed(self, model: str) -> None:
        """Start the model's batch lines while it has room, oldest batch first, retries first."""
        runs = self.jobs.get(model, [])
        for run in list(runs):
            while True:
                if self.batch_in_flight[model] >= self.room(model) or self.batch_paused_until.get(model, 0) > self.now:
                    return
                ready = next((entry for entry in run.retries if entry[0] <= self.now), None)
                if ready is not None:
                    run.retries.remove(ready)
                    call = ready[1]
                elif run.pending:
                    call = run.pending.popleft()
                else:
                    break
                self.batch_in_flight[model] += 1
                run.in_flight += 1
                await self.attempt(call)
            if not (run.pending or run.retries or run.in_flight):
                runs.remove(run)

    def batch_refused(self, call: Call, retry_ms: int) -> None:
        """A full queue: none of the model's lines asks again until one of them ends or retry-after passes."""
        self.batch_in_flight[call.model] -= 1
        call.job.in_flight -= 1
        call.job.retries.insert(0, (self.now, call))
        until = max(self.batch_paused_until.get(call.model, 0), self.now + retry_ms)
        self.batch_paused_until[call.model] = until
        self.at(until, self.feed, call.model)

    def batch_line_ended(self, call: Call) -> None:
        self.batch_in_flight[call.model] -= 1
        call.job.in_flight -= 1
        self.batch_paused_until.pop(call.model, None)
        self.at(self.now, self.feed, call.model)

    def batch_timed_out(self, call: Call) -> None:
        self.batch_in_flight[call.model] -= 1
        call.job.in_flight -= 1
        call.transient += 1
        if call.transient >= BATCH_TRANSIENT_ATTEMPTS:
            call.outcome, call.ended_ms = "timed_out", self.now
            return
        call.job.retries.append((self.now + BATCH_TRANSIENT_RETRY_MS, call))
        self.at(self.now + BATCH_TRANSIENT_RETRY_MS, self.feed, call.model)

