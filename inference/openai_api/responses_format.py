"""Canonical parts (inference/engines/parts.py) -> Responses API objects and their SSE events.

Shapes follow openai-python's `openai.types.responses` models, which `client.responses.create` and the
`client.responses.stream` helper read: a `response` object whose `output` holds a `reasoning` item (a
thinking model's trace, as its summary, where Ollama puts it too), a `message` item with `output_text`
content and `function_call` items. `output_text` is the SDKs' own convenience, never sent.

A stream is the event sequence the stream helper checks strictly: `response.created` first, every
content event after its item's `response.output_item.added`, every item done before
`response.completed` (or `response.incomplete`, or `response.failed` after an `error` event), each
event with a `sequence_number` and its `event:` line.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Sequence
from typing import Any

from common.apierrors import ApiError
from inference.engines.parts import Part, ToolCall
from inference.openai_api.openai_format import new_tool_call_id


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(24)}"


def response_usage(prompt_tokens: int | None, completion_tokens: int | None) -> dict[str, Any]:
    prompt, completion = prompt_tokens or 0, completion_tokens or 0
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + completion,
    }


# -- output items -----------------------------------------------------------------------------------


def reasoning_item(item_id: str, text: str | None, status: str) -> dict[str, Any]:
    summary = [] if text is None else [{"type": "summary_text", "text": text}]
    return {"id": item_id, "type": "reasoning", "summary": summary, "status": status}


def output_text(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def message_item(item_id: str, text: str | None, status: str) -> dict[str, Any]:
    content = [] if text is None else [output_text(text)]
    return {"id": item_id, "type": "message", "role": "assistant", "status": status, "content": content}


def function_call_item(item_id: str, call_id: str, call: ToolCall, arguments: str, status: str) -> dict[str, Any]:
    return {"id": item_id, "type": "function_call", "call_id": call_id, "name": call.name,
            "arguments": arguments, "status": status}


def response_object(response_id: str, created_at: int, echo: dict[str, Any], *, status: str,
                    output: list[dict[str, Any]], usage: dict[str, Any] | None,
                    error: dict[str, Any] | None = None) -> dict[str, Any]:
    """A `response` object; `echo` holds what it repeats of the request (model, tools, instructions...)."""
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "completed_at": int(time.time()) if status == "completed" else None,
        "error": error,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        **echo,
        "output": output,
        "usage": usage,
    }


def _status(finish_reason: str | None) -> str:
    # "length" is both the output cap and a full context: either way the answer was cut off.
    return "incomplete" if finish_reason == "length" else "completed"


def whole_response(response_id: str, created_at: int, echo: dict[str, Any], answer: Part,
                   parallel_tool_calls: bool) -> dict[str, Any]:
    """The response to a request that was not streamed, from its one whole answer."""
    status = _status(answer.finish_reason)
    calls: Sequence[ToolCall] = answer.tool_calls if parallel_tool_calls else answer.tool_calls[:1]
    output = []
    if answer.thinking:
        output.append(reasoning_item(new_id("rs"), answer.thinking, "completed"))
    if answer.text or not calls:
        output.append(message_item(new_id("msg"), answer.text, status))
    output += [function_call_item(new_id("fc"), new_tool_call_id(), call, call.arguments_json, "completed")
               for call in calls]
    return response_object(response_id, created_at, echo, status=status, output=output,
                           usage=response_usage(answer.prompt_tokens, answer.completion_tokens))


# -- streaming --------------------------------------------------------------------------------------


def _sse(event_type: str, payload: dict[str, Any]) -> bytes:
    # ensure_ascii: one event is always one `data:` line (see openai_format._json).
    data = json.dumps(payload, separators=(",", ":")).encode("ascii")
    return b"event: " + event_type.encode("ascii") + b"\ndata: " + data + b"\n\n"


class ResponseEvents:
    """Turns a request's streamed parts into Responses events (an `SseEncoder`, inference/streaming.py).

    One item is open at a time: a reasoning item while the model thinks, a message while it writes;
    each is closed (its `done` events) when something else begins. Engines hand over each tool call whole,
    so a function call item opens and closes at once.
    """

    def __init__(self, response_id: str, created_at: int, echo: dict[str, Any], *, parallel_tool_calls: bool):
        self.response_id, self.created_at, self.echo = response_id, created_at, echo
        self.parallel_tool_calls = parallel_tool_calls
        self.sequence = 0
        self.output: list[dict[str, Any]] = []  # every item so far, open ones as they stand
        self.open_item: dict[str, Any] | None = None
        self.open_text = ""
        self.calls = 0
        self.finish_reason: str | None = None
        self.prompt_tokens: int | None = None
        self.completion_tokens: int | None = None

    def _event(self, event_type: str, **fields: Any) -> bytes:
        payload = {"type": event_type, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return _sse(event_type, payload)

    def _response(self, status: str, **extra: Any) -> dict[str, Any]:
        usage = None if status == "in_progress" else response_usage(self.prompt_tokens, self.completion_tokens)
        return response_object(self.response_id, self.created_at, self.echo, status=status,
                               output=list(self.output), usage=usage, **extra)

    # -- the SseEncoder methods

    def opening(self) -> list[bytes]:
        snapshot = self._response("in_progress")
        return [self._event("response.created", response=snapshot),
                self._event("response.in_progress", response=snapshot)]

    def feed(self, index: int, part: Part) -> list[bytes]:
        events: list[bytes] = []
        if part.thinking:
            events += self._append("reasoning", part.thinking)
        if part.text:
            events += self._append("message", part.text)
        for call in part.tool_calls:
            if self.parallel_tool_calls or self.calls == 0:
                events += self._function_call(call)
        if part.done:
            self.finish_reason = part.finish_reason
            self.prompt_tokens, self.completion_tokens = part.prompt_tokens, part.completion_tokens
        return events

    def closing(self) -> list[bytes]:
        status = _status(self.finish_reason)
        events = self._close(status)
        if not any(item["type"] in ("message", "function_call") for item in self.output):
            # No answer came (nothing at all, or only thinking): still one empty message, as a whole response has.
            events += self._open("message") + self._close(status)
        event_type = "response.completed" if status == "completed" else "response.incomplete"
        return [*events, self._event(event_type, response=self._response(status))]

    def failure(self, error: ApiError) -> list[bytes]:
        if self.open_item is not None:
            self.open_item["status"] = "incomplete"
        code = "rate_limit_exceeded" if error.status == 429 else "server_error"
        failed = self._response("failed", error={"code": code, "message": error.message})
        return [self._event("error", code=error.code or code, message=error.message, param=error.param),
                self._event("response.failed", response=failed)]

    # -- items

    def _where(self) -> dict[str, Any]:
        return {"item_id": self.open_item["id"], "output_index": len(self.output) - 1}

    def _open(self, kind: str) -> list[bytes]:
        if kind == "reasoning":
            item = reasoning_item(new_id("rs"), None, "in_progress")
        else:
            item = message_item(new_id("msg"), None, "in_progress")
        self.output.append(item)
        self.open_item, self.open_text = item, ""
        events = [self._event("response.output_item.added", output_index=len(self.output) - 1, item=item)]
        if kind == "reasoning":
            events.append(self._event("response.reasoning_summary_part.added", **self._where(), summary_index=0,
                                      part={"type": "summary_text", "text": ""}))
        else:
            events.append(self._event("response.content_part.added", **self._where(), content_index=0,
                                      part=output_text("")))
        return events

    def _append(self, kind: str, delta: str) -> list[bytes]:
        events = []
        if self.open_item is None or self.open_item["type"] != kind:
            events = self._close("completed") + self._open(kind)
        self.open_text += delta
        if kind == "reasoning":
            events.append(self._event("response.reasoning_summary_text.delta", **self._where(), summary_index=0,
                                      delta=delta))
        else:
            events.append(self._event("response.output_text.delta", **self._where(), content_index=0,
                                      delta=delta, logprobs=[]))
        return events

    def _close(self, status: str) -> list[bytes]:
        item = self.open_item
        if item is None:
            return []
        where, text = self._where(), self.open_text
        if item["type"] == "reasoning":
            item.update(reasoning_item(item["id"], text, "completed"))
            events = [self._event("response.reasoning_summary_text.done", **where, summary_index=0, text=text),
                      self._event("response.reasoning_summary_part.done", **where, summary_index=0,
                                  part={"type": "summary_text", "text": text})]
        else:
            item.update(message_item(item["id"], text, status))
            events = [self._event("response.output_text.done", **where, content_index=0, text=text, logprobs=[]),
                      self._event("response.content_part.done", **where, content_index=0, part=output_text(text))]
        self.open_item, self.open_text = None, ""
        return [*events, self._event("response.output_item.done", output_index=where["output_index"], item=item)]

    def _function_call(self, call: ToolCall) -> list[bytes]:
        events = self._close("completed")
        self.calls += 1
        item_id, call_id = new_id("fc"), new_tool_call_id()
        self.output.append(function_call_item(item_id, call_id, call, "", "in_progress"))
        where = {"item_id": item_id, "output_index": len(self.output) - 1}
        events.append(self._event("response.output_item.added", output_index=where["output_index"],
                                  item=self.output[-1]))
        self.output[-1] = function_call_item(item_id, call_id, call, call.arguments_json, "completed")
        return [*events,
                self._event("response.function_call_arguments.delta", **where, delta=call.arguments_json),
                self._event("response.function_call_arguments.done", **where, name=call.name,
                            arguments=call.arguments_json),
                self._event("response.output_item.done", output_index=where["output_index"], item=self.output[-1])]
