"""Ollama's OpenAI layer (middleware/openai.go, openai/openai.go): translate the request to a native one,
run the native flow, and translate its output, quirks included.

Quirks kept on purpose: `temperature`/`top_p` default to 1.0, `options`/`keep_alive`/`num_ctx` are dropped,
`messages: []` is a 400, ids are `chatcmpl-<0..998>` (not unique), `/v1/models` has `data: null` when empty,
and an error in the middle of a stream becomes an empty chunk and the stream ends without `[DONE]`.
"""

from __future__ import annotations

import base64
import calendar
import contextlib
import json
import random
import re
import struct
import time
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from ollamasim import engine
from ollamasim.catalogue import DEFAULT_NAMESPACE, parse_model_ref, parse_name
from ollamasim.native import collect, error_status, json_response, state_of, trace_of
from ollamasim.wire import ApiError, decode_error, dumps, go_type_name, json_kind

_DATA_URI = re.compile(r"^data:(?:image/(?:jpeg|jpg|png|webp))?;base64,(.*)$", re.DOTALL)
_REASONING = {"none": False, "minimal": "low", "low": "low", "medium": "medium", "high": "high", "max": "max",
              "xhigh": "max", "ultra": "max"}


def error_response(status: int, message: str, content_type: str = "application/json") -> web.Response:
    kind = {400: "invalid_request_error", 404: "not_found_error"}.get(status, "api_error")
    body = {"error": {"message": message, "type": kind, "param": None, "code": None}}
    return json_response(body, status=status, content_type=content_type)


class BadRequest(Exception):
    """Rejected by the middleware itself, before any native handler runs."""


def _body(raw: bytes, struct_name: str, types: dict[str, tuple[type, str]]) -> dict[str, Any]:
    """Decode an OpenAI request body; `types` maps a field to (Python type, Go type name for errors)."""
    if not raw.strip():
        raise BadRequest("EOF")
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BadRequest(decode_error(raw)) from None
    if not isinstance(data, dict):
        raise BadRequest(f"json: cannot unmarshal array into Go value of type openai.{struct_name}")
    for key, (allowed, gotype) in types.items():
        value = data.get(key)
        if value is not None and (not isinstance(value, allowed) or isinstance(value, bool) and allowed is not bool):
            raise BadRequest(f"json: cannot unmarshal {json_kind(value)} into Go struct field "
                             f"{struct_name}.{key} of type {gotype}")
    return {k: v for k, v in data.items() if v is not None}


def _stop(value: Any, strict: bool) -> list[str] | None:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        stops = []
        for item in value:
            if isinstance(item, str):
                stops.append(item)
            elif strict:
                raise BadRequest(f"invalid type for 'stop' field: {go_type_name(item)}")
        return stops
    return None


