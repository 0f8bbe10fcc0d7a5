"""The model catalogue as the hot path sees it: an in-process snapshot refreshed every few seconds.

Reading Model/Node rows on every request would put ORM work on the hot path; a snapshot a couple
of seconds old is fine because the catalogue changes only when an admin edits it or a node is polled.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from django.conf import settings

from inference.models import Model, NodeModel

SNAPSHOT_SECONDS = 2.0


@dataclass(frozen=True)
class ModelRoute:
    public_id: str
    ollama_name: str
    kind: str
    capabilities: tuple[str, ...]
    context_length: int
    concurrency: int
    max_queue: int
    created: int  # unix seconds, for /v1/models
    node_urls: tuple[str, ...]  # healthy, enabled nodes that have the model
    context_overflow: str = "error"  # Model.ContextOverflow: refuse (OpenAI) or cut (Ollama)

    @property
    def owned_by(self) -> str:
        namespace, _, _ = self.ollama_name.rpartition("/")
        return namespace or "library"


def _build_snapshot() -> dict[str, ModelRoute]:
    nodes_by_model: dict[int, list[str]] = {}
    present = NodeModel.objects.filter(node__enabled=True, node__healthy=True).values_list("model_id", "node__url")
    for model_id, url in present.order_by("node__url"):
        nodes_by_model.setdefault(model_id, []).append(url)
    return {
        m.public_id: ModelRoute(
            public_id=m.public_id,
            ollama_name=m.ollama_name,
            kind=m.kind,
            capabilities=tuple(m.capabilities or ()),
            context_length=m.context_length,
            concurrency=m.concurrency,
            max_queue=m.max_queue,
            created=int(m.created_at.timestamp()),
            node_urls=tuple(nodes_by_model.get(m.pk, ())),
            context_overflow=m.context_overflow,
        )
        for m in Model.objects.filter(enabled=True)
    }


class _Snapshot:
    def __init__(self) -> None:
        self.routes: dict[str, ModelRoute] = {}
        self.loaded_at = float("-inf")
        self.lock: asyncio.Lock | None = None

    async def get(self) -> dict[str, ModelRoute]:
        if time.monotonic() - self.loaded_at < SNAPSHOT_SECONDS:
            return self.routes
        if self.lock is None:
            self.lock = asyncio.Lock()
        async with self.lock:  # one refresh at a time, the others reuse its result
            if time.monotonic() - self.loaded_at >= SNAPSHOT_SECONDS:
                self.routes = await sync_to_async(_build_snapshot)()
                self.loaded_at = time.monotonic()
        return self.routes

    def invalidate(self) -> None:
        self.loaded_at = float("-inf")
        self.lock = None


_snapshot = _Snapshot()
invalidate = _snapshot.invalidate


async def all_models() -> list[ModelRoute]:
    return sorted((await _snapshot.get()).values(), key=lambda r: r.public_id)


async def get_model(public_id: str) -> ModelRoute | None:
    routes = await _snapshot.get()
    route = routes.get(public_id)
    if route is None and ":" not in public_id.rpartition("/")[2]:
        # As in Ollama, a name without a tag means the `latest` tag ("all-minilm" is "all-minilm:latest").
        route = routes.get(public_id + ":latest")
    return route


# Until the Redis scheduler lands, spread requests over a model's nodes in turn (per process).
_turns: dict[str, itertools.count] = {}


def pick_node(route: ModelRoute) -> str | None:
    if not route.node_urls:
        return None
    turn = next(_turns.setdefault(route.public_id, itertools.count()))
    return route.node_urls[turn % len(route.node_urls)]


def keep_alive() -> str:
    return settings.OLLAMA_KEEP_ALIVE
