"""Ollama's native API under /ollama: the generation routes hand a protocol to the pipeline, the model
routes read the catalogue snapshot. Every error is Ollama's `{"error": "..."}` with the status Ollama
would use: 404 `model 'x' not found` for a model the key may not use, 503 with Retry-After for a full
queue, 429 for a rate limit, 403 for what changes the models (pulls, deletes, pushes, creates, copies).

All async on daphne's event loop, like the OpenAI views.
"""

from __future__ import annotations

import json

from django.http import HttpResponse

from common.apierrors import ApiError
from inference import pipeline, registry
from inference.caller import authenticate
from inference.ollama_api import catalogue
from inference.ollama_api.ndjson import NDJSON, encode_line
from inference.ollama_api.protocol import (
    ChatProtocol,
    EmbeddingsProtocol,
    EmbedProtocol,
    GenerateProtocol,
    NothingToRun,
)
from inference.ollama_api.schemas import ShowRequest
from inference.openai_api.parsing import parse_request
from inference.openai_api.schemas import parse_body
from inference.web.api import api_endpoint, json_response, ollama_error_response, read_body

# What /api/version reports: the Ollama release whose native API this one follows. Clients gate features
# on it (tools, thinking, structured outputs need recent versions).
OLLAMA_VERSION = "0.32.15"

# A request with nothing to run is a model name and a few fields; only bodies this small are checked for it.
NOTHING_TO_RUN_BYTES = 4096

MANAGED = ("models are managed by the Gatehouse administrators: {action} is not available through this API. "
           "Ask an administrator to add the model you need.")


def _ollama_error(request, error: ApiError) -> HttpResponse:
    if error.code == "model_not_found":
        # The pipeline's words are OpenAI's; Ollama's clients know this sentence (some pull on a 404).
        error = ApiError(404, f"model '{_requested_model(request)}' not found", headers=error.headers)
    elif error.code == "queue_full":
        error.message = f"server busy, please try again. {error.message}"
    return ollama_error_response(error)


def _requested_model(request) -> str:
    try:
        body = json.loads(request.body or b"{}")
    except (ValueError, RecursionError):
        return ""
    model = body.get("model") or body.get("name") if isinstance(body, dict) else ""
    return pipeline.printable_model(model)  # a string, and not a megabyte of one echoed back


def _ollama_answer(request, error: ApiError) -> HttpResponse:
    if isinstance(error, NothingToRun):  # a load or unload request: answered as Ollama answers it
        return _nothing_to_run_response(error)
    return _ollama_error(request, error)


def ollama_endpoint(*methods: str):
    """Wrap an async view (inference/web/api.py `api_endpoint`): errors in Ollama's shape."""
    return api_endpoint(*methods, render=_ollama_answer)


@ollama_endpoint("GET")
async def root(request):
    # Clients probe the base URL before anything else and look for this text.
    return HttpResponse("Ollama is running", content_type="text/plain; charset=utf-8")


@ollama_endpoint("GET")
async def version(request):
    return json_response({"version": OLLAMA_VERSION})


def _nothing_to_run_response(nothing: NothingToRun) -> HttpResponse:
    if nothing.stream:
        return HttpResponse(encode_line(nothing.answer), content_type=NDJSON)
    return json_response(nothing.answer)


async def _generation(request, protocol):
    """The pipeline's answer, or the one to a request with nothing to run (a preload), given before the
    pipeline so that no usage record counts a request that ran nothing."""
    caller = await authenticate(request)  # before the body is read, as always
    raw = read_body(request)
    if len(raw) <= NOTHING_TO_RUN_BYTES:
        try:
            nothing = protocol.nothing_to_run(parse_body(protocol.schema, raw))
        except ApiError:
            nothing = None  # the pipeline answers it, and records it
        if nothing is not None:
            await pipeline.resolve_model(caller, nothing.answer.get("model") or _requested_model(request))
            return _nothing_to_run_response(nothing)
    return await pipeline.handle(request, protocol)


@ollama_endpoint("POST")
async def chat(request):
    return await _generation(request, ChatProtocol())


@ollama_endpoint("POST")
async def generate(request):
    return await _generation(request, GenerateProtocol())


@ollama_endpoint("POST")
async def embed(request):
    return await _generation(request, EmbedProtocol())


@ollama_endpoint("POST")
async def embeddings(request):
    return await _generation(request, EmbeddingsProtocol())


@ollama_endpoint("GET")
async def tags(request):
    caller = await authenticate(request)
    routes = [route for route in await registry.served_models() if caller.may_use(route.public_id)]
    return json_response({"models": await catalogue.tags(routes)})


@ollama_endpoint("GET")
async def ps(request):
    caller = await authenticate(request)
    routes = [route for route in await registry.all_models() if caller.may_use(route.public_id)]
    return json_response({"models": await catalogue.running(routes)})


@ollama_endpoint("POST")
async def show(request):
    caller = await authenticate(request)
    body = await parse_request(ShowRequest, read_body(request))
    if not body.model_name:
        raise ApiError.invalid_request("model is required")
    route = await pipeline.resolve_model(caller, body.model_name)
    return json_response(await catalogue.show(route))


def refused(action: str):
    @ollama_endpoint("GET", "POST", "DELETE", "PUT")
    async def view(request, *args, **kwargs):
        await authenticate(request)
        raise ApiError.permission_denied(MANAGED.format(action=action))

    view.__name__ = view.__qualname__ = f"refused_{action.replace(' ', '_')}"
    return view
