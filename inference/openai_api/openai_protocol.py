"""The OpenAI front protocol: /v1/chat/completions, /v1/completions and /v1/embeddings.

Each route is a protocol object for the pipeline (inference/pipeline.py): its schema, how a validated
body becomes the canonical request (the model's defaults filled in, inputs decoded to text), and how the
canonical parts are rendered as OpenAI's objects, chunks and SSE (inference/openai_api/openai_format.py).
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from common.apierrors import ApiError
from inference.engines.ollama_translate import completion_prompts
from inference.engines.request import CHAT, COMPLETION, EMBEDDING, GenerationRequest
from inference.openai_api import context_overflow
from inference.openai_api.embeddings import embedding_inputs, embeddings_response
from inference.openai_api.model_defaults import apply_model_defaults
from inference.openai_api.openai_format import (
    ChatChunker,
    CompletionChunker,
    chat_completion,
    new_chat_id,
    new_completion_id,
    text_completion,
)
from inference.openai_api.schemas import ChatCompletionRequest, CompletionRequest, EmbeddingRequest
from inference.pipeline import Relay
from inference.registry import ModelRoute
from inference.streaming import event_stream_response, sse_events
from inference.web.api import json_response


def require_generative(route: ModelRoute) -> None:
    """Every generating front protocol refuses an embedding model the same way."""
    if route.kind == "embedding":
        raise ApiError.invalid_request(
            f"The model `{route.public_id}` is an embedding model; use it with /v1/embeddings.", param="model"
        )


class ChatProtocol:
    schema = ChatCompletionRequest

    def canonical(self, body: ChatCompletionRequest, route: ModelRoute) -> GenerationRequest:
        require_generative(route)
        return GenerationRequest(CHAT, apply_model_defaults(body, route), route)

    def errors(self, route: ModelRoute):
        return context_overflow.reported_as_openai(route, param="messages")

    def render(self, request: GenerationRequest, relay: Relay) -> Any:
        body, created = request.body, int(time.time())
        if relay.stream is not None:
            chunker = ChatChunker(
                completion_id=new_chat_id(), created=created, model=body.model, n=body.choice_count,
                include_usage=body.include_usage, include_logprobs=bool(body.logprobs),
                parallel_tool_calls=body.parallel_tool_calls is not False,
            )
            return event_stream_response(sse_events(relay.stream, chunker, body.model), relay.headers)
        return json_response(chat_completion(
            completion_id=new_chat_id(), created=created, model=body.model, choices=relay.answers,
            include_logprobs=bool(body.logprobs), parallel_tool_calls=body.parallel_tool_calls is not False,
        ), headers=relay.headers)


class CompletionProtocol:
    schema = CompletionRequest

    def canonical(self, body: CompletionRequest, route: ModelRoute) -> GenerationRequest:
        require_generative(route)
        return GenerationRequest(COMPLETION, apply_model_defaults(body, route), route,
                                 texts=tuple(completion_prompts(body)))

    def errors(self, route: ModelRoute):
        return context_overflow.reported_as_openai(route, param="prompt")

    def render(self, request: GenerationRequest, relay: Relay) -> Any:
        body, created, prompts = request.body, int(time.time()), list(request.texts)
        if relay.stream is not None:
            chunker = CompletionChunker(
                completion_id=new_completion_id(), created=created, model=body.model, prompts=prompts,
                n=body.choice_count, echo=bool(body.echo), include_usage=body.include_usage, logprobs=body.logprobs,
            )
            return event_stream_response(sse_events(relay.stream, chunker, body.model), relay.headers)
        return json_response(text_completion(
            completion_id=new_completion_id(), created=created, model=body.model, prompts=prompts,
            n=body.choice_count, choices=relay.answers, echo=bool(body.echo), logprobs=body.logprobs,
        ), headers=relay.headers)


class EmbeddingProtocol:
    schema = EmbeddingRequest

    def canonical(self, body: EmbeddingRequest, route: ModelRoute) -> GenerationRequest:
        return GenerationRequest(EMBEDDING, body, route, texts=tuple(embedding_inputs(body)))

    def errors(self, route: ModelRoute):
        return contextlib.nullcontext()

    def render(self, request: GenerationRequest, relay: Relay) -> Any:
        (result,) = relay.answers
        if len(result.vectors) != len(request.texts):
            raise ApiError.bad_gateway(
                f"The model server returned {len(result.vectors)} embeddings for {len(request.texts)} inputs."
            )
        body = request.body
        payload = embeddings_response(body.model, result.vectors, result.prompt_tokens, body.encoding_format,
                                      dimensions=body.dimensions)
        return json_response(payload, headers=relay.headers)


CHAT_PROTOCOL = ChatProtocol()
COMPLETION_PROTOCOL = CompletionProtocol()
EMBEDDING_PROTOCOL = EmbeddingProtocol()
