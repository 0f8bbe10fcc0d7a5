"""Run OpenAI requests against Ollama nodes: pick the node, call it, shape the answer.

The views hand over a validated request and the resolved model; these functions return the
response. Streams are opened (first upstream part received) before the response starts, so errors
that happen before generation get their proper HTTP status (reference/openai.md §4.4).
"""

from __future__ import annotations

from django.http import HttpResponse

from apiaccess.auth import Principal
from inference import context_overflow, registry
from inference.api import json_response
from inference.embeddings import embedding_inputs, embeddings_response
from inference.errors import ApiError
from inference.nodes import client_for, native_chat, native_generate
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
from inference.streaming import event_stream_response
from inference.translate import (
    chat_request_to_ollama,
    completion_prompts,
    completion_request_to_ollama,
    kwargs_for_choice,
)
from inference.upstream import MergedStream, gather_choices, translated_errors


async def resolve_model(principal: Principal, model_id: str) -> ModelRoute:
    route = await registry.get_model(model_id)
    if route is None:
        raise ApiError.model_not_found(model_id)
    if not principal.may_use(route.public_id):
        raise ApiError.permission_denied(f"Your API key is not allowed to use the model `{model_id}`.")
    return route


def _node_for(route: ModelRoute) -> str:
    node = registry.pick_node(route)
    if node is None:
        raise ApiError.backend_unavailable(
            f"No GPU server is serving `{route.public_id}` right now. Please retry shortly.", retry_after=10
        )
    return node


def _require_generative(route: ModelRoute) -> None:
    if route.kind == "embedding":
        raise ApiError.invalid_request(
            f"The model `{route.public_id}` is an embedding model; use it with /v1/embeddings.", param="model"
        )


async def create_chat_completion(body: ChatCompletionRequest, route: ModelRoute, *, created: int) -> HttpResponse:
    _require_generative(route)
    client = client_for(_node_for(route))
    base = chat_request_to_ollama(
        body, ollama_model=route.ollama_name, num_ctx=route.context_length, keep_alive=registry.keep_alive()
    )
    base.update(context_overflow.request_fields(route))
    per_choice = [kwargs_for_choice(base, body.seed, i) for i in range(body.choice_count)]
    if body.stream:
        merged = await MergedStream.open(
            [lambda kw=kw: native_chat(client, kw, stream=True) for kw in per_choice], body.model
        )
        chunker = ChatChunker(
            completion_id=new_chat_id(), created=created, model=body.model,
            n=body.choice_count, include_usage=body.include_usage, include_logprobs=bool(body.logprobs),
            parallel_tool_calls=body.parallel_tool_calls is not False,
        )
        return event_stream_response(merged, chunker, body.model)
    results = await gather_choices([lambda kw=kw: native_chat(client, kw, stream=False) for kw in per_choice], body.model)
    return json_response(
        chat_completion(
            completion_id=new_chat_id(), created=created, model=body.model, choices=results,
            include_logprobs=bool(body.logprobs), parallel_tool_calls=body.parallel_tool_calls is not False,
        )
    )


async def create_text_completion(body: CompletionRequest, route: ModelRoute, *, created: int) -> HttpResponse:
    _require_generative(route)
    client = client_for(_node_for(route))
    prompts = completion_prompts(body)
    calls = []
    for prompt in prompts:
        base = completion_request_to_ollama(
            body, prompt, ollama_model=route.ollama_name, num_ctx=route.context_length,
            keep_alive=registry.keep_alive(),
        )
        base.update(context_overflow.request_fields(route))
        calls.extend(kwargs_for_choice(base, body.seed, j) for j in range(body.choice_count))
    if body.stream:
        merged = await MergedStream.open(
            [lambda kw=kw: native_generate(client, kw, stream=True) for kw in calls], body.model
        )
        chunker = CompletionChunker(
            completion_id=new_completion_id(), created=created, model=body.model,
            prompts=prompts, n=body.choice_count, echo=bool(body.echo), include_usage=body.include_usage,
            logprobs=body.logprobs,
        )
        return event_stream_response(merged, chunker, body.model)
    results = await gather_choices([lambda kw=kw: native_generate(client, kw, stream=False) for kw in calls],
                                   body.model)
    return json_response(
        text_completion(
            completion_id=new_completion_id(), created=created, model=body.model, prompts=prompts,
            n=body.choice_count, choices=results, echo=bool(body.echo), logprobs=body.logprobs,
        )
    )


async def create_embeddings(body: EmbeddingRequest, route: ModelRoute) -> dict:
    client = client_for(_node_for(route))
    inputs = embedding_inputs(body)
    async with translated_errors(body.model):
        result = await client.embed(
            model=route.ollama_name, input=inputs, truncate=True,
            options={"num_ctx": route.context_length}, keep_alive=registry.keep_alive(),
        )
    if len(result.embeddings) != len(inputs):
        raise ApiError.bad_gateway(
            f"The model server returned {len(result.embeddings)} embeddings for {len(inputs)} inputs."
        )
    return embeddings_response(
        body.model, result.embeddings, result.prompt_eval_count, body.encoding_format, dimensions=body.dimensions
    )
