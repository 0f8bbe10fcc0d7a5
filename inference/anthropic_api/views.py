"""The Messages API routes. Keys come as `x-api-key` (Claude Code with ANTHROPIC_API_KEY, the SDKs'
default) or `Authorization: Bearer` (ANTHROPIC_AUTH_TOKEN); any `anthropic-version` and `anthropic-beta`
header is accepted, and the `?beta=true` Claude Code adds changes nothing."""

from __future__ import annotations

from inference import pipeline
from inference.anthropic_api.errors import anthropic_endpoint
from inference.anthropic_api.protocol import MESSAGES_PROTOCOL
from inference.anthropic_api.schemas import CountTokensRequest
from inference.anthropic_api.tokens import count_input_tokens
from inference.caller import authenticate
from inference.openai_api.parsing import parse_request
from inference.web.api import json_response, read_body


@anthropic_endpoint("POST")
async def messages(request):
    return await pipeline.handle(request, MESSAGES_PROTOCOL)


@anthropic_endpoint("POST")
async def count_tokens(request):
    caller = await authenticate(request)
    body = await parse_request(CountTokensRequest, read_body(request))
    route = await pipeline.resolve_model(caller, body.model)  # an unknown model is a 404, as for messages
    return json_response({"input_tokens": await count_input_tokens(body, route)})
