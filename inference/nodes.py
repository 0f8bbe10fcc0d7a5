"""One `ollama.AsyncClient` per Ollama node per event loop, reused so connections are pooled."""

from __future__ import annotations

import asyncio

import httpx
import ollama
from django.conf import settings

_clients: dict[tuple[int, str], ollama.AsyncClient] = {}


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


async def native_chat(client: ollama.AsyncClient, kwargs: dict, *, stream: bool):
    """POST /api/chat with our translated body exactly as built.

    `AsyncClient.chat()` re-validates `tools` through ollama-python's `Tool` model, which drops
    nested object `properties`, `anyOf` and `additionalProperties` from each tool's JSON schema, so
    the model would see incomplete schemas. The client's request method sends the body untouched
    and still gives us its streaming, error mapping (`ResponseError`) and response parsing.
    """
    body = {**kwargs, "stream": stream}
    return await client._request(ollama.ChatResponse, "POST", "/api/chat", json=body, stream=stream)


async def native_generate(client: ollama.AsyncClient, kwargs: dict, *, stream: bool):
    """POST /api/generate with our body as built: `AsyncClient.generate()` has no `truncate` or `shift`
    parameters, which inference/context_overflow.py needs to send."""
    body = {**kwargs, "stream": stream}
    return await client._request(ollama.GenerateResponse, "POST", "/api/generate", json=body, stream=stream)
