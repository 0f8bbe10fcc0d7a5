"""The inference flows behind /api/chat, /api/generate, /api/embed and /api/embeddings.

Each flow validates in Ollama's order, schedules (which may load a model), then hands back a Call whose
events are the native response objects. The OpenAI layer reuses these flows exactly as Ollama's
middleware reuses its native handlers, so both layers share queueing, errors and timing.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from ollamasim import context, generation
from ollamasim.call import Call, acquire_slot, done_response, metrics, release_slot
from ollamasim.catalogue import ModelEntry, parse_model_ref
from ollamasim.decoding import CHAT, EMBED, EMBEDDINGS, GENERATE, decode
from ollamasim.options import Resolved, resolve
from ollamasim.scheduler import Trace
from ollamasim.state import State
from ollamasim.wire import ApiError, dumps, go_quote


def _top_logprobs(req: dict[str, Any]) -> int:
    top = int(req.get("top_logprobs") or 0)
    if top < 0 or top > 20:
        raise ApiError(400, "top_logprobs must be between 0 and 20")
    return top


def _wants_thinking(entry: ModelEntry, think: bool | str | None, model: str) -> bool:
    if think is None:
        return entry.has("thinking")  # thinking models think unless told not to
    if think is False:
        return False
    if not entry.has("thinking"):
        raise ApiError(400, f"{go_quote(model)} does not support thinking")
    return True


def _format(value: Any) -> tuple[Any, str | None]:
    """(format, error). "" and null mean none; "json" or an object are formats; anything else fails later."""
    if value is None or value == "":
        return None, None
    if value == "json":
        return "json", None
    if isinstance(value, dict):
        return value, None
    # llamaServerRunner.Completion quotes the raw JSON (%q of a json.RawMessage), quotes and all.
    return None, f'invalid format: {go_quote(dumps(value))}; expected "json" or a valid JSON Schema object'


def _rng(call: Call, resolved: Resolved, *parts: Any) -> Any:
    return generation.make_rng(call.entry.blob, *parts, seed=resolved.get("seed"),
                               temperature=resolved.get("temperature"))


def _unload_now(call: Call) -> Call:
    """`keep_alive: 0` with nothing to generate: unload (after in-flight requests) and answer at once,
    200 even when the model was not loaded (Ollama server/routes.go GenerateHandler)."""
    call.state.scheduler.expire_model(call.entry)
    call.immediate = done_response(call.model, "unload", chat=call.chat)
    return call


async def _load_for(call: Call, req: dict[str, Any], *, top: int, has_images: bool,
                    preload_only: bool) -> tuple[Resolved, Any] | None:
    """Checks shared by chat and generate, then wait for a runner (the load queue, a load, a slot).

    Returns the resolved options and format, or None when the request only asked for a preload.
    """
    if has_images and not call.entry.has("vision"):
        raise ApiError(400, f"{call.entry.name.full} does not support vision")
    resolved = resolve(call.entry, call.state.config.server, req.get("options") or {}, req.get("shift"))
    await call.schedule(resolved, req.get("keep_alive"))
    if preload_only:
        call.immediate = done_response(call.model, "load", chat=call.chat)
        return None
    fmt, call.format_error = _format(req.get("format"))
    call.top_logprobs, call.want_logprobs = top, bool(req.get("logprobs"))
    # On llama-server runners shift is the runner's launch option, which a differing request reloads.
    call.shift = req.get("shift", True) if resolved.context_shift is None else resolved.context_shift
    call.truncate = req.get("truncate", True)
    return resolved, fmt


async def start_chat(state: State, raw: bytes, trace: Trace) -> Call:
    req = decode(raw, "ChatRequest", CHAT)
    top = _top_logprobs(req)
    model = req.get("model", "")
    name = parse_model_ref(model)
    if name is None:
        raise ApiError(400, "model is required")
    entry = state.catalogue.get(name)
    if entry is None:
        raise ApiError(404, f"model '{model}' not found")
    state.begin(trace, entry)
    messages = [dict(m, role=str(m.get("role", "")).lower()) for m in req.get("messages") or []]
    call = Call(state, trace, entry, model)
    call.stream = req.get("stream", True)
    if not messages and req.get("keep_alive") == 0:
        return _unload_now(call)
    # ChatHandler checks thinking itself, then the other capabilities while scheduling.
    think = _wants_thinking(entry, req.get("think"), model)
    if not entry.has("completion"):
        raise ApiError(400, f"{go_quote(model)} does not support chat")
    tools = req.get("tools") or []
    if tools and not entry.has("tools"):
        raise ApiError(400, f"{entry.name.full} does not support tools")
    loaded = await _load_for(call, req, top=top, has_images=any(m.get("images") for m in messages),
                             preload_only=not messages)
    if loaded is None:
        return call
    resolved, fmt = loaded
    call.rng = _rng(call, resolved, messages, tools, fmt)
    call.prompt_tokens_for = lambda num_ctx: context.chat_prompt_tokens(messages, tools, num_ctx, call.truncate)
    length = state.config.server.response_tokens
    call.planner = lambda rng: generation.plan_chat(entry, messages, tools, fmt, think, rng, length)
    return call


async def start_generate(state: State, raw: bytes, trace: Trace) -> Call:
    req = decode(raw, "GenerateRequest", GENERATE)
    top = _top_logprobs(req)
    model = req.get("model", "")
    entry = state.catalogue.get(parse_model_ref(model))
    if entry is None:
        raise ApiError(404, f"model '{model}' not found")
    state.begin(trace, entry)
    prompt, suffix, system = req.get("prompt", ""), req.get("suffix", ""), req.get("system", "")
    call = Call(state, trace, entry, model)
    call.chat = False
    call.stream = req.get("stream", True)
    if not prompt and req.get("keep_alive") == 0:
        return _unload_now(call)
    raw_mode = bool(req.get("raw"))
    if raw_mode and (req.get("template") or system or req.get("context")):
        raise ApiError(400, "raw mode does not support template, system, or context")
    # GenerateHandler checks thinking itself, then the other capabilities while scheduling.
    think = _wants_thinking(entry, req.get("think"), model)
    if not entry.has("completion"):
        raise ApiError(400, f"{go_quote(model)} does not support generate")
    if suffix and not entry.has("insert"):
        raise ApiError(400, f"{entry.name.full} does not support insert")
    loaded = await _load_for(call, req, top=top, has_images=bool(req.get("images")), preload_only=not prompt)
    if loaded is None:
        return call
    resolved, fmt = loaded
    context_ids = [int(t) for t in req.get("context") or []]
    call.context_in = None if raw_mode else context_ids
    call.prompt_pieces = generation.tokenize(system) + generation.tokenize(prompt) + generation.tokenize(suffix)
    call.rng = _rng(call, resolved, prompt, suffix, system, context_ids, fmt)
    prompt_tokens = generation.generate_prompt_tokens(prompt, system, suffix, context_ids, raw_mode)
    call.prompt_tokens_for = lambda num_ctx: prompt_tokens
    length = state.config.server.response_tokens
    call.planner = lambda rng: generation.plan_generate(entry, prompt, suffix, fmt, think, rng, length)
    return call


async def _embed_one(state: State, call: Call, text: str) -> None:
    """One input through the runner's slot semaphore (embedding models have one slot, so they queue)."""
    runner = call.runner
    assert runner is not None
    await acquire_slot(state, call.entry, runner, call.trace)
    try:
        ptps = state.config.server.prompt_tokens_per_second
        tokens = generation.count_tokens(text)
        await asyncio.sleep(state.knob(call.entry, "time_to_first_token_ms") / 1000 + (tokens / ptps if ptps > 0 else 0))
    finally:
        release_slot(state, call.entry, runner)


