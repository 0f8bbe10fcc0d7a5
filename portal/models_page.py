"""Rows for the Models page: each model the person may use, with its configuration and live figures.

`live_figures` is the one place live numbers come from: the scheduler's state in Redis
(inference/status.py), read when the page is rendered. Without Redis the cells say "unknown".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import redis
from django.db.models import Count, Q

from apiaccess.access import usable_models
from inference import status

# (key in each row's `live` dict, column heading), in display order.
LIVE_COLUMNS: tuple[tuple[str, str], ...] = (("loaded", "Loaded now"), ("queue", "Waiting"), ("wait", "Typical wait"))


@dataclass(frozen=True)
class ModelRow:
    public_id: str
    kind: str
    context_length: int
    concurrency: int
    servers: int  # healthy, enabled nodes that have the model
    details: str  # family, parameter size, quantization
    live_cells: tuple[tuple[str, str], ...] = ()  # (heading, value) per LIVE_COLUMNS entry, in order


def live_figures(public_ids: Iterable[str]) -> dict[str, dict[str, str]]:
    """Live per-model figures keyed by LIVE_COLUMNS keys, as display text."""
    try:
        models = status.scheduler_status()["models"]
    except (redis.RedisError, OSError):
        return {public_id: dict.fromkeys(("loaded", "queue", "wait"), "unknown") for public_id in public_ids}
    out = {}
    for public_id in public_ids:
        model = models.get(public_id)
        if model is None:
            continue
        loaded = sum(1 for node in model["nodes"].values() if node["loaded"] or node["placement"] == "ready")
        wait_ms = model["typical_wait_ms"]
        out[public_id] = {
            "loaded": (f"yes, on {loaded} server{'s' if loaded != 1 else ''}" if loaded else "no (loads on first use)"),
            "queue": str(model["queue_depth"]),
            "wait": "none" if not model["queue_depth"] else (_seconds(wait_ms) if wait_ms is not None else "unknown"),
        }
    return out


def _seconds(ms: float) -> str:
    return "under 1 s" if ms < 1000 else f"about {round(ms / 1000)} s"


def model_rows(user) -> list[ModelRow]:
    healthy = Q(nodes__enabled=True, nodes__healthy=True)
    models = list(usable_models(user).annotate(servers=Count("nodes", filter=healthy, distinct=True)))
    live = live_figures(m.public_id for m in models)
    return [
        ModelRow(
            public_id=m.public_id,
            kind=m.get_kind_display(),
            context_length=m.context_length,
            concurrency=m.concurrency,
            servers=m.servers,
            details=" · ".join(part for part in (m.family, m.parameter_size, m.quantization) if part),
            live_cells=tuple((heading, live.get(m.public_id, {}).get(key, "—")) for key, heading in LIVE_COLUMNS),
        )
        for m in models
    ]
