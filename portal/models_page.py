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
        loaded = sum(1 for node in model["nodes"].values() if node["placement"] == "ready")
        loading = model["loading_on"]
        wait_ms = model["typical_wait_ms"]
        out[public_id] = {
            "loaded": _loaded_text(loaded, loading),
            "queue": str(model["queue_depth"]),
            # What a request sent now would wait, counting the queue ahead and a load in progress.
            "wait": _wait_text(wait_ms),
        }
    return out


def _servers(count: int) -> str:
    return f"{count} server{'s' if count != 1 else ''}"


def _loaded_text(loaded: int, loading: int) -> str:
    if loaded and loading:
        return f"yes, on {_servers(loaded)}; loading on {_servers(loading)}"
    if loaded:
        return f"yes, on {_servers(loaded)}"
    if loading:
        return f"loading now, on {_servers(loading)}"
    return "no (loads on first use)"


def _wait_text(ms: int | None) -> str:
    if ms is None:
        return "unknown"
    if ms < 100:
        return "none"
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
