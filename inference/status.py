"""What the scheduler is doing right now, for staff (/portal/api/status), the models page and /healthz.

Sync code for sync views: one pipelined read of the queue keys per call; no Redis state is changed.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import redis
from django.conf import settings

from inference.models import Model, Node
from inference.nodehealth import DOWN_KEY
from inference.queue import model_prefix, now_ms
from inference.swapper import PS_KEY


def _client() -> redis.Redis:
    return _client_for(settings.REDIS_URL)


@cache
def _client_for(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, decode_responses=True, socket_timeout=1, socket_connect_timeout=1)


def client() -> redis.Redis:
    """A synchronous client for sync views (/metrics, the dashboard's snapshot)."""
    return _client()


def redis_ok() -> bool:
    try:
        return bool(_client().ping())
    except (redis.RedisError, OSError):
        return False


def node_health() -> dict[str, dict[str, Any]]:
    """Per node: up or down (as the scheduler sees it), why, and what /api/ps said last."""
    down = _client().hgetall(DOWN_KEY)
    ps = _client().hgetall(PS_KEY)
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
    models = list(Model.objects.filter(enabled=True).order_by("public_id"))
    urls = list(nodes)
    client = _client()
    with client.pipeline(transaction=False) as pipe:
        for model in models:
            prefix = model_prefix(model.ollama_name)
            pipe.zcard(prefix + "enq")
            pipe.zrange(prefix + "enq", 0, 0, withscores=True)
            pipe.hgetall(prefix + "place")
            pipe.hget(prefix + "svc", "avg_ms")
            for url in urls:
                pipe.zcard(prefix + "run:" + url)
        replies = pipe.execute()
    per_model = 4 + len(urls)
    out_models = {}
    for i, model in enumerate(models):
        waiting, oldest, place, avg, *running = replies[i * per_model:(i + 1) * per_model]
        avg_ms = float(avg) if avg else None
        slots = model.concurrency * max(1, sum(1 for state in place.values() if state == "ready"))
        out_models[model.public_id] = {
            "ollama_name": model.ollama_name,
            "kind": model.kind,
            "pinned": model.pinned,
            "concurrency": model.concurrency,
            "max_queue": model.max_queue,
            "queue_depth": waiting,
            "oldest_wait_ms": max(0, now_ms() - int(oldest[0][1])) if oldest else 0,
            "in_flight": sum(running),
            "avg_call_ms": round(avg_ms) if avg_ms else None,
            # A newcomer waits for the queue ahead of it to drain through the model's slots.
            "typical_wait_ms": round(waiting * avg_ms / slots) if avg_ms else None,
            "nodes": {
                url: {"placement": place.get(url, "not loaded"), "in_flight": count,
                      "loaded": model.ollama_name in nodes[url]["loaded"],
                      "memory_bytes": nodes[url]["loaded"].get(model.ollama_name, 0)}
                for url, count in zip(urls, running, strict=True)
                if url in place or count or model.ollama_name in nodes[url]["loaded"]
            },
        }
    for node in nodes.values():
        node["memory_used_bytes"] = sum(node["loaded"].values())
    return {"models": out_models, "nodes": nodes}
