"""The Ollama engine: Ollama's native API, with explicit loads and unloads.

Requests are translated to the native API (inference/engines/ollama_translate.py) rather than passed to Ollama's own
/v1 layer, so every call carries the model's `num_ctx` and `keep_alive` (a different num_ctx makes
Ollama reload the model) and Gatehouse decides what is loaded. One `ollama.AsyncClient` per node per
event loop is reused so connections are pooled. The catalogue sync (Celery, sync code) uses
`sync_client` and `version`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
import ollama
from django.conf import settings

from common.apierrors import ApiError
from inference import registry
from inference.engines.base import LoadRefused, NodeFailure
from inference.engines.node_errors import from_node
from inference.engines.ollama_translate import (
    chat_request_to_ollama,
    completion_request_to_ollama,
    kwargs_for_choice,
)
from inference.engines.parts import Embeddings, Part, TokenLogprob, ToolCall
from inference.engines.request import CHAT, COMPLETION, EMBEDDING, GenerationRequest
from inference.openai_api import context_overflow
from inference.registry import ModelRoute, NodeInfo

_clients: dict[tuple[int, str], ollama.AsyncClient] = {}

# Failures of the node itself rather than of the request: it refused the connection, timed out, or
# dropped the connection (a crashed or killed server). ollama-python raises ConnectionError when it
# cannot connect.
NODE_FAILURES = (ConnectionError, httpx.TransportError)
_PATHS = {CHAT: ("/api/chat", ollama.ChatResponse), COMPLETION: ("/api/generate", ollama.GenerateResponse)}


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


def request_error(exc: BaseException, node: str, model: str) -> BaseException:
    """What the pipeline should see instead of the client library's exception."""
    if isinstance(exc, NODE_FAILURES):
        return NodeFailure(node, exc)
    if isinstance(exc, ollama.ResponseError):
        return from_node(exc.status_code, exc.error, model)
    if isinstance(exc, httpx.HTTPError):
        return ApiError.backend_unavailable(
            "The model server is not reachable right now. Please retry shortly.", retry_after=5)
    return exc


# -- native responses -> canonical parts ------------------------------------------------------------


def arguments_json(arguments: Mapping[str, Any]) -> str:
    # OpenAI's `arguments` is a JSON *string*; LangChain and both SDKs json.loads it.
    return json.dumps(dict(arguments), ensure_ascii=False, separators=(",", ":"))


def _logprobs(entries) -> tuple[TokenLogprob, ...]:
    return tuple(
        TokenLogprob(e.token, e.logprob, tuple(TokenLogprob(t.token, t.logprob) for t in e.top_logprobs or ()))
        for e in entries or ()
    )


def part_from_native(resp: ollama.ChatResponse | ollama.GenerateResponse) -> Part:
    """A chat or generate response (a stream part, or a whole answer) as a canonical part."""
    message = getattr(resp, "message", None)
    text = (message.content if message is not None else resp.response) or ""
    calls = tuple(ToolCall(c.function.name, arguments_json(c.function.arguments))
                  for c in (message.tool_calls if message is not None else None) or ())
    done = bool(resp.done)
    return Part(
        text=text,
        thinking=(message.thinking if message is not None else resp.thinking) or "",
        tool_calls=calls,
        logprobs=_logprobs(resp.logprobs),
        done=done,
        # Ollama says "length" for both num_predict and a full context; everything else is a stop.
        finish_reason=("length" if resp.done_reason == "length" else "stop") if done else None,
        prompt_tokens=resp.prompt_eval_count if done else None,
        completion_tokens=resp.eval_count if done else None,
        gpu_ns=sum(getattr(resp, name, None) or 0 for name in ("load_duration", "prompt_eval_duration",
                                                              "eval_duration")),
    )


