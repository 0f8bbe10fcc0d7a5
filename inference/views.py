"""OpenAI-compatible API views. Thin: authenticate, parse, resolve the model, call a function, render.

A generation request refused before generation takes it over (a bad body, an unknown model, too many
choices...) gets its usage record from inference/request_log.py; the others get it from generation.

All of them are async and run on daphne's event loop: no sync ORM, sync Redis or sync HTTP here.
"""

from __future__ import annotations

import time

from inference import context_overflow, registry, request_log
from inference.api import api_endpoint, json_response, read_body
from inference.caller import authenticate
from inference.generation import (
    Outcome,
    create_chat_completion,
    create_embeddings,
    create_text_completion,
    resolve_model,
)
from inference.model_defaults import apply_model_defaults
from inference.parsing import parse_request
from inference.schemas import ChatCompletionRequest, CompletionRequest, EmbeddingRequest
from inference.streaming import event_stream_response


def render(outcome: Outcome):
    if outcome.events is not None:
        return event_stream_response(outcome.events, outcome.headers)
    return json_response(outcome.payload, headers=outcome.headers)


def model_object(route: registry.ModelRoute) -> dict:
    return {"id": route.public_id, "object": "model", "created": route.created, "owned_by": route.owned_by}


@api_endpoint("GET")
async def list_models(request):
    principal = await authenticate(request)
    routes = [r for r in await registry.all_models() if principal.may_use(r.public_id)]
    return json_response({"object": "list", "data": [model_object(r) for r in routes]})


@api_endpoint("GET")
async def retrieve_model(request, model_id: str):
    principal = await authenticate(request)
    return json_response(model_object(await resolve_model(principal, model_id)))


async def _generate(request, schema, create, *, overflow_param: str | None = None):
    """The generation views' one sequence: authenticate, parse, resolve the model, generate, render.
    A failure before generation starts gets its usage record here (inference/request_log.py)."""
    principal = await authenticate(request)
    with request_log.until_generation(principal) as record:
        body = await parse_request(schema, read_body(request))
        record.asked_for(body.model, streamed=bool(getattr(body, "stream", False)))
        route = await resolve_model(principal, body.model)
        body = apply_model_defaults(body, route)
        if overflow_param is None:
            return render(await create(principal, body, route))
        with context_overflow.reported_as_openai(route, param=overflow_param):
            return render(await create(principal, body, route, created=int(time.time())))


@api_endpoint("POST")
async def chat_completions(request):
    return await _generate(request, ChatCompletionRequest, create_chat_completion, overflow_param="messages")


@api_endpoint("POST")
async def completions(request):
    return await _generate(request, CompletionRequest, create_text_completion, overflow_param="prompt")


@api_endpoint("POST")
async def embeddings(request):
    return await _generate(request, EmbeddingRequest, create_embeddings)
