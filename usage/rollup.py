"""Roll old usage records up into one row per day, person, key, model and outcome, then prune.

Raw records are kept USAGE_RAW_RETENTION_DAYS (the usage pages read the last 30 days from them and
from the roll-ups alike); daily roll-ups are kept USAGE_ROLLUP_RETENTION_DAYS (0 = for ever). A
roll-up adds and deletes in one transaction, and a Redis lock keeps two workers from rolling the
same records up twice.
"""

from __future__ import annotations

import datetime as dt
import logging

from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from common.store import keys
from common.store.client import sync_client
from usage.models import DailyUsage, UsageRecord

log = logging.getLogger(__name__)

def _day_start(when: dt.datetime) -> dt.datetime:
    return when.astimezone(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def roll_up(now: dt.datetime | None = None) -> tuple[int, int]:
    """Returns (raw records rolled up, daily rows pruned)."""
    now = now or timezone.now()
    client = sync_client()
    if not client.set(keys.USAGE_ROLLUP_LOCK, "1", nx=True, ex=600):
        return 0, 0  # another worker is at it
    try:
        return _roll_up(now), _prune(now)
    finally:
        client.delete(keys.USAGE_ROLLUP_LOCK)


def _roll_up(now: dt.datetime) -> int:
    cutoff = _day_start(now - dt.timedelta(days=settings.USAGE_RAW_RETENTION_DAYS))
    old = UsageRecord.objects.filter(at__lt=cutoff)
    with transaction.atomic():
        groups = (old.annotate(day=TruncDate("at", tzinfo=dt.UTC))
                  .values("day", "user_id", "key_id", "model", "reason")
                  .annotate(requests=Count("id"), prompt=Sum("prompt_tokens"), completion=Sum("completion_tokens"),
                            gpu=Sum("gpu_seconds")))
        for group in groups:
            row, _ = DailyUsage.objects.get_or_create(day=group["day"], user_id=group["user_id"],
                                                      key_id=group["key_id"], model=group["model"],
                                                      reason=group["reason"])
            DailyUsage.objects.filter(pk=row.pk).update(
                requests=F("requests") + group["requests"], prompt_tokens=F("prompt_tokens") + group["prompt"],
                completion_tokens=F("completion_tokens") + group["completion"],
                gpu_seconds=F("gpu_seconds") + group["gpu"])
        rolled, _ = old.delete()
    if rolled:
        log.info("rolled up %d usage records older than %s", rolled, cutoff.date())
    return rolled


def _prune(now: dt.datetime) -> int:
    if not settings.USAGE_ROLLUP_RETENTION_DAYS:
        return 0
    cutoff = (now - dt.timedelta(days=settings.USAGE_ROLLUP_RETENTION_DAYS)).date()
    pruned, _ = DailyUsage.objects.filter(day__lt=cutoff).delete()
    return pruned
