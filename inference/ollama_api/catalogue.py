"""The model routes' answers in Ollama's shapes: /api/tags, /api/show and /api/ps, from the catalogue.

A model appears under its public id, the name clients send. `details` come from what the nodes reported
at the last catalogue sync; `context_length` is the context Gatehouse serves the model with (every call
carries it), not the model's training maximum, so a client sizes its prompts to what will be accepted.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from asgiref.sync import sync_to_async

from common.store import keys
from common.store.client import REDIS_ERRORS, redis_client
from inference.models import Model, NodeModel
from inference.registry import ModelRoute


def _rows(public_ids: list[str]) -> dict[str, dict[str, Any]]:
    rows = {row["public_id"]: row for row in Model.objects.filter(public_id__in=public_ids).values(
        "public_id", "family", "parameter_size", "quantization", "updated_at")}
    digests = NodeModel.objects.filter(model__public_id__in=public_ids).exclude(digest="").values_list(
        "model__public_id", "digest")
    for public_id, digest in digests.order_by("node__url"):
        rows[public_id].setdefault("digest", digest.removeprefix("sha256:"))
    return rows


async def _details(routes: list[ModelRoute]) -> dict[str, dict[str, Any]]:
    # A listing, not the hot path: one query in the shared sync thread.
    return await sync_to_async(_rows)([route.public_id for route in routes])


def _iso(moment: datetime | None, fallback: int) -> str:
    return (moment or datetime.fromtimestamp(fallback, UTC)).astimezone(UTC).isoformat()


def _entry(route: ModelRoute, row: dict[str, Any]) -> dict[str, Any]:
    family = row.get("family") or ""
    # A model served only by OpenAI-compatible nodes has no Ollama digest: a stable stand-in keeps the field.
    digest = row.get("digest") or hashlib.sha256(route.public_id.encode()).hexdigest()
    return {
        "name": route.public_id, "model": route.public_id, "modified_at": _iso(row.get("updated_at"), route.created),
        "size": route.size_bytes, "digest": digest,
        "details": {"parent_model": "", "format": "gguf", "family": family, "families": [family] if family else None,
                    "parameter_size": row.get("parameter_size") or "",
                    "quantization_level": row.get("quantization") or ""},
        "capabilities": _capabilities(route),
    }


def _capabilities(route: ModelRoute) -> list[str]:
    if route.capabilities:
        return list(route.capabilities)
    return ["embedding"] if route.kind == "embedding" else ["completion"]


async def tags(routes: list[ModelRoute]) -> list[dict[str, Any]]:
    details = await _details(routes)
    return [_entry(route, details.get(route.public_id, {})) for route in routes]


async def show(route: ModelRoute) -> dict[str, Any]:
    entry = _entry(route, (await _details([route])).get(route.public_id, {}))
    architecture = entry["details"]["family"] or "unknown"
    return {
        "modelfile": f"# Served by Gatehouse\nFROM {route.public_id}\nPARAMETER num_ctx {route.context_length}\n",
        "parameters": f"num_ctx {route.context_length}",
        "template": "",
        "details": entry["details"],
        # Clients (Continue among them) read the context from `<architecture>.context_length`.
        "model_info": {"general.architecture": architecture,
                       f"{architecture}.context_length": route.context_length},
        "capabilities": entry["capabilities"],
        "modified_at": entry["modified_at"],
    }


async def running(routes: list[ModelRoute]) -> list[dict[str, Any]]:
    """The models of `routes` some node has loaded, from the nodes' last /api/ps (the swap actor polls it)."""
    by_name = {route.ollama_name: route for route in routes}
    try:
        seen = await redis_client().hgetall(keys.NODES_PS)
    except REDIS_ERRORS:
        return []
    loaded: dict[str, dict[str, Any]] = {}
    for report in seen.values():
        for model in json.loads(report).get("models", []):
            route = by_name.get(model.get("name"))
            if route is not None and route.public_id not in loaded:
                loaded[route.public_id] = {"size": model.get("size", 0), "size_vram": model.get("size_vram", 0),
                                           "expires_at": model.get("expires_at"), "route": route}
    if not loaded:
        return []
    details = await _details([item["route"] for item in loaded.values()])
    out = []
    for public_id, item in loaded.items():
        route = item.pop("route")
        entry = _entry(route, details.get(public_id, {}))
        out.append({**entry, "size": item["size"] or entry["size"], "size_vram": item["size_vram"],
                    "expires_at": item["expires_at"], "context_length": route.context_length})
    return out
