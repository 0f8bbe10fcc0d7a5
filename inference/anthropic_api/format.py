"""Canonical parts (inference/engines/parts.py) -> Messages API objects and stream events.

Shapes follow Anthropic's API reference ("Messages", "Streaming Messages"), checked against the `anthropic`
SDK's types: its stream helper builds the final message from the events alone, so every block must be
opened (`content_block_start`), filled (`*_delta`) and closed (`content_block_stop`) in order, and
`message_delta` carries the stop reason and the final token counts.

A thinking block carries a `signature` because the SDK's type requires one; ours signs nothing (the trace
is not sent back to the model, inference/anthropic_api/translate.py), so it is a fixed marker.
"""

from __future__ import annotations

import json
import secrets
import string
from typing import Any

from inference.engines.parts import Part, ToolCall

THINKING_SIGNATURE = "gatehouse-unsigned"
_ALPHABET = string.ascii_letters + string.digits


def _suffix() -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(24))


def new_message_id() -> str:
    return f"msg_{_suffix()}"


def new_tool_use_id() -> str:
    return f"toolu_{_suffix()}"


def stop_reason(part: Part | None, *, tool_calls: bool) -> str:
    if tool_calls:
        return "tool_use"
    # Servers do not say which stop sequence ended a reply, so a stop is always `end_turn`.
    return "max_tokens" if part is not None and part.finish_reason == "length" else "end_turn"


def tool_input(call: ToolCall) -> dict[str, Any]:
    """A tool call's arguments as the object Anthropic's `input` is; anything else a model wrote is kept
    under one key rather than lost."""
    try:
        value = json.loads(call.arguments_json or "{}")
    except ValueError:
        return {"arguments": call.arguments_json}
    return value if isinstance(value, dict) else {"arguments": value}


def usage(input_tokens: int | None, output_tokens: int | None) -> dict[str, int]:
    return {"input_tokens": input_tokens or 0, "output_tokens": output_tokens or 0,
            "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}


def message(message_id: str, model: str, part: Part) -> dict[str, Any]:
    """A whole `message` object from one whole (non-streamed) answer."""
    content: list[dict[str, Any]] = []
    if part.thinking:
        content.append({"type": "thinking", "thinking": part.thinking, "signature": THINKING_SIGNATURE})
    if part.text:
        content.append({"type": "text", "text": part.text})
    for call in part.tool_calls:
        content.append({"type": "tool_use", "id": new_tool_use_id(), "name": call.name, "input": tool_input(call)})
    return {
        "id": message_id, "type": "message", "role": "assistant", "model": model, "content": content,
        "stop_reason": stop_reason(part, tool_calls=bool(part.tool_calls)), "stop_sequence": None,
        "usage": usage(part.prompt_tokens, part.completion_tokens),
    }


class MessageEvents:
    """Turns the streamed parts of one answer into Messages stream events, as (event name, data) pairs."""

    def __init__(self, message_id: str, model: str, input_estimate: int) -> None:
        self.message_id = message_id
        self.model = model
        self.input_estimate = input_estimate
        self.blocks = 0  # blocks opened so far; the open one is blocks - 1
        self.open: str | None = None  # the type of the open block
        self.tool_calls = False
        self.finished = False

    def start(self) -> list[tuple[str, dict[str, Any]]]:
        # The prompt's count comes with the last part; until then the estimate the limits used.
        started = {"id": self.message_id, "type": "message", "role": "assistant", "model": self.model,
                   "content": [], "stop_reason": None, "stop_sequence": None,
                   "usage": usage(self.input_estimate, 0)}
        return [("message_start", {"type": "message_start", "message": started}), ("ping", {"type": "ping"})]

    def _close(self) -> list[tuple[str, dict[str, Any]]]:
        if self.open is None:
            return []
        events = []
        index = self.blocks - 1
        if self.open == "thinking":
            events.append(("content_block_delta", {"type": "content_block_delta", "index": index, "delta": {
                "type": "signature_delta", "signature": THINKING_SIGNATURE}}))
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
        self.open = None
        return events

    def _open(self, block: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        events = self._close()
        events.append(("content_block_start", {"type": "content_block_start", "index": self.blocks,
                                               "content_block": block}))
        self.open = block["type"]
        self.blocks += 1
        return events

    def _delta(self, delta: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        return "content_block_delta", {"type": "content_block_delta", "index": self.blocks - 1, "delta": delta}

    def feed(self, part: Part) -> list[tuple[str, dict[str, Any]]]:
        if self.finished:
            return []
        events: list[tuple[str, dict[str, Any]]] = []
        if part.thinking:
            if self.open != "thinking":
                events += self._open({"type": "thinking", "thinking": "", "signature": ""})
            events.append(self._delta({"type": "thinking_delta", "thinking": part.thinking}))
        if part.text:
            if self.open != "text":
                events += self._open({"type": "text", "text": ""})
            events.append(self._delta({"type": "text_delta", "text": part.text}))
        for call in part.tool_calls:
            # Engines hand over each call whole: one input delta carries all of it.
            self.tool_calls = True
            events += self._open({"type": "tool_use", "id": new_tool_use_id(), "name": call.name, "input": {}})
            events.append(self._delta({"type": "input_json_delta",
                                       "partial_json": json.dumps(tool_input(call), ensure_ascii=False)}))
        if part.done:
            events += self._finish(part)
        return events

    def _finish(self, part: Part | None) -> list[tuple[str, dict[str, Any]]]:
        self.finished = True
        events = self._close()
        counts = {"output_tokens": 0, "input_tokens": self.input_estimate}
        if part is not None:
            counts = {"output_tokens": part.completion_tokens or 0,
                      "input_tokens": part.prompt_tokens if part.prompt_tokens is not None else self.input_estimate}
        events.append(("message_delta", {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason(part, tool_calls=self.tool_calls), "stop_sequence": None},
            "usage": counts}))
        events.append(("message_stop", {"type": "message_stop"}))
        return events

    def finish(self) -> list[tuple[str, dict[str, Any]]]:
        """Once the stream has ended normally: close an answer whose last part never came."""
        return [] if self.finished else self._finish(None)


def sse(event: str, data: dict[str, Any]) -> bytes:
    # ensure_ascii: one event is always exactly one `data:` line, whatever line breaks the text holds.
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode("ascii")
