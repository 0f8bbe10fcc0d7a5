"""`POST /v1/messages/count_tokens`: how many input tokens a Messages request would take.

Counted by the model's own tokenizer where a server offers one: llama.cpp's llama-server renders the chat
template (`POST /apply-template`) and tokenizes the result (`POST /tokenize`), which gives the count a
generation would report. Only a server where the model is ready is asked (a llama-server router would
otherwise load the model just to count), briefly; tokenizing takes none of the server's generation slots.

Elsewhere (Ollama has no tokenizer endpoint; other servers, or a model loaded nowhere) it is an estimate,
the one the rate limits use before a node reports its count (inference/accounting/metering.py):
characters / 4, rounded up, over everything the model reads: the system prompt, the messages' text, tool
calls and results, and the tool definitions (names, descriptions, schemas as JSON), which in a coding
agent's request are often most of the prompt. Images are not counted.

Counting takes no queue slot and no rate limit: it generates nothing.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx

from inference import registry
from inference.accounting.metering import CHARS_PER_TOKEN
from inference.anthropic_api.schemas import CountTokensRequest
from inference.anthropic_api.translate import chat_messages, tool_fields
from inference.engines.openai import auth_headers, client_for
from inference.registry import ModelRoute
from inference.scheduler import queue

log = logging.getLogger(__name__)

TOKENIZE_TIMEOUT_SECONDS = 5.0


def _chars(message: dict) -> int:
    content = message.get("content")
    if isinstance(content, list):
        count = sum(len(part.get("text") or "") for part in content)
    else:
        count = len(content or "")
    for call in message.get("tool_calls") or ():
        count += len(call["function"]["name"]) + len(call["function"]["arguments"])
    return count


def estimate_input_tokens(body: CountTokensRequest) -> int:
    chars = sum(_chars(message) for message in chat_messages(body))
    for tool in body.tools or ():
        chars += len(tool.name) + len(tool.description or "") + len(json.dumps(tool.input_schema or {}))
    return -(-chars // CHARS_PER_TOKEN)


async def _ready_tokenizer_nodes(route: ModelRoute) -> list[registry.NodeInfo]:
    nodes = [node for node in [await registry.node_info(url) for url in route.node_urls]
             if node is not None and node.enabled and node.kind == "openai"]
    if not nodes:
        return []
    states = await queue.model_states({route.ollama_name: [node.url for node in nodes]})
    placement = states[route.ollama_name].placement
    return [node for node in nodes if placement.get(node.url) == "ready"]


async def _tokenize(node: registry.NodeInfo, route: ModelRoute, body: CountTokensRequest) -> int:
    client, headers = client_for(node), auth_headers(node.api_key)
    template: dict[str, Any] = {"model": route.ollama_name, "messages": chat_messages(body), **tool_fields(body)}
    rendered = await client.post("/apply-template", json=template, headers=headers, timeout=TOKENIZE_TIMEOUT_SECONDS)
    rendered.raise_for_status()
    tokens = await client.post("/tokenize", headers=headers, timeout=TOKENIZE_TIMEOUT_SECONDS, json={
        "model": route.ollama_name, "content": rendered.json()["prompt"], "add_special": True, "parse_special": True})
    tokens.raise_for_status()
    return len(tokens.json()["tokens"])


async def count_input_tokens(body: CountTokensRequest, route: ModelRoute) -> int:
    try:
        nodes = await _ready_tokenizer_nodes(route)
    except Exception:  # Redis unreachable: the estimate needs no store
        log.warning("count_tokens could not read where %s is ready; estimating", route.public_id, exc_info=True)
        nodes = []
    for node in nodes:
        try:
            return await _tokenize(node, route, body)
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            # No such endpoint (not a llama-server), a template that cannot take the request (images on a
            # text model), a slow or gone server: the next server, or the estimate.
            log.info("count_tokens: %s could not tokenize for %s: %r", node.url, route.public_id, exc)
    return estimate_input_tokens(body)