async def run_embed(state: State, raw: bytes, trace: Trace) -> dict[str, Any]:
    req = decode(raw, "EmbedRequest", EMBED)
    model = req.get("model", "")
    name = parse_model_ref(model)  # EmbedHandler checks the name before the input
    if name is None:
        raise ApiError(404, f"model '{model}' not found")
    value = req.get("input")
    if isinstance(value, str):
        inputs = [value] if value else []
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        inputs = list(value)
    elif value is None:
        inputs = []
    else:
        raise ApiError(400, "invalid input type")
    entry = state.catalogue.get(name)
    if entry is None:
        raise ApiError(404, f"model {go_quote(model)} not found, try pulling it first")
    state.begin(trace, entry)
    resolved = resolve(entry, state.config.server, req.get("options") or {})
    async with Call(state, trace, entry, model) as call:
        await call.schedule(resolved, req.get("keep_alive"))
        if not inputs:
            return {"model": model, "embeddings": []}
        assert call.runner is not None
        num_ctx = call.runner.num_ctx
        counts = [generation.count_tokens(text) for text in inputs]
        if req.get("truncate") is False and any(c > num_ctx for c in counts):
            raise ApiError(400, "the input length exceeds the context length")
        texts = ["".join(generation.tokenize(t)[:num_ctx]) for t in inputs]
        await asyncio.gather(*(_embed_one(state, call, t) for t in texts))
        dim = entry.config.embedding_length
        dimensions = req.get("dimensions")
        vectors = [generation.embedding(t, dim, int(dimensions) if dimensions else None) for t in texts]
        prompt_tokens = sum(min(c, num_ctx) for c in counts)
        state.stats.count(entry.name.short, "prompt_tokens", prompt_tokens)
        now = time.monotonic_ns()
        out: dict[str, Any] = {"model": model, "embeddings": vectors}
        out.update(metrics(now - trace.started_ns, call.loaded_ns - trace.started_ns, prompt_tokens, 0, 0, 0))
        return out


async def run_embeddings(state: State, raw: bytes, trace: Trace) -> dict[str, Any]:
    """The legacy endpoint: one prompt, an unnormalised float64 vector, no metrics."""
    req = decode(raw, "EmbeddingRequest", EMBEDDINGS)
    model = req.get("model", "")
    name = parse_model_ref(model)
    if name is None:
        raise ApiError(400, "model is required")
    entry = state.catalogue.get(name)
    if entry is None:
        raise ApiError(404, f"model {go_quote(model)} not found, try pulling it first")
    state.begin(trace, entry)
    resolved = resolve(entry, state.config.server, req.get("options") or {})
    async with Call(state, trace, entry, model) as call:
        await call.schedule(resolved, req.get("keep_alive"))
        prompt = req.get("prompt", "")
        if not prompt:
            return {"embedding": []}
        await _embed_one(state, call, prompt)
        state.stats.count(entry.name.short, "prompt_tokens", generation.count_tokens(prompt))
        return {"embedding": generation.legacy_embedding(prompt, entry.config.embedding_length)}
