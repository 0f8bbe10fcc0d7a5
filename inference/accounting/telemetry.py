"""Counters and histograms for /metrics, kept in Redis so that every web process adds to the same ones.

A Prometheus client library keeps its figures in the memory of one process; with several web
processes behind a load balancer each scrape would see one of them. Here every process adds to
hashes in Redis instead (HINCRBY, inside the transaction that also writes the usage record, so both
or neither land), and portal/metrics.py reads them at scrape time, along with the live queue state.
All keys share the `{usage}` hash tag with the usage stream, so one MULTI covers them.

Histograms store one counter per bucket (not cumulative) plus a sum and a count, per model.
"""

from __future__ import annotations

import bisect

from common.store import keys

# Seconds. Queue waits and first tokens range from milliseconds to minutes; loads from a second to minutes.
BUCKETS = {
    "queue_wait": (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
    "ttft": (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
    "load": (0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300),
}
HISTOGRAMS = {name: keys.metrics_histogram(name) for name in BUCKETS}
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


def observe(pipe, name: str, label: str, seconds: float) -> None:
    key = HISTOGRAMS[name]
    pipe.hincrby(key, bucket_field(name, label, seconds), 1)
    pipe.hincrbyfloat(key, f"{label}{SEP}sum", seconds)
    pipe.hincrby(key, f"{label}{SEP}count", 1)


def add_request(pipe, fields: dict[str, str]) -> None:
    """A finished request's counters and timings, from its usage record's fields."""
    model = fields["model"]
    pipe.hincrby(keys.METRICS_REQUESTS, SEP.join((model, fields["status"], fields["reason"])), 1)
    for kind in ("prompt", "completion"):
        tokens = int(fields[f"{kind}_tokens"])
        if tokens:
            pipe.hincrby(keys.METRICS_TOKENS, f"{model}{SEP}{kind}", tokens)
    if fields["status"] in ("429", "503"):
        bucket = keys.metrics_recent(int(float(fields["at"])) // RECENT_BUCKET_SECONDS)
        pipe.hincrby(bucket, f"{model}{SEP}{fields['status']}", 1)
        pipe.expire(bucket, RECENT_BUCKET_SECONDS * (RECENT_BUCKETS + 2))
    if fields["node"]:  # it reached a slot: its wait in the queue and first token are meaningful
        observe(pipe, "queue_wait", model, int(fields["queue_wait_ms"]) / 1000)
        if fields["ttft_ms"]:
            observe(pipe, "ttft", model, int(fields["ttft_ms"]) / 1000)


async def add_swap(client, kind: str, model: str, node: str, seconds: float | None = None) -> None:
    """A load or unload by the swap actor; a load also records how long it took."""
    pipe = client.pipeline(transaction=True)
    pipe.hincrby(keys.METRICS_SWAPS, SEP.join((kind, model, node)), 1)
    if seconds is not None:
        observe(pipe, "load", model, seconds)
    await pipe.execute()


def recent_keys(now: float) -> list[str]:
    """The buckets that make up the last minute (the current one is still filling)."""
    current = int(now) // RECENT_BUCKET_SECONDS
    return [keys.metrics_recent(current - i) for i in range(RECENT_BUCKETS)]
