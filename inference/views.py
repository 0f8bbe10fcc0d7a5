"""OpenAI-compatible API views. Thin: each generation route hands its protocol to the pipeline
(inference/pipeline.py), which runs the whole request; the model routes read the catalogue snapshot.

All of them are async and run on daphne's event loop: no sync ORM, sync Redis or sync HTTP here.
"""

from __future__ import annotations

from inference import pipeline, registry
from inference.anthropic_api import models as anthropic_models
from inference.caller import authenticate
from inference.openai_api.openai_protocol import CHAT_PROTOCOL, COMPLETION_PROTOCOL, EMBEDDING_PROTOCOL
from inference.openai_api.responses_protocol import RESPONSES_PROTOCOL
from inference.web.api import api_endpoint, json_response


def model_object(route: registry.ModelRoute) -> dict:
    return {"id": route.public_id, "object": "model", "created": route.created, "owned_by": route.owned_by}


@api_endpoint("GET")
async def list_models(request):
    principal = await authenticate(request)
    routes = [r for r in await registry.served_models() if principal.may_use(r.public_id)]
    if anthropic_models.wants_anthropic_shape(request):
        return json_response(anthropic_models.model_page(routes))
    return json_response({"object": "list", "data": [model_object(r) for r in routes]})


@api_endpoint("GET")
async def retrieve_model(request, model_id: str):
    principal = await authenticate(request)
    route = await pipeline.resolve_model(principal, model_id)
    if anthropic_models.wants_anthropic_shape(request):
        return json_response(anthropic_models.model_info(route))
    return json_response(model_object(route))


@api_endpoint("POST")
async def chat_completions(request):
    return await pipeline.handle(request, CHAT_PROTOCOL)


@api_endpoint("POST")
async def responses(request):
    return await pipeline.handle(request, RESPONSES_PROTOCOL)


@api_endpoint("POST")
async def completions(request):
    return await pipeline.handle(request, COMPLETION_PROTOCOL)


@api_endpoint("POST")
async def embeddings(request):
    return await pipeline.handle(request, EMBEDDING_PROTOCOL)
