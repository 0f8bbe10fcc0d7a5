"""Run OpenAI requests through the model's queue on Ollama nodes and shape the answers.

The views hand over the caller, a validated request and the resolved model; these functions admit
the request (one queue ticket per upstream call), run the calls when their slots come, and return
the response. Every generation response carries `x-gatehouse-queue-wait-ms`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from common.apierrors import ApiError
from inference import context_overflow, nodes, ratelimit, registry, slots
from inference.caller import Caller
from inference.embeddings import embedding_inputs, embeddings_response
from inference.metering import RequestMeter, estimate_prompt_tokens
from inference.openai_format import (
    ChatChunker,
    CompletionChunker,
    chat_completion,
    new_chat_id,
    new_completion_id,
    text_completion,
)
from inference.registry import ModelRoute
from inference.schemas import ChatCompletionRequest, CompletionRequest, EmbeddingRequest
from inference.streaming import WaitingStream, sse_events
from inference.translate import (
    chat_request_to_ollama,
    completion_prompts,
    completion_request_to_ollama,
    kwargs_for_choice,
)
from inference.upstream import MergedStream, UpstreamCall, gather_results
from inference.usage import UsageLog

QUEUE_WAIT_HEADER = "x-gatehouse-queue-wait-ms"
QUEUE_POSITION_HEADER = "x-gatehouse-queue-position"
QUEUE_ETA_HEADER = "x-gatehouse-queue-estimated-wait-ms"


@dataclass
class Outcome:
    """What a generation produced, for the view to render: a JSON payload or an SSE event stream."""

    headers: dict[str, str] = field(default_factory=dict)
    payload: dict[str, Any] | None = None
    events: AsyncIterator[bytes] | None = None


async def resolve_model(principal: Caller, model_id: str) -> ModelRoute:
    route = await registry.get_model(model_id)
    # A model the key may not use is answered exactly like one that does not exist, as OpenAI does:
    # a different answer would tell a key holder which models exist.
    if route is None or not principal.may_use(route.public_id):
        usable = [r.public_id for r in await registry.all_models() if principal.may_use(r.public_id)]
        error = ApiError.model_not_found(model_id)
        suggestions = registry.closest_ids(model_id, usable)
        if suggestions:
            error.message += " Did you mean " + " or ".join(f"`{s}`" for s in suggestions) + "?"
        raise error
    return route


def _require_generative(route: ModelRoute) -> None:
    if route.kind == "embedding":
        raise ApiError.invalid_request(
            f"The model `{route.public_id}` is an embedding model; use it with /v1/embeddings.", param="model"
        )


def _check_fan_out(calls: int, *, prompts: int = 1) -> None:
    """Every upstream call takes a slot; one request may not open more than the cap at once."""
    cap = settings.MAX_UPSTREAM_CALLS_PER_REQUEST
    if calls <= cap:
        return
    if prompts > cap:
        raise ApiError.invalid_request(
            f"Too many prompts in one request: {prompts} (at most {cap}). Send them in several requests.",
            param="prompt",
        )
    raise ApiError.invalid_request(
        f"This request asks for {calls} generations (n x prompts); at most {cap} are allowed per request. "
        f"Lower `n` or send the prompts in several requests.",
        param="n",
    )


async def _run(principal: Caller, route: ModelRoute, starts: list, *, stream: bool, model: str,
               requests: list[dict]):
    """Pass the rate limits, admit the calls and run them.

    Returns the response headers (queue wait, x-ratelimit-*) and a MergedStream (streams) or the
    list of results. `requests` are the Ollama requests of the calls, to estimate their prompts.
    Whatever happens, the request's tokens are settled against its limits and its usage is recorded
    once it ends, both in the background.
    """
    meter = RequestMeter([estimate_prompt_tokens(kwargs) for kwargs in requests])
    usage = UsageLog(principal, route.public_id, streamed=stream, meter=meter)
    try:
        grant = await ratelimit.acquire(user_id=principal.user_id, key_id=principal.key_id,
                                        key_limits=principal.key_limits, person_limits=principal.person_limits,
                                        estimate=meter.estimate)
    except ApiError as exc:
        usage.finish(exc)
        raise

    def finish(error: BaseException | None = None, disconnected: bool = False) -> None:
        grant.settle(meter.total_tokens)
        usage.finish(error, disconnected=disconnected)

    try:
        admission = await slots.admit(route, user=str(principal.user_id), batch=principal.is_batch,
                                      calls=len(starts))
    except BaseException as exc:
        finish(exc, disconnected=isinstance(exc, asyncio.CancelledError))
        _add_limit_headers(exc, grant)
        raise
    calls = [UpstreamCall(ticket, start, model, call_meter)
             for ticket, start, call_meter in zip(admission.tickets, starts, meter.calls, strict=True)]
    if not stream:
        error: BaseException | None = None
        try:
            results = await gather_results(calls, model)
        except BaseException as exc:
            error = exc
            _add_limit_headers(exc, grant)
            raise
        finally:
            admission.release_all()  # already released by each call; this covers calls never started
            usage.queue_wait_ms = admission.queue_wait_ms
            finish(error, disconnected=isinstance(error, asyncio.CancelledError))
        return _headers(admission, grant), results

    def stream_ended(merged: MergedStream) -> None:
        usage.queue_wait_ms = admission.queue_wait_ms
        finish(merged.error, disconnected=merged.error is None and not merged.complete)

    merged = MergedStream(calls, model, on_close=stream_ended)
    if admission.waiting:
        # Its turn has not come: start the stream now and tell the client where it stands (SSE comments
        # while it waits); errors from here on are reported in the stream.
        return _waiting_headers(admission, grant), WaitingStream(merged, admission)
    try:
        await merged.open(settings.SSE_KEEPALIVE_SECONDS)
    except BaseException as exc:
        # An error before the stream started (it keeps its HTTP status), or the client left.
        await merged.aclose()
        admission.release_all()
        _add_limit_headers(exc, grant)
        raise
    return _headers(admission, grant), merged


def _add_limit_headers(exc: BaseException, grant: ratelimit.Grant) -> None:
    """Errors after the limiter admitted the request carry its x-ratelimit-* headers too."""
    if isinstance(exc, ApiError):
        exc.headers.update(grant.headers)


def _headers(admission: slots.Admission, grant: ratelimit.Grant) -> dict[str, str]:
    return {QUEUE_WAIT_HEADER: str(admission.queue_wait_ms), **grant.headers}


def _waiting_headers(admission: slots.Admission, grant: ratelimit.Grant) -> dict[str, str]:
    """A stream that starts before its turn cannot know its wait yet: it says where it stands instead,
    and its wait comes in a comment when its turn comes (inference/streaming.py)."""
    return {QUEUE_POSITION_HEADER: str(admission.position), QUEUE_ETA_HEADER: str(admission.eta_ms),
            **grant.headers}


async def create_chat_completion(principal: Caller, body: ChatCompletionRequest, route: ModelRoute, *,
                                 created: int) -> Outcome:
    _require_generative(route)
    _check_fan_out(body.choice_count)
    base = chat_request_to_ollama(
        body, ollama_model=route.ollama_name, num_ctx=route.context_length, keep_alive=registry.keep_alive_for(route)
    )
    base.update(context_overflow.request_fields(route))
    per_choice = [kwargs_for_choice(base, body.seed, i) for i in range(body.choice_count)]
    starts = [lambda client, kw=kw: nodes.chat(client, kw, stream=bool(body.stream)) for kw in per_choice]
    headers, outcome = await _run(principal, route, starts, stream=bool(body.stream), model=body.model,
                                  requests=per_choice)
    if body.stream:
        chunker = ChatChunker(
            completion_id=new_chat_id(), created=created, model=body.model,
            n=body.choice_count, include_usage=body.include_usage, include_logprobs=bool(body.logprobs),
            parallel_tool_calls=body.parallel_tool_calls is not False,
        )
        return Outcome(headers, events=sse_events(outcome, chunker, body.model))
    return Outcome(
        headers,
        payload=chat_completion(
            completion_id=new_chat_id(), created=created, model=body.model, choices=outcome,
            include_logprobs=bool(body.logprobs), parallel_tool_calls=body.parallel_tool_calls is not False,
        ),
    )


async def create_text_completion(principal: Caller, body: CompletionRequest, route: ModelRoute, *,
                                 created: int) -> Outcome:
    _require_generative(route)
    prompts = completion_prompts(body)
    _check_fan_out(len(prompts) * body.choice_count, prompts=len(prompts))
    calls = []
    for prompt in prompts:
        base = completion_request_to_ollama(
            body, prompt, ollama_model=route.ollama_name, num_ctx=route.context_length,
            keep_alive=registry.keep_alive_for(route),
        )
        base.update(context_overflow.request_fields(route))
        calls.extend(kwargs_for_choice(base, body.seed, j) for j in range(body.choice_count))
    starts = [lambda client, kw=kw: nodes.generate(client, kw, stream=bool(body.stream)) for kw in calls]
    headers, outcome = await _run(principal, route, starts, stream=bool(body.stream), model=body.model,
                                  requests=calls)
    if body.stream:
        chunker = CompletionChunker(
            completion_id=new_completion_id(), created=created, model=body.model,
            prompts=prompts, n=body.choice_count, echo=bool(body.echo), include_usage=body.include_usage,
            logprobs=body.logprobs,
        )
        return Outcome(headers, events=sse_events(outcome, chunker, body.model))
    return Outcome(
        headers,
        payload=text_completion(
            completion_id=new_completion_id(), created=created, model=body.model, prompts=prompts,
            n=body.choice_count, choices=outcome, echo=bool(body.echo), logprobs=body.logprobs,
        ),
    )


async def create_embeddings(principal: Caller, body: EmbeddingRequest, route: ModelRoute) -> Outcome:
    inputs = embedding_inputs(body)
    kwargs = {"model": route.ollama_name, "input": inputs, "truncate": True,
              "options": {"num_ctx": route.context_length}, "keep_alive": registry.keep_alive_for(route)}
    headers, (result,) = await _run(principal, route, [lambda client: nodes.embed(client, kwargs)],
                                    stream=False, model=body.model, requests=[kwargs])
    if len(result.embeddings) != len(inputs):
        raise ApiError.bad_gateway(
            f"The model server returned {len(result.embeddings)} embeddings for {len(inputs)} inputs."
        )
    payload = embeddings_response(
        body.model, result.embeddings, result.prompt_eval_count, body.encoding_format, dimensions=body.dimensions
    )
    return Outcome(headers, payload=payload)
