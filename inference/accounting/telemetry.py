"""Counters and histograms for /metrics, kept in Redis so that every web process adds to the same ones.

A Prometheus client library keeps its figures in the memory of one process; with several web
processes behind a load balancer each scrape would see one of them. Here every process adds to
hashes in Redis instead (HINCRBY, inside the script that also writes the usage record, so both or
neither land), and portal/metrics.py reads them at scrape time, along with the live queue state.
The counters are kept per usage shard (common/store/keys.py), beside the shard's stream, so one
script covers a record and its counters on one Redis Cluster slot; `read_summed` adds the shards up.

Histograms store one counter per bucket (not cumulative) plus a sum and a count, per model.
"""

from __future__ import annotations

import bisect
import zlib

from common.store import keys

# Seconds. Queue waits and first tokens range from milliseconds to minutes; loads from a second to minutes.
BUCKETS = {
    "queue_wait": (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
    "ttft": (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
    "load": (0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300),
}
SEP = "\t"
# Refusals (429, 503) per model in 10-second buckets, for the dashboard's "last minute" figures.
RECENT_BUCKET_SECONDS = 10
RECENT_BUCKETS = 6


def bucket_field(name: str, label: str, seconds: float) -> str:
    """The hash field of the first bucket that holds `seconds` ("+Inf" beyond the last)."""
    bounds = BUCKETS[name]
    index = bisect.bisect_left(bounds, seconds)
    upper = "+Inf" if index == len(bounds) else repr(float(bounds[index]))
    return f"{label}{SEP}{upper}"


def observe(pipe, shard: int, name: str, label: str, seconds: float) -> None:
    key = keys.metrics_histogram(shard, name)
    pipe.hincrby(key, bucket_field(name, label, seconds), 1)
    pipe.hincrbyfloat(key, f"{label}{SEP}sum", seconds)
    pipe.hincrby(key, f"{label}{SEP}count", 1)


def add_request(pipe, shard: int, fields: dict[str, str]) -> None:
    """A finished request's counters and timings, from its usage record's fields, on its record's shard."""
    model = fields["model"]
    pipe.hincrby(keys.metrics_requests(shard), SEP.join((model, fields["status"], fields["reason"])), 1)
    for kind in ("prompt", "completion"):
        tokens = int(fields[f"{kind}_tokens"])
        if tokens:
            pipe.hincrby(keys.metrics_tokens(shard), f"{model}{SEP}{kind}", tokens)
    if fields["status"] in ("429", "503"):
        bucket = keys.metrics_recent(shard, int(float(fields["at"])) // RECENT_BUCKET_SECONDS)
        pipe.hincrby(bucket, f"{model}{SEP}{fields['status']}", 1)
        pipe.expire(bucket, RECENT_BUCKET_SECONDS * (RECENT_BUCKETS + 2))
    if fields["node"]:  # it reached a slot: its wait in the queue and first token are meaningful
        observe(pipe, shard, "queue_wait", model, int(fields["queue_wait_ms"]) / 1000)
        if fields["ttft_ms"]:
            observe(pipe, shard, "ttft", model, int(fields["ttft_ms"]) / 1000)


async def add_swap(client, kind: str, model: str, node: str, seconds: float | None = None) -> None:
    """A load or unload by the swap actor; a load also records how long it took."""
    shard = zlib.crc32(f"{model}{SEP}{node}".encode()) % keys.USAGE_SHARDS  # all on one tag: one MULTI
    pipe = client.pipeline(transaction=True)
    pipe.hincrby(keys.metrics_swaps(shard), SEP.join((kind, model, node)), 1)
    if seconds is not None:
        observe(pipe, shard, "load", model, seconds)
    await pipe.execute()


def recent_keys(now: float) -> list[str]:
    """The buckets of every shard that make up the last minute (the current one is still filling)."""
    current = int(now) // RECENT_BUCKET_SECONDS
    return [keys.metrics_recent(shard, current - i) for i in range(RECENT_BUCKETS) for shard in range(keys.USAGE_SHARDS)]


def read_summed(client, *key_of_shard) -> list[dict[str, str]]:
    """For each function from a shard to a key: that hash over every shard, its fields added up."""
    with client.pipeline(transaction=False) as pipe:
        for key_of in key_of_shard:
            for shard in range(keys.USAGE_SHARDS):
                pipe.hgetall(key_of(shard))
        replies = pipe.execute()
    summed = []
    for index in range(len(key_of_shard)):
        total: dict[str, int | float] = {}
        for reply in replies[index * keys.USAGE_SHARDS:(index + 1) * keys.USAGE_SHARDS]:
            for field, value in reply.items():
                number = int(value) if value.lstrip("-").isdigit() else float(value)
                total[field] = total.get(field, 0) + number
        summed.append({field: repr(value) if isinstance(value, float) else str(value) for field, value in total.items()})
    return summed
