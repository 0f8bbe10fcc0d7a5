"""The Ollama front protocol: /ollama/api/chat, /generate, /embed and /embeddings, for the pipeline
(inference/pipeline.py). Each request gets its own protocol object, which holds the answer's clock.

What a node would do with an empty request (load the model, or unload it with `keep_alive: 0`) is
Gatehouse's to decide (the swap actor loads and unloads), so such a request is answered at once, as Ollama
answers it, without a call (`nothing_to_run`). The view answers it before the pipeline, so that it leaves
no usage record; one too large for that check is stopped here, and `NothingToRun` carries its answer
past the pipeline to the view.
"""

from __future__ import annotations

from typing import Any

from common.apierrors import ApiError
from inference.engines.request import CHAT, EMBEDDING, GenerationRequest
from inference.ollama_api import translate
from inference.ollama_api.ndjson import Answer, created_at, ndjson_lines, ndjson_response
from inference.ollama_api.schemas import ChatRequest, EmbeddingsRequest, EmbedRequest, GenerateRequest
from inference.openai_api import context_overflow
from inference.openai_api.embeddings import EMPTY_INPUT_TEXT, truncate_dimensions
from inference.openai_api.model_defaults import apply_model_defaults
from inference.openai_api.schemas import EmbeddingRequest
from inference.pipeline import QUEUE_WAIT_HEADER, Relay
from inference.registry import ModelRoute
from inference.web.api import json_response


class NothingToRun(ApiError):
    """A request with nothing to generate or embed: its answer, given without calling a node."""

    def __init__(self, answer: dict[str, Any], *, stream: bool) -> None:
        super().__init__(200, "nothing to run")
        self.answer = answer
        self.stream = stream


def _load_answer(body: ChatRequest | GenerateRequest, *, chat: bool) -> NothingToRun:
    reason = "unload" if body.keep_alive in (0, "0", "0s") else "load"
    answer: dict[str, Any] = {"model": body.model, "created_at": created_at()}
    answer.update({"message": {"role": "assistant", "content": ""}} if chat else {"response": ""})
    return NothingToRun({**answer, "done": True, "done_reason": reason}, stream=bool(body.stream))


def _require_generative(route: ModelRoute, model: str, what: str) -> None:
    if route.kind == "embedding":
        raise ApiError.invalid_request(f'"{model}" does not support {what}', param="model")


class _Generating:
    """Chat and generate: both render parts as Ollama's lines."""

    chat = True
    schema: Any = None

    def __init__(self) -> None:
        self.answer = Answer("", chat=self.chat)  # its clock starts with the request

    def errors(self, route: ModelRoute):
        return context_overflow.reported_as_openai(route, param="messages" if self.chat else "prompt")

    def render(self, request: GenerationRequest, relay: Relay) -> Any:
        answer = self.answer
        answer.model = request.body.model  # echoed as the client spelled it, as Ollama does
        answer.queue_wait_ms = int(relay.headers.get(QUEUE_WAIT_HEADER, 0))
        if relay.stream is not None:
            return ndjson_response(ndjson_lines(relay.stream, answer), relay.headers)
        (part,) = relay.answers
        return json_response(answer.whole(part), headers=relay.headers)


class ChatProtocol(_Generating):
    schema = ChatRequest

    def nothing_to_run(self, body: ChatRequest) -> NothingToRun | None:
        return None if body.messages else _load_answer(body, chat=True)

    def canonical(self, body: ChatRequest, route: ModelRoute) -> GenerationRequest:
        if nothing := self.nothing_to_run(body):
            raise nothing
        _require_generative(route, body.model, "chat")
        return GenerationRequest(CHAT, apply_model_defaults(translate.chat_body(body), route), route)


class GenerateProtocol(_Generating):
    chat = False
    schema = GenerateRequest

    def nothing_to_run(self, body: GenerateRequest) -> NothingToRun | None:
        return None if body.prompt or body.suffix or body.images else _load_answer(body, chat=False)

    def canonical(self, body: GenerateRequest, route: ModelRoute) -> GenerationRequest:
        if nothing := self.nothing_to_run(body):
            raise nothing
        _require_generative(route, body.model, "generate")
        if body.suffix and route.capabilities and "insert" not in route.capabilities:
            raise ApiError.invalid_request(f"{body.model} does not support insert", param="suffix")
        canonical = apply_model_defaults(translate.generate_body(body), route)
        operation = translate.generate_operation(body)
        if operation == CHAT:
            return GenerationRequest(CHAT, canonical, route)
        if canonical.max_tokens is None:
            # Ollama generates until the model stops (or the context is full); the canonical completion's
            # own default would cut the answer at 16 tokens.
            canonical = canonical.model_copy(update={"max_tokens": route.context_length})
        return GenerationRequest(operation, canonical, route, texts=(canonical.prompt,))


class _Embedding:
    def __init__(self) -> None:
        self.answer = Answer("", chat=False)  # for its clock

    def errors(self, route: ModelRoute):
        return context_overflow.reported_as_openai(route, param="input")

    def _canonical(self, model: str, texts: list[str], route: ModelRoute) -> GenerationRequest:
        texts = [text or EMPTY_INPUT_TEXT for text in texts]
        body = translate.validated(EmbeddingRequest, {"model": model, "input": texts})
        return GenerationRequest(EMBEDDING, body, route, texts=tuple(texts))

    def _vectors(self, request: GenerationRequest, relay: Relay) -> tuple[list[list[float]], int]:
        (result,) = relay.answers
        if len(result.vectors) != len(request.texts):
            raise ApiError.bad_gateway(
                f"the model server returned {len(result.vectors)} embeddings for {len(request.texts)} inputs")
        return [list(vector) for vector in result.vectors], result.prompt_tokens


class EmbedProtocol(_Embedding):
    schema = EmbedRequest
    dimensions: int | None = None

    def nothing_to_run(self, body: EmbedRequest) -> NothingToRun | None:
        return None if body.texts else NothingToRun({"model": body.model, "embeddings": []}, stream=False)

    def canonical(self, body: EmbedRequest, route: ModelRoute) -> GenerationRequest:
        if nothing := self.nothing_to_run(body):
            raise nothing
        self.dimensions = body.dimensions
        return self._canonical(body.model, body.texts, route)

    def render(self, request: GenerationRequest, relay: Relay) -> Any:
        vectors, tokens = self._vectors(request, relay)
        if self.dimensions is not None:
            vectors = [truncate_dimensions(vector, self.dimensions) for vector in vectors]
        answer = {"model": request.body.model, "embeddings": vectors,
                  "total_duration": self.answer.elapsed_ns(), "prompt_eval_count": tokens}
        return json_response(answer, headers=relay.headers)


class EmbeddingsProtocol(_Embedding):
    """The older /api/embeddings: one prompt, one vector; an empty prompt gets an empty vector."""

    schema = EmbeddingsRequest

    def nothing_to_run(self, body: EmbeddingsRequest) -> NothingToRun | None:
        return None if body.prompt else NothingToRun({"embedding": []}, stream=False)

    def canonical(self, body: EmbeddingsRequest, route: ModelRoute) -> GenerationRequest:
        if nothing := self.nothing_to_run(body):
            raise nothing
        return self._canonical(body.model, [body.prompt], route)

    def render(self, request: GenerationRequest, relay: Relay) -> Any:
        vectors, _ = self._vectors(request, relay)
        return json_response({"embedding": vectors[0]}, headers=relay.headers)