class OllamaEngine:
    kind = "ollama"

    def prepare(self, request: GenerationRequest) -> list[dict[str, Any]]:
        route, body = request.route, request.body
        keep_alive = registry.keep_alive_for(route)
        if request.operation == EMBEDDING:
            return [{"model": route.ollama_name, "input": list(request.texts), "truncate": True,
                     "options": {"num_ctx": route.context_length}, "keep_alive": keep_alive}]
        if request.operation == CHAT:
            bases = [chat_request_to_ollama(body, ollama_model=route.ollama_name, num_ctx=route.context_length,
                                            keep_alive=keep_alive)]
        else:
            bases = [completion_request_to_ollama(body, prompt, ollama_model=route.ollama_name,
                                                  num_ctx=route.context_length, keep_alive=keep_alive)
                     for prompt in request.texts]
        for base in bases:
            base.update(context_overflow.request_fields(route))
        return [kwargs_for_choice(base, body.seed, choice) for base in bases for choice in range(request.choices)]

    async def stream(self, node: NodeInfo, operation: str, payload: dict[str, Any]) -> AsyncIterator[Part]:
        path, cls = _PATHS[operation]
        iterator = None
        try:
            # The client's request method sends our body untouched: `AsyncClient.chat()` re-validates
            # `tools` and drops nested schema keywords, and `generate()` has no `truncate` or `shift`.
            iterator = await client_for(node.url)._request(cls, "POST", path, json={**payload, "stream": True},
                                                            stream=True)
            async for resp in iterator:
                yield part_from_native(resp)
        except (*NODE_FAILURES, ollama.ResponseError, httpx.HTTPError) as exc:
            raise request_error(exc, node.url, payload["model"]) from exc
        finally:
            # Closing the generator closes its HTTP response, which stops Ollama generating.
            if iterator is not None:
                await iterator.aclose()

    async def call(self, node: NodeInfo, operation: str, payload: dict[str, Any]) -> Part | Embeddings:
        client = client_for(node.url)
        try:
            if operation == EMBEDDING:
                result = await client.embed(**payload)
                return Embeddings([list(v) for v in result.embeddings], result.prompt_eval_count or 0)
            path, cls = _PATHS[operation]
            return part_from_native(await client._request(cls, "POST", path, json={**payload, "stream": False},
                                                          stream=False))
        except (*NODE_FAILURES, ollama.ResponseError, httpx.HTTPError) as exc:
            raise request_error(exc, node.url, payload["model"]) from exc

    # -- what is loaded, loads and unloads ------------------------------------------------------------

    def can_swap(self, node: NodeInfo) -> bool:
        return True

    async def loaded(self, node: NodeInfo) -> list[dict[str, Any]]:
        """GET /api/ps: the models loaded now, with their memory (`size_vram`). Callers bound the wait."""
        try:
            listing = await client_for(node.url).ps()
        except (*NODE_FAILURES, ollama.ResponseError, httpx.HTTPError) as exc:
            raise NodeFailure(node.url, exc) from exc
        return [{"name": m.model or m.name or "", "size": m.size or 0, "size_vram": m.size_vram or 0,
                 "expires_at": m.expires_at.isoformat() if m.expires_at else None} for m in listing.models]

    async def load(self, node: NodeInfo, route: ModelRoute) -> None:
        """Load a model with the options and fields requests will use: a different num_ctx, or since Ollama
        v0.30 a different `shift`, makes Ollama reload it (server/sched.go needsReload).

        An empty generate request loads a model and answers `done_reason: "load"` once it runs; embedding
        models have no generate capability, so an embed request without input loads them.
        """
        client = client_for(node.url)
        options = {"num_ctx": route.context_length}
        keep_alive = registry.keep_alive_for(route)
        try:
            if route.kind == "embedding":
                await client.embed(model=route.ollama_name, input=[], options=options, keep_alive=keep_alive)
            else:
                body = {"model": route.ollama_name, "options": options, "keep_alive": keep_alive, "stream": False,
                        **context_overflow.request_fields(route)}
                await client._request(ollama.GenerateResponse, "POST", "/api/generate", json=body, stream=False)
        except NODE_FAILURES as exc:
            raise NodeFailure(node.url, exc) from exc
        except ollama.ResponseError as exc:
            raise LoadRefused(exc.status_code, exc.error) from exc
        except httpx.HTTPError as exc:
            raise LoadRefused(502, str(exc)) from exc

    async def unload(self, node: NodeInfo, name: str) -> None:
        """`keep_alive: 0` with nothing to generate unloads at once (after requests in flight finish)."""
        try:
            await client_for(node.url).generate(model=name, keep_alive=0)
        except (*NODE_FAILURES, ollama.ResponseError, httpx.HTTPError) as exc:
            raise request_error(exc, node.url, name) from exc


ENGINE = OllamaEngine()


# -- the catalogue sync (Celery: sync code) ------------------------------------------------------------


def sync_client(node_url: str, read_timeout: float = 30.0) -> ollama.Client:
    timeout = httpx.Timeout(read_timeout, connect=settings.OLLAMA_CONNECT_TIMEOUT)
    return ollama.Client(host=node_url, timeout=timeout)


def version(node_url: str) -> str:
    timeout = httpx.Timeout(10.0, connect=settings.OLLAMA_CONNECT_TIMEOUT)
    response = httpx.get(f"{node_url}/api/version", timeout=timeout)
    response.raise_for_status()
    return str(response.json().get("version", ""))
