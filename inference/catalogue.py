"""Discover models on every node and keep the Node / Model tables in step.

Ollama nodes are read with /api/tags and /api/show (and given the larger-context variants staff
published, inference/variants.py), OpenAI-compatible servers with /v1/models (and
llama-server's /props). Runs in Celery (beat, and once when a worker starts) and from
`manage.py syncmodels`, so it uses synchronous clients; it never runs on the request path.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field

import httpx
import ollama
import redis
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from common.store import keys
from common.store.client import sync_client
from inference import registry, variants
from inference.engines import ollama as ollama_engine
from inference.engines import openai as openai_engine
from inference.models import Model, Node, NodeModel

log = logging.getLogger(__name__)


@dataclass
class NodeReport:
    url: str
    healthy: bool
    models: list[str] = field(default_factory=list)
    error: str = ""


def normalise_node_url(url: str) -> str:
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = "http://" + url
    return url


def seed_nodes_from_settings() -> None:
    """Create a Node for each OLLAMA_NODES and OPENAI_NODES entry; never touch nodes an admin added or edited."""
    for url in settings.OLLAMA_NODES:
        Node.objects.get_or_create(url=normalise_node_url(url))
    for url in settings.OPENAI_NODES:
        # An OpenAI-compatible base URL is often given with its /v1; the engine adds /v1 itself.
        base = normalise_node_url(url).removesuffix("/v1")
        Node.objects.get_or_create(url=base, defaults={"kind": Node.Kind.OPENAI})


SYNC_LOCK_SECONDS = 300  # a sync that died with the lock held frees it after this long


def sync_catalogue(wait: float | None = None) -> list[NodeReport]:
    """Sync every node's models into the database; one sync at a time across all processes.

    Two syncs at once (beat's periodic task and `make run` starting, or two starts) write the same
    rows and fight over SQLite's lock. A sync that finds another running waits up to `wait` seconds
    (CATALOGUE_SYNC_WAIT_SECONDS by default), then returns [] and leaves the work to the one running.
    Without Redis there is nobody to agree with, so it runs anyway.
    """
    wait = settings.CATALOGUE_SYNC_WAIT_SECONDS if wait is None else wait
    try:
        lock = sync_client().lock(keys.CATALOGUE_SYNC_LOCK, timeout=SYNC_LOCK_SECONDS, blocking_timeout=wait)
        acquired = lock.acquire(blocking=wait > 0)
    except redis.RedisError as exc:
        log.warning("catalogue sync without the Redis lock (%s)", exc)
        return _sync_all()
    if not acquired:
        log.info("another catalogue sync is running; skipping this one")
        return []
    try:
        return _sync_all()
    finally:
        with contextlib.suppress(redis.RedisError):
            lock.release()


def _sync_all() -> list[NodeReport]:
    seed_nodes_from_settings()
    return [sync_node(node) for node in Node.objects.all()]


@dataclass
class Listing:
    """What a node serves, as the catalogue records it, whatever its kind."""

    version: str
    entries: list[ListedModel]


@dataclass
class ListedModel:
    name: str  # the name on the node
    digest: str
    size_bytes: int
    derived: dict  # fields the node reports, refreshed on every sync
    kind: str  # Model.Kind for a model seen for the first time
    context_length: int = 0  # the node's context per request, when it says (0 = unknown)
    concurrency: int = 0  # the node's parallel slots, when it says (0 = unknown)


def _context_length(show: ollama.ShowResponse) -> int:
    for key, value in (show.modelinfo or {}).items():
        if key.endswith(".context_length") and isinstance(value, int):
            return value
    return 0


def _ollama_listing(node: Node) -> Listing:
    client = ollama_engine.sync_client(node.url)
    version = ollama_engine.version(node.url)
    listed = [entry for entry in client.list().models if entry.model]
    if variants.reconcile(client, node.url, [entry.model for entry in listed]):
        listed = [entry for entry in client.list().models if entry.model]
    entries = []
    for entry in listed:
        show = client.show(entry.model)
        capabilities = list(show.capabilities or ["completion"])
        details = entry.details
        derived = {
            "capabilities": capabilities,
            "max_context_length": _context_length(show),
            "size_bytes": entry.size or 0,
            "family": (details.family if details else "") or "",
            "parameter_size": (details.parameter_size if details else "") or "",
            "quantization": (details.quantization_level if details else "") or "",
        }
        entries.append(ListedModel(entry.model, entry.digest or "", entry.size or 0, derived,
                                   Model.kind_from_capabilities(capabilities)))
    return Listing(version, entries)


def _openai_listing(node: Node) -> Listing:
    """An OpenAI-compatible server's /v1/models, with what llama-server adds: each model's `meta` (its
    context per slot, trained context, size) and /props (its parallel slots, its build)."""
    headers = openai_engine.auth_headers(registry.node_api_key(node))
    timeout = httpx.Timeout(10.0, connect=settings.OLLAMA_CONNECT_TIMEOUT)
    response = httpx.get(f"{node.url}/v1/models", headers=headers, timeout=timeout)
    response.raise_for_status()
    data = response.json().get("data")
    if not isinstance(data, list):
        raise ValueError("the server's /v1/models has no `data` list")
    props: dict = {}
    with contextlib.suppress(httpx.HTTPError, ValueError):
        answer = httpx.get(f"{node.url}/props", headers=headers, timeout=timeout)
        if answer.status_code == 200:
            props = answer.json()
    if not isinstance(props, dict):
        props = {}
    slots = props.get("total_slots") if isinstance(props.get("total_slots"), int) else 0
    entries = []
    for item in data:
        name = item.get("id") if isinstance(item, dict) else None
        if not name:
            continue
        meta = item.get("meta") if isinstance(item.get("meta"), dict) else {}
        launch = _router_launch(item)
        # No server says whether a model embeds; the name usually does, and an admin can change the kind.
        kind = Model.Kind.EMBEDDING if "embed" in name.lower() else Model.Kind.CHAT
        derived = {
            "capabilities": ["embedding"] if kind == Model.Kind.EMBEDDING else ["completion"],
            "max_context_length": int(meta.get("n_ctx_train") or 0),
            "size_bytes": int(meta.get("size") or 0),
            "family": str(item.get("owned_by") or "")[:100],
            "parameter_size": _parameters(meta.get("n_params")),
            "quantization": str(meta.get("ftype") or "")[:40],
        }
        context = int(meta.get("n_ctx") or 0) or launch.get("context", 0)
        entries.append(ListedModel(name, "", derived["size_bytes"], derived, kind, context_length=context,
                                   concurrency=launch.get("parallel", 0) or slots))
    return Listing(str(props.get("build_info") or ""), entries)


def _router_launch(item: dict) -> dict[str, int]:
    """What llama-server's router mode says about a model it has not loaded: the arguments its child
    process gets (`status.args`), of which the context and the parallel slots matter here. Each slot gets
    ctx-size / parallel tokens."""
    args = (item.get("status") or {}).get("args") if isinstance(item.get("status"), dict) else None
    if not isinstance(args, list):
        return {}
    values = {}
    for flag, name in (("--ctx-size", "ctx"), ("-c", "ctx"), ("--parallel", "parallel"), ("-np", "parallel")):
        if flag in args[:-1]:
            with contextlib.suppress(ValueError):
                values[name] = int(args[args.index(flag) + 1])
    parallel = values.get("parallel", 0)
    context = values.get("ctx", 0) // max(parallel, 1) if values.get("ctx") else 0
    return {"context": context, "parallel": parallel}


def _parameters(count) -> str:
    if not isinstance(count, int) or count <= 0:
        return ""
    return f"{count / 1e9:.1f}B" if count >= 1e9 else f"{count / 1e6:.0f}M"


def sync_node(node: Node) -> NodeReport:
    try:
        listing = _openai_listing(node) if node.kind == Node.Kind.OPENAI else _ollama_listing(node)
    except (ConnectionError, httpx.HTTPError, ollama.ResponseError, ValueError, AttributeError) as exc:
        # Unhealthy, not deleted: the node and its models come back when it answers again.
        message = str(exc) or exc.__class__.__name__
        Node.objects.filter(pk=node.pk).update(healthy=False, last_error=message[:2000])
        log.warning("node %s did not answer: %s", node.url, message)
        return NodeReport(url=node.url, healthy=False, error=message)

    with transaction.atomic():
        present: list[int] = []
        for entry in listing.entries:
            model = _upsert_model(entry)
            NodeModel.objects.update_or_create(
                node=node, model=model, defaults={"digest": entry.digest, "size_bytes": entry.size_bytes}
            )
            present.append(model.pk)
        NodeModel.objects.filter(node=node).exclude(model_id__in=present).delete()
        Node.objects.filter(pk=node.pk).update(
            healthy=True, last_seen_at=timezone.now(), last_error="", version=listing.version[:40]
        )
    return NodeReport(url=node.url, healthy=True, models=[e.name for e in listing.entries])


def _upsert_model(entry: ListedModel) -> Model:
    model = Model.objects.filter(ollama_name=entry.name).first()
    if model is not None:
        # Only what the node reports is refreshed; public id, kind, limits and context stay as the admin set them.
        for name, value in entry.derived.items():
            setattr(model, name, value)
        model.save(update_fields=[*entry.derived, "updated_at"])
        return model
    context = settings.DEFAULT_CONTEXT_LENGTH
    for known in (entry.derived["max_context_length"], entry.context_length):
        if known:
            context = min(context, known)
    public_id = entry.name
    if Model.objects.filter(public_id=public_id).exists():
        public_id = f"{entry.name}@{Model.objects.count()}"
    # A server that says how many requests it runs at once sets the bound; more would wait in its own
    # queue, out of Gatehouse's sight.
    extra = {"concurrency": entry.concurrency} if entry.concurrency else {}
    return Model.objects.create(ollama_name=entry.name, public_id=public_id, kind=entry.kind,
                                context_length=context, **entry.derived, **extra)
