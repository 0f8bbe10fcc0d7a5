"""The usage records waiting in Redis, as tests read them: every shard's stream, in the order written."""

from __future__ import annotations

from common.store import keys


def usage_entries(kv) -> list[dict[str, str]]:
    """The fields of every record not drained yet, oldest first (by the time each request ended)."""
    entries = [fields for stream in keys.usage_streams() for _, fields in kv.xrange(stream)]
    return sorted(entries, key=lambda fields: float(fields.get("at") or 0))


def usage_waiting(kv) -> int:
    """How many records wait in Redis for the worker's drain."""
    return sum(kv.xlen(stream) for stream in keys.usage_streams())
