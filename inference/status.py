"""What the scheduler is doing right now, for staff (/portal/api/status), the models page and /healthz.

Sync code for sync views: one pipelined read of the queue keys per call; no Redis state is changed.
"""

from __future__ import annotations

import json
from typing import Any

import redis

from common.store import keys
from common.store.client import sync_client
from inference.models import Model, Node
from inference.scheduler.queue import forecast, parse_state, read_state


def redis_ok() -> bool:
    try:
        return bool(sync_client().ping())
    except (redis.RedisError, OSError):
        return False


def node_health() -> dict[str, dict[str, Any]]:
    """Per node: up or down (as the scheduler sees it), why, and what /api/ps said last."""
    down = sync_client().hgetall(keys.NODES_DOWN)
    ps = sync_client().hgetall(keys.NODES_PS)
    out = {}
    for node in Node.objects.order_by("url"):
        seen = json.loads(ps[node.url]) if node.url in ps else None
        out[node.url] = {
            "name": node.name or node.url,
            "state": "down" if node.url in down else ("drained" if not node.enabled else "up"),
            "reason": down.get(node.url, ""),
            "memory_budget_bytes": node.gpu_memory_bytes,
            "loaded": {m["name"]: m["size_vram"] or m["size"] for m in seen["models"]} if seen else {},
            "polled_at": seen["at"] if seen else None,
        }
    return out


def scheduler_status() -> dict[str, Any]:
    nodes = node_health()
    down = {url for url, node in nodes.items() if node["state"] != "up"}
    models = list(Model.objects.filter(enabled=True).order_by("public_id").prefetch_related("nodes"))
    urls = list(nodes)
    with sync_client().pipeline(transaction=False) as pipe:
        counts = [read_state(pipe, model.ollama_name, urls) for model in models]
        replies = pipe.execute()
    out_models = {}
    start = 0
    for model, count in zip(models, counts, strict=True):
        state = parse_state(replies[start:start + count], urls)
        start += count
        serving = [n.url for n in model.nodes.all() if n.enabled and n.healthy and n.url not in down]
        _, loading, wait_ms = forecast(sync_client(), model.ollama_name, model.concurrency, serving)
        avg_ms = state.avg_service_ms
        out_models[model.public_id] = {
            "ollama_name": model.ollama_name,
            "kind": model.kind,
            "pinned": model.pinned,
            "concurrency": model.concurrency,
            "max_queue": model.max_queue,
            "queue_depth": state.waiting,
            "oldest_wait_ms": state.oldest_wait_ms,
            "in_flight": sum(state.running.values()),
            "avg_call_ms": round(avg_ms) if avg_ms else None,
            # What a request arriving now would wait: the queue ahead of it through the slots the model
            # has or is loading (a load in progress counts), as the scheduler forecasts it.
            "typical_wait_ms": wait_ms if wait_ms >= 0 else None,
            "loading_on": loading,
            "nodes": {
                url: {"placement": state.placement.get(url, "not loaded"), "in_flight": count,
                      "loaded": model.ollama_name in nodes[url]["loaded"],
                      "memory_bytes": nodes[url]["loaded"].get(model.ollama_name, 0)}
                for url, count in state.running.items()
                if url in state.placement or count or model.ollama_name in nodes[url]["loaded"]
            },
        }
    for node in nodes.values():
        node["memory_used_bytes"] = sum(node["loaded"].values())
    return {"models": out_models, "nodes": nodes}
