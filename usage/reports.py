"""Figures for the usage pages, from raw records and daily roll-ups alike (usage/rollup.py).

Every function reads one window (the last `days` UTC days, today included) and returns plain rows.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from usage.models import DailyUsage, UsageRecord

WINDOW_DAYS = 30
OK = UsageRecord.Reason.OK


@dataclass
class Totals:
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    gpu_seconds: float = 0.0

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, row: dict) -> None:
        self.requests += row["requests"]
        self.prompt_tokens += row["prompt"] or 0
        self.completion_tokens += row["completion"] or 0
        self.gpu_seconds += row["gpu"] or 0.0


def window(days: int = WINDOW_DAYS, today: dt.date | None = None) -> list[dt.date]:
    today = today or timezone.now().astimezone(dt.UTC).date()
    return [today - dt.timedelta(days=days - 1 - i) for i in range(days)]


def rows(days: list[dt.date], *, user=None) -> Iterable[dict]:
    """Grouped rows (day, user_id, key_id, model, reason, requests, prompt, completion, gpu)."""
    since = dt.datetime.combine(days[0], dt.time(), tzinfo=dt.UTC)
    who = Q(user=user) if user is not None else Q()
    sums = {"prompt": Sum("prompt_tokens"), "completion": Sum("completion_tokens"), "gpu": Sum("gpu_seconds")}
    yield from (UsageRecord.objects.filter(who, at__gte=since)
                .annotate(day=TruncDate("at", tzinfo=dt.UTC))
                .values("day", "user_id", "key_id", "model", "reason")
                .annotate(requests=Count("id"), **sums).order_by())
    yield from (DailyUsage.objects.filter(who, day__gte=days[0])
                .values("day", "user_id", "key_id", "model", "reason")
                .annotate(requests=Sum("requests"), **sums).order_by())


@dataclass
class Report:
    days: list[dt.date]
    total: Totals = field(default_factory=Totals)
    by_day: dict[dt.date, Totals] = field(default_factory=lambda: defaultdict(Totals))
    by_day_model: dict[tuple[dt.date, str], Totals] = field(default_factory=lambda: defaultdict(Totals))
    by_model: dict[str, Totals] = field(default_factory=lambda: defaultdict(Totals))
    by_key: dict[int | None, Totals] = field(default_factory=lambda: defaultdict(Totals))
    by_user: dict[int | None, Totals] = field(default_factory=lambda: defaultdict(Totals))
    rejections: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))  # (reason, model)

    @property
    def models(self) -> list[str]:
        return sorted(self.by_model, key=lambda m: -self.by_model[m].tokens)


def report(*, user=None, days: int = WINDOW_DAYS) -> Report:
    """Requests that were answered count as usage; refusals and failures count as rejections."""
    out = Report(days=window(days))
    for row in rows(out.days, user=user):
        if row["reason"] != OK:
            out.rejections[(row["reason"], row["model"])] += row["requests"]
            continue
        for totals in (out.total, out.by_day[row["day"]], out.by_day_model[(row["day"], row["model"])],
                       out.by_model[row["model"]], out.by_key[row["key_id"]], out.by_user[row["user_id"]]):
            totals.add(row)
    return out