def _messages(messages: list[Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    call_names: dict[str, str] = {}
    for msg in messages:
        if not isinstance(msg, dict):
            raise BadRequest("invalid message format")
        role = msg.get("role", "")
        content = msg.get("content")
        native: dict[str, Any] = {"role": role, "content": ""}
        if isinstance(content, str):
            native["content"] = content
        elif isinstance(content, list):
            texts, images = [], []
            for part in content:
                kind = part.get("type") if isinstance(part, dict) else None
                if kind == "text":
                    texts.append(str(part.get("text", "")))
                elif kind == "image_url":
                    url = part.get("image_url")
                    url = url.get("url") if isinstance(url, dict) else url
                    match = _DATA_URI.match(url or "")
                    if not match:
                        raise BadRequest("image URLs are not currently supported, please use base64 encoded data instead")
                    images.append(match.group(1))
                elif kind != "input_audio":
                    raise BadRequest("invalid message format")
            native["content"] = "\n".join(texts)
            if images:
                native["images"] = images
        elif content is not None:
            raise BadRequest(f"invalid message content type: {type(content).__name__}")
        if msg.get("reasoning"):
            native["thinking"] = msg["reasoning"]
        if msg.get("tool_calls"):
            calls = []
            for call in msg["tool_calls"]:
                function = call.get("function") or {}
                try:
                    arguments = json.loads(function.get("arguments") or "{}")
                except (json.JSONDecodeError, TypeError):
                    raise BadRequest("invalid tool call arguments") from None
                calls.append({"function": {"name": function.get("name", ""), "arguments": arguments}})
                if call.get("id"):
                    call_names[call["id"]] = function.get("name", "")
            native["tool_calls"] = calls
        if role == "tool":
            name = msg.get("name") or call_names.get(msg.get("tool_call_id", ""))
            if name:
                native["tool_name"] = name
        out.append(native)
    return out


def _chat_request(body: dict[str, Any]) -> dict[str, Any]:
    """FromChatRequest."""
    messages = body.get("messages") or []
    if not messages:
        raise BadRequest("[] is too short - 'messages'")
    options: dict[str, Any] = {}
    if "max_tokens" in body:
        options["num_predict"] = body["max_tokens"]
    options["temperature"] = body.get("temperature", 1.0)
    for key in ("seed", "frequency_penalty", "presence_penalty"):
        if key in body:
            options[key] = body[key]
    options["top_p"] = body.get("top_p", 1.0)
    stops = _stop(body.get("stop"), strict=False)
    if stops is not None:
        options["stop"] = stops
    native: dict[str, Any] = {"model": body.get("model", ""), "messages": _messages(messages),
                              "stream": bool(body.get("stream", False)), "options": options}
    fmt = _response_format(body.get("response_format"))
    if fmt is not None:
        native["format"] = fmt
    if body.get("tools"):
        native["tools"] = body["tools"]
    effort = body.get("reasoning_effort") or (body.get("reasoning") or {}).get("effort")
    if effort is not None:
        if effort not in _REASONING:
            raise BadRequest(f"invalid reasoning value: '{effort}' (must be \"minimal\", \"low\", \"medium\", "
                             "\"high\", \"max\", or \"none\")")
        native["think"] = _REASONING[effort]
    if body.get("logprobs"):
        native["logprobs"] = True
        native["top_logprobs"] = body.get("top_logprobs", 0)
    return native


def _response_format(value: Any) -> Any:
    if not isinstance(value, dict):
        return None
    if value.get("type") == "json_object":
        return "json"
    if value.get("type") == "json_schema":
        return (value.get("json_schema") or {}).get("schema")
    return None


def _completion_request(body: dict[str, Any]) -> dict[str, Any]:
    """FromCompleteRequest: top_p 0 counts as unset; penalties are always sent."""
    options: dict[str, Any] = {}
    stops = _stop(body.get("stop"), strict=True)
    if stops is not None:
        options["stop"] = stops
    if "max_tokens" in body:
        options["num_predict"] = body["max_tokens"]
    options["temperature"] = body.get("temperature", 1.0)
    if "seed" in body:
        options["seed"] = body["seed"]
    options["frequency_penalty"] = body.get("frequency_penalty", 0)
    options["presence_penalty"] = body.get("presence_penalty", 0)
    options["top_p"] = body.get("top_p") or 1.0
    native: dict[str, Any] = {"model": body.get("model", ""), "prompt": body.get("prompt", ""),
                              "stream": bool(body.get("stream", False)), "options": options}
    if body.get("suffix"):
        native["suffix"] = body["suffix"]
    if isinstance(body.get("logprobs"), int) and body["logprobs"] > 0:
        native["logprobs"] = True
        native["top_logprobs"] = body["logprobs"]
    return native


def _usage(final: dict[str, Any]) -> dict[str, int]:
    prompt, completion = final.get("prompt_eval_count", 0), final.get("eval_count", 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _openai_logprobs(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"content": [{"token": e["token"], "logprob": e["logprob"], "bytes": e.get("bytes", []),
                         "top_logprobs": [{"token": t["token"], "logprob": t["logprob"], "bytes": t.get("bytes", [])}
                                          for t in e.get("top_logprobs") or []]} for e in entries]}


def _tool_calls(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"id": call.get("id", ""), "index": i, "type": "function",
             "function": {"name": call["function"]["name"], "arguments": dumps(call["function"]["arguments"])}}
            for i, call in enumerate(calls)]


def _unix(created_at: str) -> int:
    """r.CreatedAt.Unix() for our UTC RFC3339 timestamps."""
    return calendar.timegm(time.strptime(created_at[:19], "%Y-%m-%dT%H:%M:%S"))


def _chat_completion(cid: str, native: dict[str, Any]) -> dict[str, Any]:
    message = native["message"]
    calls = _tool_calls(message.get("tool_calls") or [])
    out_message: dict[str, Any] = {"role": "assistant", "content": message.get("content", "")}
    if message.get("thinking"):
        out_message["reasoning"] = message["thinking"]
    if calls:
        out_message["tool_calls"] = calls
    reason = "tool_calls" if calls else native.get("done_reason") or None
    choice: dict[str, Any] = {"index": 0, "message": out_message, "finish_reason": reason}
    if native.get("logprobs"):
        choice["logprobs"] = _openai_logprobs(native["logprobs"])
    return {"id": cid, "object": "chat.completion", "created": _unix(native["created_at"]), "model": native["model"],
            "system_fingerprint": "fp_ollama", "choices": [choice], "usage": _usage(native)}


class _SSE:
    def __init__(self, request: web.Request) -> None:
        self.request = request
        self.response: web.StreamResponse | None = None

    async def send(self, payload: dict[str, Any] | str) -> None:
        if self.response is None:
            self.response = web.StreamResponse(status=200, headers={"Content-Type": "text/event-stream"})
            await self.response.prepare(self.request)
        data = payload if isinstance(payload, str) else dumps(payload)
        await self.response.write(f"data: {data}\n\n".encode())

    async def finish(self, done: bool) -> web.StreamResponse:
        assert self.response is not None
        if done:
            await self.response.write(b"data: [DONE]\n\n")
        await self.response.write_eof()
        return self.response


async def _stream_chat(request: web.Request, events: AsyncIterator[dict[str, Any]], cid: str,
                       include_usage: bool, style: str) -> web.StreamResponse:
    sse = _SSE(request)
    created = int(time.time())
    first = True
    tool_call_sent = False

    def chunk(delta: dict[str, Any], finish: str | None, logprobs: list[Any] | None = None) -> dict[str, Any]:
        nonlocal first
        if style == "legacy" or first:
            delta = {"role": "assistant", **delta}
        first = False
        choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": finish}
        if logprobs:
            choice["logprobs"] = _openai_logprobs(logprobs)
        return {"id": cid, "object": "chat.completion.chunk",
                "created": created if style == "head" else int(time.time()), "model": model,
                "system_fingerprint": "fp_ollama", "choices": [choice]}

    model = ""
    async with contextlib.aclosing(events) as stream:
        async for event in stream:
            if "error" in event:
                if sse.response is None:
                    trace_of(request).errored = True
                    raise ApiError(error_status(event), event["error"])
                # The writer parses the error line as an empty ChatResponse: an empty chunk, no [DONE].
                trace_of(request).errored = True
                await sse.send(chunk({"content": ""}, None))
                return await sse.finish(done=False)
            model = event["model"]
            message = event["message"]
            calls = _tool_calls(message.get("tool_calls") or [])
            tool_call_sent = tool_call_sent or bool(calls)
            if event.get("done"):
                reason = "tool_calls" if tool_call_sent else event.get("done_reason")
                if style == "legacy":
                    await sse.send(chunk({"content": message.get("content", "")}, reason))
                else:
                    await sse.send(chunk({}, reason) if not first else chunk({"content": ""}, reason))
                if include_usage:
                    await sse.send({"id": cid, "object": "chat.completion.chunk", "created": created,
                                    "model": model, "system_fingerprint": "fp_ollama", "choices": [],
                                    "usage": _usage(event)})
                return await sse.finish(done=True)
            if message.get("thinking"):
                await sse.send(chunk({"reasoning": message["thinking"]} if style == "head" else
                                     {"content": "", "reasoning": message["thinking"]}, None, event.get("logprobs")))
            if message.get("content") or calls:
                delta: dict[str, Any] = {"content": message.get("content", "")}
                if calls:
                    delta["tool_calls"] = calls
                await sse.send(chunk(delta, None, None if message.get("thinking") else event.get("logprobs")))
    raise ApiError(500, "stream ended without a final chunk")


async def chat_completions(request: web.Request) -> web.StreamResponse:
    state, trace = state_of(request), trace_of(request)
    try:
        body = _body(await request.read(), "ChatCompletionRequest",
                     {"model": (str, "string"), "messages": (list, "[]openai.Message"), "stream": (bool, "bool"),
                      "tools": (list, "[]api.Tool"), "max_tokens": (int, "int"), "seed": (int, "int"),
                      "temperature": (float | int, "float64"), "top_p": (float | int, "float64")})
        native = _chat_request(body)
    except BadRequest as exc:
        return error_response(400, str(exc), "application/json; charset=utf-8")
    cid = f"chatcmpl-{random.randrange(999)}"
    try:
        call = await engine.start_chat(state, dumps(native).encode(), trace)
        async with call:
            if native["stream"]:
                include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
                return await _stream_chat(request, call.events(), cid, include_usage,
                                          state.config.server.chunk_style)
            return json_response(_chat_completion(cid, await collect(call.events(), True, trace)),
                                 content_type="application/json")
    except ApiError as exc:
        return error_response(exc.status, exc.message)


async def _stream_completion(request: web.Request, events: AsyncIterator[dict[str, Any]], cid: str,
                             include_usage: bool) -> web.StreamResponse:
    sse = _SSE(request)
    model = ""

    def chunk(text: str, finish: str | None, logprobs: list[Any] | None) -> dict[str, Any]:
        choice: dict[str, Any] = {"text": text, "index": 0, "finish_reason": finish}
        if logprobs:
            choice["logprobs"] = _openai_logprobs(logprobs)
        payload: dict[str, Any] = {"id": cid, "object": "text_completion", "created": int(time.time()),
                                   "model": model, "system_fingerprint": "fp_ollama", "choices": [choice]}
        if include_usage:  # a quirk: every chunk carries zero usage before the real usage chunk
            payload["usage"] = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
        return payload

    async with contextlib.aclosing(events) as stream:
        async for event in stream:
            if "error" in event:
                trace_of(request).errored = True
                if sse.response is None:
                    raise ApiError(error_status(event), event["error"])
                await sse.send(chunk("", None, None))  # the error line decodes as an empty response
                return await sse.finish(done=False)
            model = event["model"]
            done = event.get("done", False)
            await sse.send(chunk(event.get("response", ""), event.get("done_reason") if done else None,
                                 event.get("logprobs")))
            if done:
                if include_usage:
                    await sse.send({"id": cid, "object": "text_completion", "created": int(time.time()),
                                    "model": event["model"], "system_fingerprint": "fp_ollama", "choices": [],
                                    "usage": _usage(event)})
                return await sse.finish(done=True)
    raise ApiError(500, "stream ended without a final chunk")


async def completions(request: web.Request) -> web.StreamResponse:
    state, trace = state_of(request), trace_of(request)
    try:
        body = _body(await request.read(), "CompletionRequest",
                     {"model": (str, "string"), "prompt": (str, "string"), "stream": (bool, "bool"),
                      "suffix": (str, "string"), "max_tokens": (int, "int"), "seed": (int, "int"),
                      "temperature": (float | int, "float32"), "top_p": (float | int, "float32")})
        native = _completion_request(body)
    except BadRequest as exc:
        return error_response(400, str(exc), "application/json; charset=utf-8")
    cid = f"cmpl-{random.randrange(999)}"
    try:
        call = await engine.start_generate(state, dumps(native).encode(), trace)
        async with call:
            if call.immediate is not None:  # an empty prompt only loads the model
                final = call.immediate
                return json_response(_completion(cid, final), content_type="application/json")
            if native["stream"]:
                include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
                return await _stream_completion(request, call.events(), cid, include_usage)
            return json_response(_completion(cid, await collect(call.events(), False, trace)),
                                 content_type="application/json")
    except ApiError as exc:
        return error_response(exc.status, exc.message)


def _completion(cid: str, native: dict[str, Any]) -> dict[str, Any]:
    choice: dict[str, Any] = {"text": native.get("response", ""), "index": 0,
                              "finish_reason": native.get("done_reason") or None}
    if native.get("logprobs"):
        choice["logprobs"] = _openai_logprobs(native["logprobs"])
    return {"id": cid, "object": "text_completion", "created": _unix(native["created_at"]),
            "model": native["model"], "system_fingerprint": "fp_ollama", "choices": [choice],
            "usage": _usage(native)}


async def embeddings(request: web.Request) -> web.Response:
    state, trace = state_of(request), trace_of(request)
    try:
        body = _body(await request.read(), "EmbedRequest", {"model": (str, "string"), "dimensions": (int, "int"),
                                                             "encoding_format": (str, "string")})
        value = body.get("input")
        if value == "":
            value = [""]
        if value is None or value == []:
            raise BadRequest("invalid input")
        encoding = body.get("encoding_format") or "float"
        if encoding not in ("float", "base64"):
            raise BadRequest(f"Invalid value for 'encoding_format' = {encoding}. Supported values: ['float', 'base64'].")
    except BadRequest as exc:
        return error_response(400, str(exc), "application/json; charset=utf-8")
    native: dict[str, Any] = {"model": body.get("model", ""), "input": value}
    if body.get("dimensions"):
        native["dimensions"] = body["dimensions"]
    try:
        result = await engine.run_embed(state, dumps(native).encode(), trace)
    except ApiError as exc:
        return error_response(exc.status, exc.message)
    data = []
    for i, vector in enumerate(result["embeddings"]):
        encoded: Any = vector
        if encoding == "base64":
            encoded = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        data.append({"object": "embedding", "embedding": encoded, "index": i})
    tokens = result.get("prompt_eval_count", 0)
    return json_response({"object": "list", "data": data, "model": result["model"],
                          "usage": {"prompt_tokens": tokens, "total_tokens": tokens}},
                         content_type="application/json")


def _owned_by(name: str) -> str:
    parsed = parse_name(name)
    return parsed.namespace if parsed is not None else DEFAULT_NAMESPACE


async def models(request: web.Request) -> web.Response:
    entries = sorted(state_of(request).catalogue.entries(), key=lambda e: e.modified_at_ns, reverse=True)
    data = [{"id": e.name.short, "object": "model", "created": e.modified_at_ns // 10**9,
             "owned_by": _owned_by(e.name.short)} for e in entries]
    return json_response({"object": "list", "data": data or None}, content_type="application/json")


async def model(request: web.Request) -> web.Response:
    """RetrieveMiddleware runs ShowHandler, so errors are show's: 400 for an invalid name, and a 404 that
    names the model in its shortest form."""
    name = request.match_info["model"]
    try:
        parsed = parse_model_ref(name)
    except ApiError as exc:
        return error_response(exc.status, exc.message)
    entry = state_of(request).catalogue.get(parsed)
    if entry is None:
        return error_response(404, f"model '{parsed.short if parsed else name}' not found")
    return json_response({"id": name, "object": "model", "created": entry.modified_at_ns // 10**9,
                          "owned_by": _owned_by(name)}, content_type="application/json")


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/v1/completions", completions)
    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_get("/v1/models", models, allow_head=False)
    app.router.add_get("/v1/models/{model:.+}", model, allow_head=False)
