"""The OpenAI-compatible engine: llama.cpp's llama-server, vLLM, SGLang, TGI, LM Studio, another
Gatehouse, or a hosted provider.

Requests go through in OpenAI's own form, with Gatehouse's rules applied on the way: the upstream model
name, one call per choice (each holds a queue slot; the choice's seed as for Ollama), `max_tokens`
clamped to the model's context, usage always asked for in streams so it can be counted. Answers come
back as canonical parts; streamed tool-call fragments are assembled into whole calls. Errors become
OpenAI errors of our own wording (inference/engines/node_errors.py), never the server's text, and a client that
leaves closes the upstream connection, which makes these servers stop generating.

Servers that cannot load and unload keep every model they list available. llama-server in router mode
lists each model's status (loaded or not) and loads and unloads on request, so the swap actor manages it
like an Ollama node.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
from django.conf import settings

from common.apierrors import ApiError
from inference.engines.base import LoadRefused, NodeFailure
from inference.engines.node_errors import from_node
from inference.engines.ollama_translate import COMPLETIONS_DEFAULT_MAX_TOKENS, seed_for_choice
from inference.engines.parts import Embeddings, Part, TokenLogprob, ToolCall
from inference.engines.request import CHAT, COMPLETION, EMBEDDING, GenerationRequest
from inference.registry import ModelRoute, NodeInfo

_PATHS = {CHAT: "/v1/chat/completions", COMPLETION: "/v1/completions", EMBEDDING: "/v1/embeddings"}
_ROLE_MAP = {"developer": "system"}  # not every server knows OpenAI's newer name for it
_FINISH = {"length": "length", "tool_calls": "tool_calls", "function_call": "tool_calls"}
_clients: dict[tuple[int, str], httpx.AsyncClient] = {}
# Router-mode status values that mean the model is in memory (llama-server's /v1/models).
_LOADED = ("loaded",)


def client_for(node: NodeInfo) -> httpx.AsyncClient:
    # httpx connection pools belong to the loop that created them; daphne has one loop, tests may have many.
    key = (id(asyncio.get_running_loop()), node.url)
    client = _clients.get(key)
    if client is None:
        timeout = httpx.Timeout(settings.OLLAMA_READ_TIMEOUT, connect=settings.OLLAMA_CONNECT_TIMEOUT)
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=64)
        client = _clients[key] = httpx.AsyncClient(base_url=node.url.rstrip("/"), timeout=timeout, limits=limits)
    return client


def auth_headers(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


# -- the canonical request -> OpenAI bodies ------------------------------------------------------------


def _max_tokens(requested: int | None, route: ModelRoute) -> int | None:
    if route.context_length and requested is not None:
        # No answer can be longer than the context; servers refuse or misbehave on absurd values.
        return min(requested, route.context_length)
    return requested


def _sampling(body) -> dict[str, Any]:
    out = {name: getattr(body, name) for name in ("temperature", "top_p", "frequency_penalty", "presence_penalty",
                                                   "logit_bias")
           if getattr(body, name) is not None}
    if body.stop_list:
        out["stop"] = body.stop_list
    return out


def _chat_body(body, route: ModelRoute) -> dict[str, Any]:
    messages = []
    for message in body.messages:
        wire = message.model_dump(mode="json", by_alias=True, exclude_none=True)
        wire["role"] = _ROLE_MAP.get(wire["role"], wire["role"])
        messages.append(wire)
    out: dict[str, Any] = {"model": route.ollama_name, "messages": messages, **_sampling(body)}
    max_tokens = _max_tokens(body.max_output_tokens, route)
    if max_tokens is not None:
        out["max_tokens"] = max_tokens
    for name in ("tools", "tool_choice", "parallel_tool_calls", "response_format", "logprobs", "top_logprobs",
                 "reasoning_effort"):
        value = getattr(body, name)
        if value is not None:
            out[name] = value if isinstance(value, str | bool | int) else _dump(value)
    return out


def _dump(value: Any) -> Any:
    if isinstance(value, list):
        return [_dump(item) for item in value]
    return value.model_dump(mode="json", by_alias=True, exclude_none=True)


def _completion_body(body, prompt: str, route: ModelRoute) -> dict[str, Any]:
    requested = body.max_tokens if body.max_tokens is not None else COMPLETIONS_DEFAULT_MAX_TOKENS
    out: dict[str, Any] = {"model": route.ollama_name, "prompt": prompt, "max_tokens": _max_tokens(requested, route),
                           **_sampling(body)}
    if body.suffix:
        out["suffix"] = body.suffix
    if body.logprobs is not None:
        out["logprobs"] = body.logprobs
    return out


def _with_seed(base: dict[str, Any], seed: int | None, choice: int) -> dict[str, Any]:
    choice_seed = seed_for_choice(seed, choice)
    return {**base, "seed": choice_seed} if choice_seed is not None else dict(base)


# -- OpenAI answers -> canonical parts -----------------------------------------------------------------


def _chat_logprobs(logprobs: dict | None) -> tuple[TokenLogprob, ...]:
    return tuple(TokenLogprob(e.get("token", ""), float(e.get("logprob") or 0.0),
                              tuple(TokenLogprob(t.get("token", ""), float(t.get("logprob") or 0.0))
                                    for t in e.get("top_logprobs") or ()))
                 for e in (logprobs or {}).get("content") or ())


def _completion_logprobs(logprobs: dict | None) -> tuple[TokenLogprob, ...]:
    if not logprobs:
        return ()
    tokens = logprobs.get("tokens") or []
    values = logprobs.get("token_logprobs") or []
    tops = logprobs.get("top_logprobs") or []
    out = []
    for i, token in enumerate(tokens):
        top = tops[i] if i < len(tops) and isinstance(tops[i], dict) else {}
        out.append(TokenLogprob(token, float(values[i] or 0.0) if i < len(values) else 0.0,
                                tuple(TokenLogprob(t, float(v)) for t, v in top.items())))
    return tuple(out)


def _thinking(message: dict) -> str:
    # vLLM and Ollama call the trace `reasoning`, DeepSeek-style servers (llama-server) `reasoning_content`.
    return message.get("reasoning_content") or message.get("reasoning") or ""


def _finish(reason: str | None) -> str:
    return _FINISH.get(reason or "", "stop")


def _usage(payload: dict) -> tuple[int | None, int | None]:
    usage = payload.get("usage") or {}
    return usage.get("prompt_tokens"), usage.get("completion_tokens")


def part_from_answer(operation: str, payload: dict) -> Part:
    """A whole (non-streamed) chat or completion answer with one choice."""
    choice = (payload.get("choices") or [{}])[0]
    prompt_tokens, completion_tokens = _usage(payload)
    if operation == CHAT:
        message = choice.get("message") or {}
        calls = tuple(ToolCall((c.get("function") or {}).get("name", ""), (c.get("function") or {}).get("arguments")
                               or "{}") for c in message.get("tool_calls") or ())
        return Part(text=message.get("content") or "", thinking=_thinking(message), tool_calls=calls,
                    logprobs=_chat_logprobs(choice.get("logprobs")), done=True,
                    finish_reason=_finish(choice.get("finish_reason")), prompt_tokens=prompt_tokens,
                    completion_tokens=completion_tokens)
    return Part(text=choice.get("text") or "", logprobs=_completion_logprobs(choice.get("logprobs")), done=True,
                finish_reason=_finish(choice.get("finish_reason")), prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens)


class _StreamState:
    """One streamed choice: tool-call fragments by index, the finish reason, the usage chunk."""

    def __init__(self) -> None:
        self.calls: dict[int, dict[str, str]] = {}
        self.finish_reason: str | None = None
        self.prompt_tokens: int | None = None
        self.completion_tokens: int | None = None

    def feed(self, operation: str, chunk: dict) -> Part | None:
        if chunk.get("usage"):
            self.prompt_tokens, self.completion_tokens = _usage(chunk)
        choice = (chunk.get("choices") or [None])[0]
        if not choice:
            return None
        if choice.get("finish_reason"):
            self.finish_reason = choice["finish_reason"]
        if operation == COMPLETION:
            text, logprobs = choice.get("text") or "", _completion_logprobs(choice.get("logprobs"))
            return Part(text=text, logprobs=logprobs) if text or logprobs else None
        delta = choice.get("delta") or {}
        for fragment in delta.get("tool_calls") or ():
            call = self.calls.setdefault(int(fragment.get("index", len(self.calls))), {"name": "", "arguments": ""})
            function = fragment.get("function") or {}
            call["name"] += function.get("name") or ""
            call["arguments"] += function.get("arguments") or ""
        text, thinking = delta.get("content") or "", _thinking(delta)
        logprobs = _chat_logprobs(choice.get("logprobs"))
        return Part(text=text, thinking=thinking, logprobs=logprobs) if text or thinking or logprobs else None

    def last(self) -> Part:
        calls = tuple(ToolCall(c["name"], c["arguments"] or "{}") for _, c in sorted(self.calls.items()))
        return Part(tool_calls=calls, done=True, finish_reason=_finish(self.finish_reason),
                    prompt_tokens=self.prompt_tokens, completion_tokens=self.completion_tokens)


async def _raise_for_status(response: httpx.Response, node: str, model: str) -> None:
    if response.status_code < 400:
        return
    await response.aread()
    try:
        error = response.json().get("error")
        text = error.get("message", "") if isinstance(error, dict) else str(error or "")
    except ValueError:
        text = response.text
    raise from_node(response.status_code, text, model)


async def _sse_data(response: httpx.Response) -> AsyncIterator[dict]:
    async for line in response.aiter_lines():
        if not line.startswith("data:"):
            continue  # comments, event names, keep-alives
        data = line[5:].strip()
        if data == "[DONE]":
            return
        chunk = json.loads(data)
        if isinstance(chunk, dict) and chunk.get("error"):
            error = chunk["error"]
            raise from_node(-1, error.get("message", "") if isinstance(error, dict) else str(error), "")
        yield chunk


async def _send(node: NodeInfo, path: str, body: dict[str, Any], *, stream: bool) -> httpx.Response:
    """POST, once more on a fresh connection if a pooled one turns out closed.

    Servers close idle or much-used keep-alive connections (llama-server's HTTP library does both), and a
    request written to such a connection fails with "server disconnected without sending a response"
    before the server read it: not a failure of the node, and safe to send again.
    """
    client = client_for(node)
    request = client.build_request("POST", path, json=body, headers=auth_headers(node.api_key))
    try:
        return await client.send(request, stream=stream)
    except httpx.RemoteProtocolError:
        return await client.send(client.build_request("POST", path, json=body, headers=auth_headers(node.api_key)),
                                 stream=stream)


class OpenAICompatibleEngine:
    kind = "openai"

    def prepare(self, request: GenerationRequest) -> list[dict[str, Any]]:
        route, body = request.route, request.body
        if request.operation == EMBEDDING:
            # Dimensions are cut by Gatehouse (inference/openai_api/embeddings.py), the same for every engine.
            return [{"model": route.ollama_name, "input": list(request.texts), "encoding_format": "float"}]
        if request.operation == CHAT:
            bases = [_chat_body(body, route)]
        else:
            bases = [_completion_body(body, prompt, route) for prompt in request.texts]
        return [_with_seed(base, body.seed, choice) for base in bases for choice in range(request.choices)]

    async def stream(self, node: NodeInfo, operation: str, payload: dict[str, Any]) -> AsyncIterator[Part]:
        body = {**payload, "stream": True, "stream_options": {"include_usage": True}}
        state = _StreamState()
        try:
            response = await _send(node, _PATHS[operation], body, stream=True)
            try:
                await _raise_for_status(response, node.url, payload["model"])
                async for chunk in _sse_data(response):
                    part = state.feed(operation, chunk)
                    if part is not None:
                        yield part
            finally:
                # Closing the response closes the connection mid-stream: the server stops generating.
                await response.aclose()
        except httpx.TransportError as exc:
            raise NodeFailure(node.url, exc) from exc
        except ValueError as exc:  # a line that is not JSON: the server is not speaking OpenAI's SSE
            raise ApiError.bad_gateway("The model server sent a stream Gatehouse could not read.") from exc
        yield state.last()

    async def call(self, node: NodeInfo, operation: str, payload: dict[str, Any]) -> Part | Embeddings:
        try:
            response = await _send(node, _PATHS[operation], {**payload, "stream": False}, stream=False)
            await _raise_for_status(response, node.url, payload["model"])
            answer = response.json()
        except httpx.TransportError as exc:
            raise NodeFailure(node.url, exc) from exc
        except ValueError as exc:
            raise ApiError.bad_gateway("The model server sent an answer Gatehouse could not read.") from exc
        if operation == EMBEDDING:
            data = sorted(answer.get("data") or [], key=lambda item: item.get("index", 0))
            return Embeddings([list(item.get("embedding") or []) for item in data], _usage(answer)[0] or 0)
        return part_from_answer(operation, answer)

    # -- what is loaded, loads and unloads ----------------------------------------------------------------

    async def _models(self, node: NodeInfo) -> list[dict[str, Any]]:
        try:
            response = await client_for(node).get("/v1/models", headers=auth_headers(node.api_key))
            response.raise_for_status()
            return list(response.json().get("data") or [])
        except (httpx.HTTPError, ValueError, AttributeError) as exc:
            raise NodeFailure(node.url, exc) from exc

    def can_swap(self, node: NodeInfo) -> bool:
        return node.url in _routers

    async def loaded(self, node: NodeInfo) -> list[dict[str, Any]]:
        """Models in memory, in /api/ps's shape. Without a status per model (one model per server, vLLM, a
        provider) everything listed is available; memory is the server's business, so sizes are 0."""
        entries = await self._models(node)
        if any(isinstance(e.get("status"), dict) for e in entries):
            _routers.add(node.url)
            entries = [e for e in entries if (e.get("status") or {}).get("value") in _LOADED]
        else:
            _routers.discard(node.url)
        return [{"name": e.get("id", ""), "size": 0, "size_vram": 0, "expires_at": None} for e in entries]

    async def load(self, node: NodeInfo, route: ModelRoute) -> None:
        if not self.can_swap(node):
            return  # always available
        await self._post_model(node, "/models/load", route.ollama_name)
        # The router answers before the model's own process is ready: wait until it says loaded.
        deadline = asyncio.get_running_loop().time() + settings.OLLAMA_READ_TIMEOUT
        while route.ollama_name not in {m["name"] for m in await self.loaded(node)}:
            if asyncio.get_running_loop().time() > deadline:
                raise LoadRefused(504, "the model did not finish loading")
            await asyncio.sleep(0.2)

    async def unload(self, node: NodeInfo, name: str) -> None:
        if self.can_swap(node):
            await self._post_model(node, "/models/unload", name)

    async def _post_model(self, node: NodeInfo, path: str, name: str) -> None:
        try:
            response = await client_for(node).post(path, json={"model": name}, headers=auth_headers(node.api_key))
        except httpx.TransportError as exc:
            raise NodeFailure(node.url, exc) from exc
        if response.status_code >= 400:
            raise LoadRefused(response.status_code, response.text[:500])


# Nodes seen in router mode (their /v1/models gives each model's status), so loads and unloads go to them.
_routers: set[str] = set()

ENGINE = OpenAICompatibleEngine()
