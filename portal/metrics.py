"""Prometheus metrics at /metrics, for staff or a scraper holding METRICS_TOKEN.

Every figure is read from Redis at scrape time: the live queue state (inference/status.py) and the
counters and histograms every web process adds to (inference/accounting/telemetry.py). So any web process
answers a scrape with the same, whole-site numbers, however many of them run.
"""

from __future__ import annotations

import functools
import secrets
from collections import defaultdict

from django.conf import settings
from django.http import HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from common.store import keys
from common.store.client import sync_client
from inference.accounting import telemetry
from inference.status import scheduler_status

SEP = telemetry.SEP


def _split(field: str, parts: int) -> list[str] | None:
    values = field.split(SEP)
    return values if len(values) == parts else None


def _histogram(name: str, documentation: str, kind: str, raw: dict[str, str]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, documentation, labels=["model"])
    per_model: dict[str, dict[str, float]] = defaultdict(dict)
    for field, value in raw.items():
        pair = _split(field, 2)
        if pair:
            per_model[pair[0]][pair[1]] = float(value)
    for model, values in sorted(per_model.items()):
        bounds = [repr(float(b)) for b in telemetry.BUCKETS[kind]]
        cumulative, buckets = 0.0, []
        for bound in [*bounds, "+Inf"]:
            cumulative += values.get(bound, 0)
            buckets.append((bound, cumulative))
        family.add_metric([model], buckets, values.get("sum", 0.0))
    return family


class RedisCollector:
    """Collects every family from Redis when scraped."""

    def collect(self):
        status = scheduler_status()
        depth = GaugeMetricFamily("gatehouse_queue_depth", "Requests waiting in the model's queue", labels=["model"])
        running = GaugeMetricFamily("gatehouse_in_flight_requests", "Requests running on a node",
                                    labels=["model", "node"])
        for public_id, model in status["models"].items():
            depth.add_metric([public_id], model["queue_depth"])
            for url in status["nodes"]:
                running.add_metric([public_id, url], model["nodes"].get(url, {}).get("in_flight", 0))
        up = GaugeMetricFamily("gatehouse_node_up", "1 if the node answers and takes work, else 0", labels=["node"])
        memory = GaugeMetricFamily("gatehouse_node_memory_used_bytes", "GPU memory of the loaded models",
                                   labels=["node"])
        loaded = GaugeMetricFamily("gatehouse_model_loaded_bytes", "Memory of a model loaded on a node",
                                   labels=["model", "node"])
        for url, node in status["nodes"].items():
            up.add_metric([url], 1 if node["state"] == "up" else 0)
            memory.add_metric([url], node["memory_used_bytes"])
            for name, size in node["loaded"].items():
                loaded.add_metric([name, url], size)
        yield from (depth, running, up, memory, loaded)

        requests, tokens, swaps, queue_wait, ttft, load = telemetry.read_summed(
            sync_client(), keys.metrics_requests, keys.metrics_tokens, keys.metrics_swaps,
            *(functools.partial(keys.metrics_histogram, name=name) for name in ("queue_wait", "ttft", "load")))

        family = CounterMetricFamily("gatehouse_requests", "API requests by outcome",
                                     labels=["model", "status", "reason"])
        for field, value in sorted(requests.items()):
            if labels := _split(field, 3):
                family.add_metric(labels, int(value))
        yield family
        family = CounterMetricFamily("gatehouse_tokens", "Tokens processed", labels=["model", "kind"])
        for field, value in sorted(tokens.items()):
            if labels := _split(field, 2):
                family.add_metric(labels, int(value))
        yield family
        loads = CounterMetricFamily("gatehouse_model_loads", "Models loaded by the swap actor",
                                    labels=["model", "node"])
        unloads = CounterMetricFamily("gatehouse_model_unloads", "Models unloaded by the swap actor",
                                      labels=["model", "node"])
        for field, value in sorted(swaps.items()):
            if parts := _split(field, 3):
                (loads if parts[0] == "load" else unloads).add_metric(parts[1:], int(value))
        yield from (loads, unloads)
        yield _histogram("gatehouse_queue_wait_seconds", "Time from admission to a slot", "queue_wait",
                              queue_wait)
        yield _histogram("gatehouse_time_to_first_token_seconds", "Time from arrival to the first token",
                              "ttft", ttft)
        yield _histogram("gatehouse_model_load_seconds", "Time a node took to load a model", "load", load)


def staff_or_metrics_token(request) -> bool:
    """The caller may read operational detail: a signed-in staff member, or a scraper holding METRICS_TOKEN."""
    token = settings.METRICS_TOKEN
    header = request.headers.get("Authorization", "")
    if token and header.startswith("Bearer ") and secrets.compare_digest(header[7:].strip(), token):
        return True
    return request.user.is_authenticated and request.user.is_staff


def metrics_view(request) -> HttpResponse:
    if not staff_or_metrics_token(request):
        response = HttpResponse("Staff only, or send Authorization: Bearer <METRICS_TOKEN>.\n", status=401,
                                content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RedisCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
