"""`POST /v1/messages/count_tokens`: about how many input tokens a Messages request would take.

An estimate, the one the rate limits use before a node reports its count (inference/accounting/metering.py):
characters / 4, rounded up, over everything the model reads: the system prompt, the messages' text, tool
calls and results, and the tool definitions (names, descriptions, schemas as JSON), which in a coding
agent's request are often most of the prompt. Images are not counted. Counting takes no queue slot and no
rate limit: it calls no model.
"""

from __future__ import annotations

import json

from inference.accounting.metering import CHARS_PER_TOKEN
from inference.anthropic_api.schemas import CountTokensRequest
from inference.anthropic_api.translate import chat_messages


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
