"""Move usage records from the Redis stream (inference/accounting/usage.py) into the database, in batches.

Reading goes through a consumer group, so an entry leaves the stream only after its row is
committed: a worker that dies mid-batch leaves its entries pending, and the next drain reads its
pending entries first, wherever the last one died (tests/test_usage_drain.py). Rows are keyed by the
entry id, so an entry written twice is kept once.
While no worker runs, entries wait in the stream.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import redis
from django.contrib.auth import get_user_model

from apiaccess.models import ApiKey
from common.store import keys
from common.store.client import sync_client
from usage.models import UsageRecord

log = logging.getLogger(__name__)

# One consumer name for every worker: pending entries of a worker that died are read again by the
# next drain, whichever worker runs it.
CONSUMER = "drain"
BATCH = 500


def _int(value: str | None, default: int = 0) -> int:
    try:
        return max(0, int(float(value))) if value not in (None, "") else default
    except ValueError:
        return default


def to_record(entry_id: str, fields: dict[str, str]) -> UsageRecord:
    ttft = fields.get("ttft_ms")
    return UsageRecord(
        stream_id=entry_id,
        at=datetime.fromtimestamp(float(fields.get("at") or 0), tz=UTC),
        user_id=_int(fields.get("user")) or None,
        key_id=_int(fields.get("key")) or None,
        model=fields.get("model", "")[:200],
        node=fields.get("node", "")[:500],
        status=_int(fields.get("status")),
        reason=fields.get("reason", "") or UsageRecord.Reason.BACKEND_ERROR,
        prompt_tokens=_int(fields.get("prompt_tokens")),
        completion_tokens=_int(fields.get("completion_tokens")),
        queue_wait_ms=_int(fields.get("queue_wait_ms")),
        ttft_ms=_int(ttft) if ttft else None,
        duration_ms=_int(fields.get("duration_ms")),
        gpu_seconds=float(fields.get("gpu_seconds") or 0),
        priority=fields.get("priority", "interactive"),
        streamed=fields.get("streamed") == "1",
        disconnected=fields.get("disconnected") == "1",
    )


def _ensure_group(client: redis.Redis, stream: str) -> None:
    try:
        # From the stream's start ("0"), so entries written before the first drain are not skipped.
        client.xgroup_create(stream, keys.USAGE_DRAIN_GROUP, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def _drop_orphans(records: list[UsageRecord]) -> None:
    """Keep rows of people and keys deleted meanwhile, without a dangling reference."""
    users = {r.user_id for r in records if r.user_id}
    keys = {r.key_id for r in records if r.key_id}
    known_users = set(get_user_model().objects.filter(pk__in=users).values_list("pk", flat=True))
    known_keys = set(ApiKey.objects.filter(pk__in=keys).values_list("pk", flat=True))
    for record in records:
        if record.user_id not in known_users:
            record.user_id = None
        if record.key_id not in known_keys:
            record.key_id = None


def drain(batch: int = BATCH) -> int:
    """Drain everything the usage streams hold now; return how many records were written."""
    client = sync_client()
    # Entry ids are unique within a stream only: a record's id names its shard too. The stream of the
    # releases before the shards (one `{usage}` tag) is drained as well, with its plain ids.
    written = _drain_stream(client, keys.USAGE_STREAM_BEFORE_SHARDS, "", batch)
    written += sum(_drain_stream(client, keys.usage_stream(shard), f"{shard}:", batch)
                   for shard in range(keys.USAGE_SHARDS))
    if written:
        log.info("drained %d usage records", written)
    return written


def _drain_stream(client: redis.Redis, stream: str, id_prefix: str, batch: int) -> int:
    _ensure_group(client, stream)
    written = 0
    for start in ("0", ">"):  # our pending entries first (a drain that died), then new ones
        while True:
            reply = client.xreadgroup(keys.USAGE_DRAIN_GROUP, CONSUMER, {stream: start}, count=batch)
            entries = reply[0][1] if reply else []
            if not entries:
                break
            # A pending entry trimmed from the stream meanwhile comes back without fields.
            records = [to_record(id_prefix + entry_id, fields) for entry_id, fields in entries if fields]
            _drop_orphans(records)
            UsageRecord.objects.bulk_create(records, ignore_conflicts=True)
            ids = [entry_id for entry_id, _ in entries]
            # Delete, then acknowledge. A drain that dies between the two leaves the entries pending
            # and gone, which the next drain's read of pending entries clears (they come back without
            # fields). The other order would leave them acknowledged in the stream, where no read of
            # a consumer group finds them again, and the stream would never empty.
            client.xdel(stream, *ids)
            client.xack(stream, keys.USAGE_DRAIN_GROUP, *ids)
            written += len(records)
    return written
