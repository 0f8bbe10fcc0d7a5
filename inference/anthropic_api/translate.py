"""A Messages API body -> the canonical chat body (an OpenAI `ChatCompletionRequest`, which every engine serves).

Blocks map one to one where OpenAI has the same thing: text, base64 images (as data URIs), `tool_use` (an
assistant's tool call, its `input` as JSON arguments) and `tool_result` (a `tool` message; `is_error`
results are marked as errors in their text, which the model reads). Prior `thinking` blocks are dropped:
the models behind Gatehouse do not read back a signed trace, and their chat templates drop old reasoning
anyway. `thinking` turns reasoning on or off (`reasoning_effort`) on models that can think.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from common.apierrors import ApiError
from inference.anthropic_api.schemas import ContentBlock, CountTokensRequest, Message, MessagesRequest
from inference.openai_api.schemas import ChatCompletionRequest
from inference.registry import ModelRoute


def system_text(system: str | list[ContentBlock] | None) -> str:
    if isinstance(system, list):
        return "\n\n".join(block.text or "" for block in system)
    return system or ""


def _image_part(block: ContentBlock) -> dict[str, Any]:
    source = block.source
    return {"type": "image_url", "image_url": {"url": f"data:{source.media_type};base64,{source.data}"}}


def _tool_result_text(block: ContentBlock) -> str:
    content = block.content
    if isinstance(content, list):
        text = "\n".join(part.text or "" for part in content if part.type == "text")
    else:
        text = content or ""
    # OpenAI's tool message has no error flag: say it in the text, where the model sees it.
    return f"Error: {text}" if block.is_error else text


def _user_messages(blocks: list[ContentBlock]) -> list[dict[str, Any]]:
    """Tool results first (Anthropic puts them at the start of the user turn), then what the user said.
    Images inside tool results follow in the user message: an OpenAI tool message carries text only."""
    out: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for block in blocks:
        if block.type == "tool_result":
            out.append({"role": "tool", "tool_call_id": block.tool_use_id, "content": _tool_result_text(block)})
            if isinstance(block.content, list):
                parts.extend(_image_part(part) for part in block.content if part.type == "image")
        elif block.type == "text":
            parts.append({"type": "text", "text": block.text})
        elif block.type == "image":
            parts.append(_image_part(block))
    if parts:
        out.append({"role": "user", "content": parts})
    return out


def _assistant_message(blocks: list[ContentBlock]) -> dict[str, Any] | None:
    text = "".join(block.text or "" for block in blocks if block.type == "text")
    calls = [{"id": block.id, "type": "function",
              "function": {"name": block.name, "arguments": json.dumps(block.input or {}, ensure_ascii=False)}}
             for block in blocks if block.type == "tool_use"]
    if not text and not calls:
        return None  # only thinking: nothing the model reads back
    message: dict[str, Any] = {"role": "assistant", "content": text or None}
    if calls:
        message["tool_calls"] = calls
    return message


def chat_messages(body: CountTokensRequest) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    system = system_text(body.system)
    if system:
        messages.append({"role": "system", "content": system})
    for message in body.messages:
        messages.extend(_translate(message))
    return messages


def _translate(message: Message) -> list[dict[str, Any]]:
    if isinstance(message.content, str):
        return [{"role": message.role, "content": message.content}]
    if message.role == "assistant":
        translated = _assistant_message(message.content)
        return [translated] if translated else []
    if message.role == "system":
        return [{"role": "system", "content": system_text(message.content)}]
    return _user_messages(message.content)


def tool_fields(body: CountTokensRequest) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if body.tools:
        out["tools"] = [{"type": "function", "function": {
            "name": tool.name, "description": tool.description,
            "parameters": tool.input_schema or {"type": "object", "properties": {}}}} for tool in body.tools]
    choice = body.tool_choice
    if choice is not None:
        if choice.type == "tool":
            out["tool_choice"] = {"type": "function", "function": {"name": choice.name}}
        else:
            out["tool_choice"] = {"auto": "auto", "any": "required", "none": "none"}[choice.type]
        if choice.disable_parallel_tool_use:
            out["parallel_tool_calls"] = False
    return out


def reasoning_effort(body: CountTokensRequest, route: ModelRoute) -> str | None:
    """OpenAI's effort for Anthropic's `thinking`, only on models that can think: a model that cannot would
    refuse the whole request, and answering without a trace is what a client asking for one can use.
    A budget is a size, an effort a level: small budgets think a little, large ones hard."""
    thinking, effort = body.thinking, body.output_config.effort if body.output_config else None
    if "thinking" not in route.capabilities or (thinking is None and effort is None):
        return None
    if thinking is not None and thinking.type == "disabled":
        return "none"
    if effort is not None:
        return effort
    budget = thinking.budget_tokens or 0
    if thinking.type != "enabled" or budget == 0:
        return "medium"
    return "low" if budget < 4096 else "medium" if budget < 16384 else "high"


def chat_request(body: MessagesRequest, route: ModelRoute) -> ChatCompletionRequest:
    messages = chat_messages(body)
    if not messages:
        raise ApiError.invalid_request("The messages hold nothing for the model to read: no text, image, tool "
                                       "call or tool result (thinking blocks are left out).", param="messages")
    chat: dict[str, Any] = {
        "model": body.model, "messages": messages, "max_tokens": body.max_tokens,
        "stream": bool(body.stream), **tool_fields(body),
    }
    for name in ("temperature", "top_p"):
        if getattr(body, name) is not None:
            chat[name] = getattr(body, name)
    if body.stop_sequences:
        chat["stop"] = body.stop_sequences
    user = (body.metadata or {}).get("user_id")
    if isinstance(user, str):
        chat["user"] = user
    effort = reasoning_effort(body, route)
    if effort is not None:
        chat["reasoning_effort"] = effort  # ignored by a schema without the field
    try:
        return ChatCompletionRequest.model_validate(chat)
    except ValidationError as exc:
        # What the Messages schema let through but a chat body cannot hold (an empty conversation once
        # thinking blocks are dropped, say): the client's request, so a 400 that says what is wrong.
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ApiError.invalid_request(
            f"This request cannot be served: {where}: {str(first['msg']).removeprefix('Value error, ')}.",
            param="messages") from None
