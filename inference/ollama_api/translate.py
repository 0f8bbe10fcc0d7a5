"""Ollama native request bodies -> the canonical OpenAI-shaped bodies every engine serves.

The engines take it from there: the Ollama engine translates back to the native API with the model's own
num_ctx and keep_alive, the OpenAI engine passes it on, so an Ollama client reaches every node kind.

/api/generate is served by two operations (`generate_operation`): a raw prompt or a fill-in-the-middle
request (`suffix`) is a completion, which the engines send untemplated (raw) or through the model's FIM
template; any other prompt is what Ollama would wrap in the model's chat template with the `system`
text, which is exactly a chat request of one user message (plus the system message), and the chat route
is the one OpenAI-compatible servers template too.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from common.apierrors import ApiError
from inference.engines.request import CHAT, COMPLETION
from inference.ollama_api.schemas import ChatRequest, GenerateRequest, GenerationBody, Message, Options
from inference.openai_api.schemas import ChatCompletionRequest, CompletionRequest

# Base64 starts of the image formats vision models take, for the data URI an OpenAI-compatible node needs.
_IMAGE_TYPES = {"iVBOR": "image/png", "/9j/": "image/jpeg", "R0lGOD": "image/gif", "UklGR": "image/webp"}

# Ollama's `think` levels as OpenAI's reasoning_effort (`false` is "none"; `true` leaves the model's default).
_EFFORT = {False: "none", "low": "low", "medium": "medium", "high": "high", "max": "max"}


def validated(schema, fields: dict[str, Any]):
    try:
        return schema.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ApiError.invalid_request(f"invalid request: {where}: {first['msg']}") from None


def _image_part(data: str) -> dict[str, Any]:
    mime = next((kind for start, kind in _IMAGE_TYPES.items() if data.startswith(start)), "image/png")
    return {"type": "image_url", "image_url": {"url": f"data:{mime};base64,{data}"}}


def _content(text: str, images: list[str] | None) -> str | list[dict[str, Any]]:
    if not images:
        return text
    return [{"type": "text", "text": text}, *(_image_part(image) for image in images)]


def _arguments(arguments: dict[str, Any] | str) -> str:
    return arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)


def chat_messages(messages: list[Message]) -> list[dict[str, Any]]:
    """Native messages as OpenAI's. Ollama matches a tool result to its call by the function's name
    (`tool_name`), OpenAI by an id: calls without an id get one, and each result takes the id of the
    earliest unanswered call of its name (or of any unanswered call, when it names none)."""
    out: list[dict[str, Any]] = []
    unanswered: list[tuple[str, str]] = []  # (id, function name) of calls still waiting for a result
    for i, msg in enumerate(messages):
        if msg.images and msg.role != "user":
            raise ApiError.invalid_request(f"invalid message {i}: only user messages may carry images")
        entry: dict[str, Any] = {"role": msg.role, "content": _content(msg.content or "", msg.images)}
        if msg.role == "assistant" and msg.tool_calls:
            calls = []
            for j, call in enumerate(msg.tool_calls):
                call_id = call.id or f"call_{i}_{j}"
                unanswered.append((call_id, call.function.name))
                calls.append({"id": call_id, "type": "function",
                              "function": {"name": call.function.name, "arguments": _arguments(call.function.arguments)}})
            entry["tool_calls"] = calls
        elif msg.role == "tool":
            call_id = msg.tool_call_id or next(
                (cid for cid, name in unanswered if name == msg.tool_name),
                unanswered[0][0] if unanswered and not msg.tool_name else f"call_result_{i}")
            unanswered = [(cid, name) for cid, name in unanswered if cid != call_id]
            entry["tool_call_id"] = call_id
            if msg.tool_name:
                entry["name"] = msg.tool_name
        out.append(entry)
    return out


def _response_format(fmt: Any) -> dict[str, Any] | None:
    if not fmt:
        return None
    if fmt == "json":
        return {"type": "json_object"}
    return {"type": "json_schema", "json_schema": {"name": "response", "schema": fmt}}


def _sampling(body: GenerationBody, options: Options) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "model": body.model, "stream": bool(body.stream), "temperature": options.temperature,
        "top_p": options.top_p, "seed": options.seed, "stop": options.stop, "max_tokens": options.max_tokens,
        "frequency_penalty": options.frequency_penalty, "presence_penalty": options.presence_penalty,
    }
    if body.think in _EFFORT:
        fields["reasoning_effort"] = _EFFORT[body.think]  # taken where the canonical body knows it
    return {name: value for name, value in fields.items() if value is not None}


def chat_body(body: ChatRequest) -> ChatCompletionRequest:
    fields = _sampling(body, body.opts)
    fields["messages"] = chat_messages(body.messages or [])
    if body.tools:
        fields["tools"] = body.tools
    fmt = _response_format(body.format)
    if fmt is not None:
        fields["response_format"] = fmt
    return validated(ChatCompletionRequest, fields)


def generate_operation(body: GenerateRequest) -> str:
    """COMPLETION for raw prompts and fill-in-the-middle, CHAT for a prompt the model's template wraps."""
    return COMPLETION if body.raw or body.suffix else CHAT


def generate_body(body: GenerateRequest) -> ChatCompletionRequest | CompletionRequest:
    fields = _sampling(body, body.opts)
    prompt = body.prompt or ""
    if generate_operation(body) == COMPLETION:
        if body.images:
            raise ApiError.invalid_request("images need a templated prompt: send them without raw or suffix")
        fields["prompt"] = prompt
        if body.suffix:
            fields["suffix"] = body.suffix
        return validated(CompletionRequest, fields)
    messages = [{"role": "system", "content": body.system}] if body.system else []
    messages.append({"role": "user", "content": _content(prompt, body.images)})
    fields["messages"] = messages
    fmt = _response_format(body.format)
    if fmt is not None:
        fields["response_format"] = fmt
    return validated(ChatCompletionRequest, fields)
