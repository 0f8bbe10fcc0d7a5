"""The model catalogue as the hot path sees it: an in-process snapshot refreshed every few seconds.

Reading Model/Node rows on every request would put ORM work on the hot path; a snapshot a couple
of seconds old is fine because the catalogue changes only when an admin edits it or a node is polled.
"""

from __future__ import annotations

import asyncio
import difflib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from asgiref.sync import sync_to_async
from django.conf import settings

from inference.models import Model, Node, NodeModel

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
    node_urls: tuple[str, ...]  # enabled nodes that have the model (nodehealth says which answer)
    pinned: bool = False  # loaded at start, kept loaded, never evicted
    size_bytes: int = 0  # weights on disk, the first guess at its memory before /api/ps measures it
    context_overflow: str = "error"  # Model.ContextOverflow: refuse (OpenAI) or cut (Ollama)
    # Sampling used when a request leaves it out (Model.default_*); None / () = the server's own default.
    default_temperature: float | None = None
    default_top_p: float | None = None
    default_max_tokens: int | None = None
    default_stop: tuple[str, ...] = ()
    # The name of the weights on the nodes: a larger-context variant shares its base's, and Ollama keeps
    # one runner per weights, so the two are never loaded on one node at once.
    weights: str = ""

    def shares_weights_with(self, other: ModelRoute) -> bool:
        return self is not other and (self.weights or self.ollama_name) == (other.weights or other.ollama_name)

    @property
    def owned_by(self) -> str:
        namespace, _, _ = self.ollama_name.rpartition("/")
        return namespace or "library"


def _build_snapshot() -> dict[str, ModelRoute]:
    nodes_by_model: dict[int, list[str]] = {}
    # Health is not filtered here: nodehealth (Redis) knows within a moment which nodes answer, while
    # Node.healthy is only as fresh as the last catalogue poll.
    present = NodeModel.objects.filter(node__enabled=True).values_list("model_id", "node__url")
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
            pinned=m.pinned,
            size_bytes=m.size_bytes,
            context_overflow=m.context_overflow,
            default_temperature=m.default_temperature,
            default_top_p=m.default_top_p,
            default_max_tokens=m.default_max_tokens,
            default_stop=tuple(m.default_stop or ()),
            weights=m.variant_of.ollama_name if m.variant_of_id else m.ollama_name,
        )
        for m in Model.objects.filter(enabled=True).select_related("variant_of")
    }


@dataclass(frozen=True)
class NodeInfo:
    url: str
    gpu_memory_bytes: int  # 0 = unknown: Gatehouse then never evicts to make room on it
    enabled: bool  # a disabled node is drained: no new work, running calls finish
    kind: str = "ollama"  # Node.Kind: which engine speaks to it (inference/engines/)
    # OpenAI-compatible servers that want a key (read from its env var or file); kept out of repr, so a
    # NodeInfo in a log line or a traceback does not carry the secret.
    api_key: str = field(default="", repr=False)
    name: str = ""  # the admin's name for it, if any: /v1/providers calls the node by it
    pk: int = 0  # Node.pk: the provider's id when it has no name
    max_loaded_models: int = 0  # the server's own limit on models held at once (0 = none)


def _build_nodes() -> list[NodeInfo]:
    return [NodeInfo(n.url, n.gpu_memory_bytes, n.enabled, n.kind, node_api_key(n), name=n.name, pk=n.pk,
                     max_loaded_models=n.max_loaded_models)
            for n in Node.objects.order_by("url")]


def node_api_key(node: Node) -> str:
    """The key an OpenAI-compatible node wants, from the environment variable or secret file the admin
    named. The key itself is never stored in the database, so the admin can never show it."""
    if node.api_key_env:
        return os.environ.get(node.api_key_env, "").strip()
    if node.api_key_file:
        try:
            return Path(node.api_key_file).read_text().strip()
        except OSError:
            return ""
    return ""


class _Snapshot:
    def __init__(self) -> None:
        self.routes: dict[str, ModelRoute] = {}
        self.nodes: list[NodeInfo] = []
        self.nodes_by_url: dict[str, NodeInfo] = {}
        self.loaded_at = float("-inf")
        self.lock: asyncio.Lock | None = None

    async def get(self) -> dict[str, ModelRoute]:
        if time.monotonic() - self.loaded_at < SNAPSHOT_SECONDS:
            return self.routes
        if self.lock is None:
            self.lock = asyncio.Lock()
        async with self.lock:  # one refresh at a time, the others reuse its result
            if time.monotonic() - self.loaded_at >= SNAPSHOT_SECONDS:
                self.routes, self.nodes = await sync_to_async(_build_both)()
                self.nodes_by_url = {n.url: n for n in self.nodes}
                self.loaded_at = time.monotonic()
        return self.routes

    def invalidate(self) -> None:
        self.loaded_at = float("-inf")
        self.lock = None


def _build_both() -> tuple[dict[str, ModelRoute], list[NodeInfo]]:
    return _build_snapshot(), _build_nodes()


_snapshot = _Snapshot()
invalidate = _snapshot.invalidate


async def all_models() -> list[ModelRoute]:
    return sorted((await _snapshot.get()).values(), key=lambda r: r.public_id)


async def served_models() -> list[ModelRoute]:
    """The models some enabled node has: what a client is shown. A model with no node yet (a variant
    whose row is saved while it is still being created on the nodes, or one whose nodes are all drained)
    would only answer "no GPU server is serving it"."""
    return [route for route in await all_models() if route.node_urls]


async def all_nodes() -> list[NodeInfo]:
    await _snapshot.get()
    return _snapshot.nodes


async def node_info(url: str) -> NodeInfo | None:
    await _snapshot.get()
    return _snapshot.nodes_by_url.get(url)


async def get_model(public_id: str) -> ModelRoute | None:
    return find_model(await _snapshot.get(), public_id)


async def models_by_id() -> dict[str, ModelRoute]:
    """The snapshot's routes by public id, for code that looks up many ids without awaiting each (batch
    files, batches/validation.py): pass it to `find_model`."""
    return dict(await _snapshot.get())


def find_model(routes: dict[str, ModelRoute], public_id: str) -> ModelRoute | None:
    route = routes.get(public_id)
    if route is None and ":" not in public_id.rpartition("/")[2]:
        # As in Ollama, a name without a tag means the `latest` tag ("all-minilm" is "all-minilm:latest").
        route = routes.get(public_id + ":latest")
    return route


def closest_ids(wanted: str, ids: list[str], limit: int = 3) -> list[str]:
    """The ids a person most likely meant: the same name with another tag first (`llama3.2` when only
    `llama3.2:3b` is served), then the closest spellings."""
    base = wanted.partition(":")[0].lower()
    same_name = sorted(i for i in ids if i.partition(":")[0].lower() == base)
    close = difflib.get_close_matches(wanted.lower(), [i.lower() for i in ids], n=limit, cutoff=0.6)
    by_lower = {i.lower(): i for i in ids}
    out = same_name + [by_lower[c] for c in close if by_lower[c] not in same_name]
    return out[:limit]


def keep_alive_for(route: ModelRoute) -> str | int:
    # Pinned models must never be unloaded by Ollama's idle timer.
    return -1 if route.pinned else settings.OLLAMA_KEEP_ALIVE
