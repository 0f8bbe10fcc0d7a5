"""What the simulation measures on the side while it runs, each sample bracketed so its own Redis
commands are counted apart: a web process's lease renewal round, the real actor's state read (and
the check that the simulation's copy of the queues is what Redis holds), and hourly readings. A mixin
of bench/scale/driver.py's Simulation.
"""

from __future__ import annotations

import time
from collections import Counter

from bench.scale.accounting import HOUR_MS
from inference.scheduler import queue


class Sampling:
    """Periodic measurements, on the Simulation's state (counters, live tickets, the scheduler)."""

    def _category_total(self, category: str) -> tuple[int, int]:
        return (self.counters.calls.get(category, Counter()).total(),
                self.counters.usec.get(category, Counter()).total())

    async def _measured(self, category: str, action) -> tuple[object, tuple[int, int]]:
        before = self._category_total(category)
        with self.counters.bracket(category):
            result = await action()
        after = self._category_total(category)
        return result, (after[0] - before[0], after[1] - before[1])

    async def sample_renewals(self, every: int) -> None:
        """One process's lease renewal round (slots.Broker._check_all_once), measured; one process per
        sample, in turn. Web processes renew every second while any of their tickets waits, else every
        SLOT_LEASE_SECONDS / 3 (5 s): the report applies those rates."""
        owners = [*self.owners, self.feeder_owner]
        owner = owners[len(self.renew_samples) % len(owners)]
        by_model: dict[str, list[str]] = {}
        waiting = False
        for ticket, call in self.live.items():
            if call.owner == owner:
                by_model.setdefault(call.model, []).append(ticket)
                waiting = waiting or call.granted_ms is None

        async def renew_all() -> None:
            for model, tickets in by_model.items():
                await queue.renew(model, self.scheduler.policy(model), tickets)

        _, (commands, usec) = await self._measured("renew", renew_all)
        self.renew_samples.append({
            "at_ms": self.now, "owner": "feeder" if owner == self.feeder_owner else "web", "waiting": waiting,
            "scripts": len(by_model), "tickets": sum(map(len, by_model.values())), "commands": commands,
            "usec": usec, "models_waiting": sum(1 for b in self.scheduler.mirror.books.values() if b.waiting)})
        self.again(self.sample_renewals, every)

    async def check(self, every: int) -> None:
        """The simulation's copy of the queues against Redis; and what the real actor's reads cost (its
        state read and note_born each round, a dispatch per waiting model, a node poll)."""
        models = [r.ollama_name for r in self.scheduler.routes]
        real, states_cost = await self._measured("check", self.scheduler.read_real_states)
        _, born_cost = await self._measured("check", lambda: self.scheduler.real_note_born(models))
        waiting = [m for m, b in self.scheduler.mirror.books.items() if b.waiting]

        async def dispatch_all() -> None:
            for model in waiting:
                await queue.dispatch(model, self.scheduler.policy(model))

        _, dispatch_cost = await self._measured("check", dispatch_all)
        view = next(iter(self.scheduler.actor.views.values()), None)
        poll_cost = (0, 0)
        if view is not None:
            _, poll_cost = await self._measured("check", lambda: self.scheduler.actor._poll(view))
        self.checks.append({"at_ms": self.now, "differences": self.scheduler.mirror.differences(real),
                            "models_waiting": len(waiting),
                            "cost": {"states": states_cost, "note_born": born_cost, "dispatch": dispatch_cost,
                                     "poll": poll_cost}})
        self.again(self.check, every)

    async def hour_mark(self, every: int) -> None:
        calls, usec = self.counters.snapshot()
        self.hourly.append({"at_ms": self.now, "calls": calls.total(), "usec": usec.total(),
                            "bracketed": {c: v.total() for c, v in self.counters.calls.items()},
                            "redis_cpu_s": self.counters.cpu_seconds(), "wall_s": time.perf_counter()})
        if self.progress is not None:
            served = sum(1 for c in self.calls if c.outcome == "served")
            self.progress(f"simulated {(self.now - self.start_ms) / HOUR_MS:5.1f} h: {len(self.calls)} requests, "
                          f"{served} served, {len(self.live)} in flight, {time.perf_counter() - self.began:.0f} s")
        self.again(self.hour_mark, every)
