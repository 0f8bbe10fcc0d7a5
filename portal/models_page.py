"""Rows for the Models page: each model the person may use, with its configuration and live figures.

`live_figures` is the one place live numbers come from. It has none yet: the scheduler will supply
"loaded now", queue depth and typical wait per model, and add their headings to LIVE_COLUMNS. Until
then the page shows no such columns rather than made-up ones.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.db.models import Count, Q

from apiaccess.access import usable_models

# (key in each row's `live` dict, column heading), in display order.
LIVE_COLUMNS: tuple[tuple[str, str], ...] = ()


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
    """Live per-model figures keyed by LIVE_COLUMNS keys, as display text; none exist yet."""
    return {}


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
