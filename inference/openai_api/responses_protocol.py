"""The Responses API front protocol: POST /v1/responses, stateless (Codex CLI, the OpenAI Agents SDK).

A protocol object for the pipeline (inference/pipeline.py), like the chat route's: the Responses body
(inference/openai_api/responses_schemas.py) becomes a canonical chat request, built as a chat body and
validated by the chat schema so the same rules apply, and the canonical parts are rendered as a
`response` object or its event stream (inference/openai_api/responses_format.py). The queue, limits, usage
records and failover are the pipeline's, whatever engine serves the model.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from common.apierrors import ApiError
from inference.engines.request import CHAT, GenerationRequest
from inference.openai_api import context_overflow
from inference.openai_api.model_defaults import apply_model_defaults
from inference.openai_api.openai_protocol import require_generative
from inference.openai_api.responses_format import ResponseEvents, new_id, whole_response
from inference.openai_api.responses_schemas import InputContent, ResponsesRequest
from inference.openai_api.schemas import ChatCompletionRequest
from inference.openai_api.schemas import error_to_api as validation_error  # the chat schemas' own wording
from inference.pipeline import Relay
from inference.registry import ModelRoute
from inference.streaming import event_stream_response, relay_events
from inference.web.api import json_response

# Where a chat field came from in the Responses body, for an error the chat schema finds.
RESPONSES_NAMES = (("messages", "input"), ("max_completion_tokens", "max_output_tokens"),
                   ("response_format.json_schema.schema", "text.format.schema"),
                   ("response_format", "text.format"), ("reasoning_effort", "reasoning.effort"),
                   ("tool_choice.function", "tool_choice"))


@dataclass(frozen=True)
class ResponsesGeneration(GenerationRequest):
    """The canonical chat request, with the Responses body it came from: the response repeats parts of it."""

    responses: ResponsesRequest | None = None


def _content(content: str | list[InputContent]) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    parts: list[dict[str, Any]] = []
    for part in content:
        if part.type == "input_image":
            parts.append({"type": "image_url", "image_url": {"url": part.image_url}})
        elif part.type == "refusal":
            parts.append({"type": "refusal", "refusal": part.refusal})
        else:
            parts.append({"type": "text", "text": part.text})
    return parts


def _output_text(output: str | list[InputContent]) -> str:
    if isinstance(output, str):
        return output
    return "\n".join(part.text or part.refusal or "" for part in output)


def chat_messages(body: ResponsesRequest) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    if body.instructions:
        messages.append({"role": "system", "content": body.instructions})
    for item in body.input_items:
        if item.type == "message":
            messages.append({"role": item.role, "content": _content(item.content)})
        elif item.type == "function_call":
            call = {"id": item.call_id, "type": "function",
                    "function": {"name": item.name, "arguments": item.arguments or "{}"}}
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":  # the calls of one turn, in one chat message
                last.setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif item.type == "function_call_output":
            messages.append({"role": "tool", "tool_call_id": item.call_id, "content": _output_text(item.output)})
        # A reasoning item (an earlier turn's thinking, sent back by agents) has no place in a chat body.
    return messages


def chat_body(body: ResponsesRequest) -> dict[str, Any]:
    chat: dict[str, Any] = {
        "model": body.model, "messages": chat_messages(body), "stream": body.stream,
        "max_completion_tokens": body.max_output_tokens, "temperature": body.temperature, "top_p": body.top_p,
        "parallel_tool_calls": body.parallel_tool_calls, "user": body.user,
    }
    if body.tools:
        chat["tools"] = [{"type": "function", "function": tool.model_dump(exclude={"type"}, exclude_none=True)}
                         for tool in body.tools]
    if isinstance(body.tool_choice, str):
        chat["tool_choice"] = body.tool_choice
    elif body.tool_choice is not None:
        chat["tool_choice"] = {"type": "function", "function": {"name": body.tool_choice.name}}
    text_format = body.text.format if body.text else None
    if text_format is not None and text_format.type == "json_schema":
        chat["response_format"] = {"type": "json_schema", "json_schema": text_format.model_dump(
            exclude={"type"}, exclude_none=True, by_alias=True)}
    elif text_format is not None:
        chat["response_format"] = {"type": text_format.type}
    if body.reasoning is not None:
        chat["reasoning_effort"] = body.reasoning.effort
    return chat


def _in_responses_terms(error: ApiError) -> ApiError:
    param = error.param or ""
    for chat_name, responses_name in RESPONSES_NAMES:
        if param == chat_name or param.startswith(chat_name + "."):
            # Messages do not match items one for one (instructions, a turn's calls merged), so no index.
            renamed = responses_name + param[len(chat_name):] if chat_name != "messages" else responses_name
            error.message = error.message.replace(f"'{param}'", f"'{renamed}'").replace(
                f"'{chat_name}'", f"'{responses_name}'")
            error.param = renamed
            break
    return error


def canonical_chat(body: ResponsesRequest) -> ChatCompletionRequest:
    try:
        return ChatCompletionRequest.model_validate(chat_body(body))
    except ValidationError as exc:
        raise _in_responses_terms(validation_error(exc)) from None


def echo(body: ResponsesRequest, chat: ChatCompletionRequest) -> dict[str, Any]:
    """What a response repeats of its request; sampling values as used (the model's defaults filled in)."""
    text_format = body.text.format if body.text and body.text.format else None
    tool_choice = body.tool_choice or "auto"
    return {
        "model": body.model,
        "instructions": body.instructions,
        "max_output_tokens": chat.max_output_tokens,
        "metadata": body.metadata or {},
        "parallel_tool_calls": body.parallel_tool_calls is not False,
        "previous_response_id": None,
        "reasoning": {"effort": body.reasoning.effort if body.reasoning else None,
                      "summary": body.reasoning.summary if body.reasoning else None},
        "store": False,
        "temperature": chat.temperature,
        "text": {"format": text_format.model_dump(exclude_none=True, by_alias=True) if text_format
                 else {"type": "text"}},
        "tool_choice": tool_choice if isinstance(tool_choice, str) else tool_choice.model_dump(),
        "tools": [{"type": "function", "name": tool.name, "description": tool.description,
                   "parameters": tool.parameters, "strict": tool.strict} for tool in body.tools or []],
        "top_p": chat.top_p,
        "truncation": "disabled",
        "user": body.user,
    }


class ResponsesProtocol:
    schema = ResponsesRequest

    def canonical(self, body: ResponsesRequest, route: ModelRoute) -> GenerationRequest:
        require_generative(route)
        return ResponsesGeneration(CHAT, apply_model_defaults(canonical_chat(body), route), route, responses=body)

    def errors(self, route: ModelRoute):
        return context_overflow.reported_as_openai(route, param="input")

    def render(self, request: ResponsesGeneration, relay: Relay) -> Any:
        body, chat = request.responses, request.body
        response_id, created_at, repeated = new_id("resp"), int(time.time()), echo(body, chat)
        parallel = body.parallel_tool_calls is not False
        if relay.stream is not None:
            events = ResponseEvents(response_id, created_at, repeated, parallel_tool_calls=parallel)
            return event_stream_response(relay_events(relay.stream, events, body.model), relay.headers)
        (answer,) = relay.answers
        return json_response(whole_response(response_id, created_at, repeated, answer, parallel),
                             headers=relay.headers)


RESPONSES_PROTOCOL = ResponsesProtocol()
