"""Every call Gatehouse makes to an Ollama node goes through this module.

The request path uses one `ollama.AsyncClient` per node per event loop, reused so connections are
pooled. The swap actor uses the same clients to preload, unload and read `/api/ps`. The catalogue
sync (Celery, sync code) uses `sync_client` and `version`.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import ollama
from django.conf import settings

_clients: dict[tuple[int, str], ollama.AsyncClient] = {}

# What a call to a node can fail with: Ollama's own errors (HTTP status or an error line in a stream),
# transport errors, and the ConnectionError ollama-python raises when it cannot connect.
UPSTREAM_ERRORS = (ollama.ResponseError, httpx.HTTPError, ConnectionError)
# Failures of the node itself rather than of the request: it refused the connection, timed out, or
# dropped the connection (a crashed or killed server). The request path takes such a node out.
NODE_FAILURES = (ConnectionError, httpx.TransportError)


def client_for(node_url: str) -> ollama.AsyncClient:
    # httpx connection pools belong to the loop that created them; daphne has one loop, tests may have many.
    key = (id(asyncio.get_running_loop()), node_url)
    client = _clients.get(key)
    if client is None:
        timeout = httpx.Timeout(settings.OLLAMA_READ_TIMEOUT, connect=settings.OLLAMA_CONNECT_TIMEOUT)
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=64)
        client = ollama.AsyncClient(host=node_url, timeout=timeout, limits=limits)
        _clients[key] = client
    return client


async def chat(client: ollama.AsyncClient, kwargs: dict, *, stream: bool):
    """POST /api/chat with our translated body exactly as built.

    `AsyncClient.chat()` re-validates `tools` through ollama-python's `Tool` model, which drops
    nested object `properties`, `anyOf` and `additionalProperties` from each tool's JSON schema, so
    the model would see incomplete schemas. The client's request method sends the body untouched
    and still gives us its streaming, error mapping (`ResponseError`) and response parsing.
    """
    body = {**kwargs, "stream": stream}
    return await client._request(ollama.ChatResponse, "POST", "/api/chat", json=body, stream=stream)


async def generate(client: ollama.AsyncClient, kwargs: dict, *, stream: bool):
    return await client.generate(**kwargs, stream=stream)


async def embed(client: ollama.AsyncClient, kwargs: dict):
    return await client.embed(**kwargs)


async def preload(node_url: str, model: str, *, embedding: bool, num_ctx: int, keep_alive: str | int) -> None:
    """Load a model with the options requests will use (a different num_ctx would make Ollama reload).

    An empty generate request loads a model and answers `done_reason: "load"` once it runs; embedding
    models have no generate capability, so an embed request without input loads them.
    """
    client = client_for(node_url)
    options = {"num_ctx": num_ctx}
    if embedding:
        await client.embed(model=model, input=[], options=options, keep_alive=keep_alive)
    else:
        await client.generate(model=model, options=options, keep_alive=keep_alive)


async def unload(node_url: str, model: str) -> None:
    """`keep_alive: 0` with nothing to generate unloads at once (after requests in flight finish)."""
    await client_for(node_url).generate(model=model, keep_alive=0)


async def running(node_url: str) -> list[dict[str, Any]]:
    """GET /api/ps: the models loaded now, with their memory (`size_vram`). Callers bound the wait."""
    listing = await client_for(node_url).ps()
    return [{"name": m.model or m.name or "", "size": m.size or 0, "size_vram": m.size_vram or 0,
             "expires_at": m.expires_at.isoformat() if m.expires_at else None} for m in listing.models]


def sync_client(node_url: str, read_timeout: float = 30.0) -> ollama.Client:
    timeout = httpx.Timeout(read_timeout, connect=settings.OLLAMA_CONNECT_TIMEOUT)
    return ollama.Client(host=node_url, timeout=timeout)


def version(node_url: str) -> str:
    timeout = httpx.Timeout(10.0, connect=settings.OLLAMA_CONNECT_TIMEOUT)
    response = httpx.get(f"{node_url}/api/version", timeout=timeout)
    response.raise_for_status()
    return str(response.json().get("version", ""))
