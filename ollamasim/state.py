"""The simulator's shared state, handed to every request handler."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ollamasim.catalogue import Catalogue, ModelEntry
from ollamasim.config import SimConfig
from ollamasim.scheduler import Scheduler, Trace
from ollamasim.stats import Stats


@dataclass
class State:
    config: SimConfig
    catalogue: Catalogue
    scheduler: Scheduler
    stats: Stats

    def begin(self, trace: Trace, entry: ModelEntry) -> None:
        """From here on the request counts for its model (requests, in_flight) until the handler ends."""
        trace.model = entry.name.short
        self.stats.count(trace.model, "requests")
        self.stats.enter(trace.model, "in_flight")

    def knob(self, entry: ModelEntry, key: str) -> Any:
        value = entry.setting(key)
        return getattr(self.config.server, key) if value is None else value
