"""Ollama's native /api routes (server/routes.go), answering with Ollama's bytes, headers and errors."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from ollamasim import engine
from ollamasim.catalogue import parse_model_ref, parse_name
from ollamasim.decoding import COPY, CREATE, DELETE, PULL, SHOW, decode
from ollamasim.scheduler import Trace
from ollamasim.state import State
from ollamasim.wire import ApiError, dumps, go_quote

JSON = "application/json; charset=utf-8"
NDJSON = "application/x-ndjson"

STATE: web.AppKey[State] = web.AppKey("state", State)
TRACE = "ollamasim.trace"


def json_response(obj: Any, status: int = 200, content_type: str = JSON) -> web.Response:
    """gin's c.JSON: compact Go-style JSON, no trailing newline."""
    return web.Response(body=dumps(obj).encode(), status=status, headers={"Content-Type": content_type})


def state_of(request: web.Request) -> State:
    return request.app[STATE]


def trace_of(request: web.Request) -> Trace:
    return request[TRACE]


def error_status(event: dict[str, Any]) -> int:
    """An error event is gin.H{"error": message} with an optional "status", 500 when absent."""
    return event.get("status", 500)


async def stream_ndjson(request: web.Request, events: AsyncIterator[dict[str, Any]]) -> web.StreamResponse:
    """streamResponse: headers go out with the first object, so an error before it is a plain HTTP error
    with its status (and the bare application/json type streamResponse sets); after it, an error is one
    more line and the status stays 200."""
    response: web.StreamResponse | None = None
    async with contextlib.aclosing(events) as stream:
        async for event in stream:
            if "error" in event and response is None:
                trace_of(request).errored = True
                return json_response({"error": event["error"]}, error_status(event), "application/json")
            if response is None:
                response = web.StreamResponse(status=200, headers={"Content-Type": NDJSON})
                await response.prepare(request)
            if "error" in event:
                await response.write((dumps({"error": event["error"]}) + "\n").encode())
                trace_of(request).errored = True
                break
            await response.write((dumps(event) + "\n").encode())
    if response is None:
        raise ApiError(500, "no response")
    await response.write_eof()
    return response


async def collect(events: AsyncIterator[dict[str, Any]], chat: bool, trace: Trace) -> dict[str, Any]:
    """A non-streamed answer: chunks concatenated into the final object."""
    content: list[str] = []
    thinking: list[str] = []
    tool_calls: list[Any] = []
    logprobs: list[Any] = []
    final: dict[str, Any] = {}
    async with contextlib.aclosing(events) as stream:
        async for event in stream:
            if "error" in event:
                trace.errored = True
                raise ApiError(error_status(event), event["error"])
            if event.get("done"):
                final = event
                break
            part = event["message"] if chat else event
            content.append(part.get("content" if chat else "response") or "")
            thinking.append(part.get("thinking") or "")
            tool_calls.extend(part.get("tool_calls") or [])
            logprobs.extend(event.get("logprobs") or [])
    if chat:
        message: dict[str, Any] = {"role": "assistant", "content": "".join(content)}
        if any(thinking):
            message["thinking"] = "".join(thinking)
        if tool_calls:
            message["tool_calls"] = tool_calls
        out = {"model": final["model"], "created_at": final["created_at"], "message": message}
        out.update({k: v for k, v in final.items() if k not in out})
    else:
        out = {"model": final["model"], "created_at": final["created_at"], "response": "".join(content)}
        if any(thinking):
            out["thinking"] = "".join(thinking)
        out.update({k: v for k, v in final.items() if k not in out})
    if logprobs:
        out["logprobs"] = logprobs
    return out


async def _inference(request: web.Request, start: Any, chat: bool) -> web.StreamResponse:
    state, trace = state_of(request), trace_of(request)
    call = await start(state, await request.read(), trace)
    async with call:
        if call.immediate is not None:
            return json_response(call.immediate)  # load/unload answers are plain JSON even when streaming
        if call.stream:
            return await stream_ndjson(request, call.events())
        return json_response(await collect(call.events(), chat, trace))


async def chat(request: web.Request) -> web.StreamResponse:
    return await _inference(request, engine.start_chat, chat=True)


async def generate(request: web.Request) -> web.StreamResponse:
    return await _inference(request, engine.start_generate, chat=False)


async def embed(request: web.Request) -> web.Response:
    return json_response(await engine.run_embed(state_of(request), await request.read(), trace_of(request)))


async def embeddings(request: web.Request) -> web.Response:
    return json_response(await engine.run_embeddings(state_of(request), await request.read(), trace_of(request)))


async def root(request: web.Request) -> web.Response:
    return web.Response(text="Ollama is running", content_type="text/plain", charset="utf-8")


async def version(request: web.Request) -> web.Response:
    return json_response({"version": state_of(request).config.server.version})


async def tags(request: web.Request) -> web.Response:
    state = state_of(request)
    entries = sorted(state.catalogue.entries(), key=lambda e: e.modified_at_ns, reverse=True)
    lengths = state.config.server.behaviour.tags_show_lengths
    return json_response({"models": [e.tags_entry(lengths) for e in entries]})


async def ps(request: web.Request) -> web.Response:
    return json_response({"models": state_of(request).scheduler.ps()})


async def show(request: web.Request) -> web.Response:
    req = decode(await request.read(), "ShowRequest", SHOW)
    model = req.get("model") or req.get("name") or ""
    name = parse_model_ref(model)
    if name is None:
        raise ApiError(400, "model is required")
    entry = state_of(request).catalogue.get(name)
    if entry is None:
        # ShowHandler names the model in its shortest form, so "nope" is reported as "nope:latest".
        raise ApiError(404, f"model '{name.short}' not found")
    return json_response(entry.show())


