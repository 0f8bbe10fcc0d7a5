"""GET /v1/providers and /v1/providers/{id}/models: the inference servers (nodes) behind the gateway, their
state, and the models each serves.

Two audiences. A key holder sees only the providers that serve a model the key may use, and only those
models: the list answers "where can my requests go, and is it up?" without revealing the rest of the
fleet. Staff (a signed-in staff session, as on the dashboard) see every provider with its URL; a URL is
internal network detail, so no key ever gets one, whoever owns the key.

Everything comes from the registry's snapshot and Redis; no sync ORM runs here.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import import_module

from django.conf import settings
from django.contrib import auth

from common.apierrors import ApiError
from common.store import keys
from common.store.client import REDIS_ERRORS, redis_client
from inference import registry
from inference.caller import authenticate
from inference.registry import ModelRoute, NodeInfo
from inference.scheduler import nodehealth
from inference.views import model_object
from inference.web.api import api_endpoint, json_response

# Headers a client sends a key in (apiaccess/auth.py reads these): any of them means "judge me by the key".
_KEY_HEADERS = ("Authorization", "api-key", "x-api-key")


@dataclass(frozen=True)
class Viewer:
    staff: bool
    may_use: Callable[[str], bool]


STAFF = Viewer(staff=True, may_use=lambda public_id: True)


async def viewer_of(request) -> Viewer:
    """Staff when a signed-in staff session sends no key; otherwise the key's holder (or the usual 401).

    A request that carries a key is judged by the key even when a staff member sends it, so a script
    holding a staff member's key sees what any key sees."""
    if not any(header in request.headers for header in _KEY_HEADERS) and await _signed_in_staff(request):
        return STAFF
    caller = await authenticate(request)
    return Viewer(staff=False, may_use=caller.may_use)


async def _signed_in_staff(request) -> bool:
    # API paths run without Django's session and auth middleware (portal/asgi.py), so the session is
    # read here, and only for these two read-only GET routes: no state changes, so no CSRF question.
    session_key = request.COOKIES.get(settings.SESSION_COOKIE_NAME)
    if not session_key:
        return False
    request.session = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    user = await auth.aget_user(request)  # checks the session's password hash, as the middleware does
    return bool(user.is_active and user.is_staff)


def provider_ids(nodes: Iterable[NodeInfo]) -> dict[str, str]:
    """Each node's public id, by URL: its name, or its pk when it has none. A name two nodes share, or
    one that reads as another node's pk, would make an id point at two providers; those nodes go by pk."""
    nodes = list(nodes)
    pks = {str(node.pk) for node in nodes}
    names = [node.name for node in nodes if node.name]
    return {node.url: node.name if node.name and names.count(node.name) == 1 and node.name not in pks
            else str(node.pk) for node in nodes}


def node_status(node: NodeInfo, down: set[str]) -> str:
    # Draining is the admin's decision and holds whatever the health checks say; down/up is the health
    # check's word on a node that should be serving.
    if not node.enabled:
        return "draining"
    return "down" if node.url in down else "up"


def models_on(node: NodeInfo, routes: Iterable[ModelRoute], viewer: Viewer) -> list[ModelRoute]:
    """The models the viewer may use that the node serves. A draining node takes no new requests, so the
    registry lists no models on it and neither does this."""
    return [r for r in routes if node.url in r.node_urls and viewer.may_use(r.public_id)]


def provider_object(node: NodeInfo, provider_id: str, status: str, routes: list[ModelRoute],
                    viewer: Viewer) -> dict:
    provider = {"id": provider_id, "object": "provider", "kind": node.kind, "status": status,
                "models": [r.public_id for r in routes]}
    if viewer.staff:
        provider["url"] = node.url
    return provider


async def _down_urls() -> set[str]:
    try:
        return set(await nodehealth.down_nodes())
    except REDIS_ERRORS:
        # Redis is unreachable: this process's mirror of it (kept by the scheduler) is the best left.
        return {node.url for node in await registry.all_nodes() if nodehealth.is_down(node.url)}


async def _loaded_on(url: str) -> set[str] | None:
    """The model names the node's last /api/ps listed, or None when nobody knows (never polled, not a
    server that reports it, or Redis unreachable)."""
    try:
        seen = await redis_client().hget(keys.NODES_PS, url)
    except REDIS_ERRORS:
        return None
    if not seen:
        return None
    try:
        return {model["name"] for model in json.loads(seen)["models"]}
    except (ValueError, KeyError, TypeError):
        return None


async def visible_providers(viewer: Viewer) -> list[tuple[NodeInfo, str, list[ModelRoute]]]:
    """(node, id, models) for each provider the viewer may see: staff every node; a key holder the nodes
    that serve one of the key's models."""
    nodes = await registry.all_nodes()
    routes = await registry.all_models()
    ids = provider_ids(nodes)
    shown = [(node, ids[node.url], models_on(node, routes, viewer)) for node in nodes]
    return [entry for entry in shown if viewer.staff or entry[2]]


async def list_providers(viewer: Viewer) -> list[dict]:
    down = await _down_urls()
    return [provider_object(node, provider_id, node_status(node, down), routes, viewer)
            for node, provider_id, routes in await visible_providers(viewer)]


async def provider_models(viewer: Viewer, provider_id: str) -> list[dict]:
    for node, candidate, routes in await visible_providers(viewer):
        if candidate == provider_id:
            # What the node last reported is stale once it is down: say "unknown", not a guess.
            loaded = None if node.url in await _down_urls() else await _loaded_on(node.url)
            return [{**model_object(r), "context_length": r.context_length,
                     "loaded": None if loaded is None else r.ollama_name in loaded} for r in routes]
    # Unknown and not-yours look the same, so a key cannot probe for providers it may not see.
    raise ApiError.not_found(f"No provider '{provider_id}'. GET /v1/providers lists the providers you may use.")


@api_endpoint("GET")
async def providers(request):
    return json_response({"object": "list", "data": await list_providers(await viewer_of(request))})


@api_endpoint("GET")
async def models_of_provider(request, provider_id: str):
    return json_response({"object": "list", "data": await provider_models(await viewer_of(request), provider_id)})
