"""Discover models on every Ollama node and keep the Node / Model tables in step.

Runs in Celery (beat, and once when a worker starts) and from `manage.py syncmodels`, so it uses
the synchronous ollama client; it never runs on the request path.
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

from common.store.client import sync_client
from inference import nodes
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
    """Create a Node for each OLLAMA_NODES entry; never touch nodes an admin added or edited."""
    for url in settings.OLLAMA_NODES:
        Node.objects.get_or_create(url=normalise_node_url(url))


SYNC_LOCK_KEY = "gh:catalogue-sync-lock"
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
        lock = sync_client().lock(SYNC_LOCK_KEY, timeout=SYNC_LOCK_SECONDS, blocking_timeout=wait)
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


def _context_length(show: ollama.ShowResponse) -> int:
    for key, value in (show.modelinfo or {}).items():
        if key.endswith(".context_length") and isinstance(value, int):
            return value
    return 0


def sync_node(node: Node) -> NodeReport:
    client = nodes.sync_client(node.url)
    try:
        version = nodes.version(node.url)
        listing = client.list()
        shown = {entry.model: client.show(entry.model) for entry in listing.models if entry.model}
    except (ConnectionError, httpx.HTTPError, ollama.ResponseError, ValueError) as exc:
        # Unhealthy, not deleted: the node and its models come back when it answers again.
        message = str(exc) or exc.__class__.__name__
        Node.objects.filter(pk=node.pk).update(healthy=False, last_error=message[:2000])
        log.warning("Ollama node %s did not answer: %s", node.url, message)
        return NodeReport(url=node.url, healthy=False, error=message)

    with transaction.atomic():
        present: list[int] = []
        for entry in listing.models:
            if not entry.model:
                continue
            model = _upsert_model(entry, shown[entry.model])
            NodeModel.objects.update_or_create(
                node=node, model=model, defaults={"digest": entry.digest or "", "size_bytes": entry.size or 0}
            )
            present.append(model.pk)
        NodeModel.objects.filter(node=node).exclude(model_id__in=present).delete()
        Node.objects.filter(pk=node.pk).update(
            healthy=True, last_seen_at=timezone.now(), last_error="", version=str(version)[:40]
        )
    return NodeReport(url=node.url, healthy=True, models=[e.model for e in listing.models if e.model])


def _upsert_model(entry: ollama.ListResponse.Model, show: ollama.ShowResponse) -> Model:
    capabilities = list(show.capabilities or ["completion"])
    trained_context = _context_length(show)
    details = entry.details
    derived = {
        "capabilities": capabilities,
        "max_context_length": trained_context,
        "size_bytes": entry.size or 0,
        "family": (details.family if details else "") or "",
        "parameter_size": (details.parameter_size if details else "") or "",
        "quantization": (details.quantization_level if details else "") or "",
    }
    model = Model.objects.filter(ollama_name=entry.model).first()
    if model is not None:
        # Only what Ollama reports is refreshed; public id, kind, limits and context stay as the admin set them.
        for name, value in derived.items():
            setattr(model, name, value)
        model.save(update_fields=[*derived, "updated_at"])
        return model
    context = settings.DEFAULT_CONTEXT_LENGTH
    if trained_context:
        context = min(context, trained_context)
    public_id = entry.model
    if Model.objects.filter(public_id=public_id).exists():
        public_id = f"{entry.model}@{Model.objects.count()}"
    return Model.objects.create(
        ollama_name=entry.model,
        public_id=public_id,
        kind=Model.kind_from_capabilities(capabilities),
        context_length=context,
        **derived,
    )