async def delete(request: web.Request) -> web.Response:
    req = decode(await request.read(), "DeleteRequest", DELETE)
    model = req.get("model") or req.get("name") or ""
    name = parse_name(model)
    if name is None:
        raise ApiError(400, f"name {go_quote(model)} is invalid")
    if not state_of(request).catalogue.remove(name):
        raise ApiError(404, f"model '{model}' not found")
    return web.Response(status=200)  # an empty body; a running model stays loaded


async def copy(request: web.Request) -> web.Response:
    req = decode(await request.read(), "CopyRequest", COPY)
    source, destination = req.get("source", ""), req.get("destination", "")
    src = parse_name(source)
    if src is None:
        raise ApiError(400, f"source {go_quote(source)} is invalid")
    dst = parse_name(destination)
    if dst is None:
        raise ApiError(400, f"destination {go_quote(destination)} is invalid")
    catalogue = state_of(request).catalogue
    entry = catalogue.get(src)
    if entry is None:
        raise ApiError(404, f"model {go_quote(source)} not found")
    catalogue.copy(entry, dst)
    return web.Response(status=200)


async def _progress_response(request: web.Request, progress: AsyncIterator[dict[str, Any]], *,
                             stream: bool) -> web.StreamResponse:
    """Pull and create: progress lines as NDJSON, or with stream:false only the last one (an error: 500)."""
    if stream:
        return await stream_ndjson(request, progress)
    latest: dict[str, Any] = {}
    async with contextlib.aclosing(progress) as events:
        async for event in events:
            if "error" in event:
                raise ApiError(500, event["error"])
            latest = event
    return json_response(latest, content_type="application/json")


async def _create_progress(state: State, destination, req: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    """CreateHandler FROM an installed model: the weights layer is reused, the changed Modelfile parts are
    new small layers, then the manifest is written."""
    source = state.catalogue.lookup(req["from"])
    if source is None:
        # Ollama pulls a FROM model it does not have; pulls here find nothing (see /api/pull).
        yield {"error": "pull model manifest: file does not exist"}
        return
    yield {"status": f"using existing layer sha256:{source.blob}"}
    changes = {key: req[key] for key in ("parameters", "system", "template") if key in req}
    for key in changes:
        digest = hashlib.sha256(f"{key}:{destination.key}:{changes[key]}".encode()).hexdigest()
        yield {"status": f"creating new layer sha256:{digest}"}
    state.catalogue.derive(source, destination, changes)
    yield {"status": "writing manifest"}
    yield {"status": "success"}


async def create(request: web.Request) -> web.StreamResponse:
    req = decode(await request.read(), "CreateRequest", CREATE)
    model = req.get("model") or req.get("name") or ""
    destination = parse_name(model)
    if destination is None:
        raise ApiError(400, "invalid model name")
    if not req.get("from"):
        # Creating from uploaded blobs (`files`) is not simulated: see "Known deviations".
        raise ApiError(400, "neither 'from' or 'files' was specified")
    progress = _create_progress(state_of(request), destination, req)
    return await _progress_response(request, progress, stream=req.get("stream", True))


async def _pull_progress(state: State, model: str) -> AsyncIterator[dict[str, Any]]:
    """PullModel's progress: manifest, the weights layer growing, small layers, verify, write, success."""
    yield {"status": "pulling manifest"}
    name = parse_name(model)
    cfg = state.catalogue.pullable(name) if name is not None else None
    if cfg is None:
        yield {"error": "pull model manifest: file does not exist"}
        return
    installed = state.catalogue.get(name)
    digest = installed.blob if installed is not None else hashlib.sha256(("blob:" + name.key).encode()).hexdigest()
    layer = {"status": f"pulling {digest[:12]}", "digest": f"sha256:{digest}", "total": cfg.size}
    yield dict(layer)
    seconds = cfg.size / 2**30 * state.config.server.pull_seconds_per_gib
    steps = 8
    for step in range(1, steps + 1):
        await asyncio.sleep(seconds / steps)
        yield {**layer, "completed": cfg.size * step // steps}
    for small in ("template", "license", "params"):
        small_digest = hashlib.sha256(f"{small}:{name.key}".encode()).hexdigest()
        size = 96 + len(small) * 100
        yield {"status": f"pulling {small_digest[:12]}", "digest": f"sha256:{small_digest}", "total": size,
               "completed": size}
    yield {"status": "verifying sha256 digest"}
    yield {"status": "writing manifest"}
    if state.catalogue.get(name) is None:
        state.catalogue.add(cfg)
    yield {"status": "removing unused layers"}
    yield {"status": "success"}


async def pull(request: web.Request) -> web.StreamResponse:
    req = decode(await request.read(), "PullRequest", PULL)
    model = req.get("model") or req.get("name") or ""
    if parse_name(model) is None:
        raise ApiError(400, "invalid model name")
    progress = _pull_progress(state_of(request), model)
    return await _progress_response(request, progress, stream=req.get("stream", True))


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", root)  # also answers HEAD, like r.HEAD("/")
    app.router.add_get("/api/version", version)
    app.router.add_get("/api/tags", tags)
    app.router.add_get("/api/ps", ps, allow_head=False)
    app.router.add_post("/api/chat", chat)
    app.router.add_post("/api/generate", generate)
    app.router.add_post("/api/embed", embed)
    app.router.add_post("/api/embeddings", embeddings)
    app.router.add_post("/api/show", show)
    app.router.add_post("/api/pull", pull)
    app.router.add_delete("/api/delete", delete)
    app.router.add_post("/api/copy", copy)
    app.router.add_post("/api/create", create)
