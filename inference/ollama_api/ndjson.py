"""Canonical parts (inference/engines/parts.py) -> Ollama's native answers: whole JSON objects, or NDJSON
streams of one object per line, the last with `done: true`, the done reason, token counts and durations.

Every chat line carries `message` (ollama-python's ChatResponse requires it); tool-call arguments are
JSON objects, not OpenAI's strings. Durations are Gatehouse's own measurements in nanoseconds:
`load_duration` is the wait for a slot (Ollama's includes its own queue and load waits too),
`prompt_eval_duration` the time to the first part, `eval_duration` the rest. After a stream has started,
an error is one more line, `{"error": "..."}`, as Ollama sends it (the client raises it).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.http import StreamingHttpResponse

from common.apierrors import ApiError
from inference.engines import NodeFailure
from inference.engines.parts import Part
from inference.scheduler.scheduling_errors import SchedulingError
from inference.streaming import WaitingStream
from inference.upstream import MergedStream, upstream_error
from inference.web import http_errors

log = logging.getLogger(__name__)

NDJSON = "application/x-ndjson"


def created_at() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def encode_line(obj: dict[str, Any]) -> bytes:
    # ASCII only: a raw U+2028 or U+0085 would be a line break to readers that split with str.splitlines().
    return json.dumps(obj, separators=(",", ":")).encode("ascii") + b"\n"


def _arguments(arguments_json: str) -> dict[str, Any]:
    try:
        arguments = json.loads(arguments_json or "{}")
    except ValueError:
        arguments = None
    # ollama-python wants an object; a model's malformed arguments are kept where a client can see them.
    return arguments if isinstance(arguments, dict) else {"arguments": arguments_json}


class Answer:
    """The lines of one chat (`message`) or generate (`response`) answer, and its clock."""

    def __init__(self, model: str, *, chat: bool) -> None:
        self.model = model
        self.chat = chat
        self.started = time.monotonic_ns()
        self.first_part: int | None = None
        self.queue_wait_ms = 0
        self.tool_calls = 0

    def elapsed_ns(self) -> int:
        return time.monotonic_ns() - self.started

    def _line(self, part: Part) -> dict[str, Any]:
        line: dict[str, Any] = {"model": self.model, "created_at": created_at()}
        if self.chat:
            message: dict[str, Any] = {"role": "assistant", "content": part.text}
            if part.thinking:
                message["thinking"] = part.thinking
            if part.tool_calls:
                message["tool_calls"] = [
                    {"function": {"index": self.tool_calls + k, "name": call.name,
                                  "arguments": _arguments(call.arguments_json)}}
                    for k, call in enumerate(part.tool_calls)]
                self.tool_calls += len(part.tool_calls)
            line["message"] = message
        else:
            line["response"] = part.text
            if part.thinking:
                line["thinking"] = part.thinking
        line["done"] = part.done
        return line

    def _metrics(self, part: Part) -> dict[str, Any]:
        now = time.monotonic_ns()
        total = now - self.started
        load = min(self.queue_wait_ms * 1_000_000, total)
        first = self.first_part or now
        metrics = {"done_reason": part.finish_reason or "stop", "total_duration": total, "load_duration": load,
                   "prompt_eval_count": part.prompt_tokens or 0,
                   "prompt_eval_duration": max(0, first - self.started - load),
                   "eval_count": part.completion_tokens or 0, "eval_duration": max(0, now - first)}
        # Ollama leaves out metrics that are zero.
        return {name: value for name, value in metrics.items() if value}

    def feed(self, part: Part) -> dict[str, Any] | None:
        """The line for one streamed part, or None for a part with nothing in it."""
        if self.first_part is None:
            self.first_part = time.monotonic_ns()
        if not (part.done or part.text or part.thinking or part.tool_calls):
            return None
        line = self._line(part)
        if part.done:
            line.update(self._metrics(part))
        return line

    def whole(self, part: Part) -> dict[str, Any]:
        """A non-streamed answer: one object with everything and the final fields."""
        self.first_part = self.first_part or time.monotonic_ns()
        whole = Part(text=part.text, thinking=part.thinking, tool_calls=part.tool_calls, done=True,
                     finish_reason=part.finish_reason, prompt_tokens=part.prompt_tokens,
                     completion_tokens=part.completion_tokens)
        return {**self._line(whole), **self._metrics(whole)}

    def unfinished(self) -> dict[str, Any]:
        """The final line of a stream whose call ended without saying it was done."""
        return self.feed(Part(done=True, finish_reason="stop")) or {}


async def ndjson_lines(stream: MergedStream | WaitingStream, answer: Answer) -> AsyncIterator[bytes]:
    admission = stream.admission if isinstance(stream, WaitingStream) else None
    merged = stream.merged if isinstance(stream, WaitingStream) else stream
    finished = False
    try:
        # NDJSON has no comments: silence while a request waits for its turn, as Ollama is silent while it loads.
        async for item in merged.items(settings.SSE_KEEPALIVE_SECONDS):
            if item is None:
                continue
            if admission is not None:  # its turn came
                answer.queue_wait_ms, admission = admission.queue_wait_ms, None
            _, part = item
            line = answer.feed(part)
            if line is not None:
                yield encode_line(line)
            finished = finished or part.done
        if not finished:
            yield encode_line(answer.unfinished())
    except (ApiError, NodeFailure, SchedulingError) as exc:
        log.warning("Ollama API stream for %s failed after it started: %s", answer.model, exc)
        error = http_errors.to_api_error(exc) if isinstance(exc, SchedulingError) else upstream_error(exc)
        yield encode_line({"error": error.message if error is not None else "the model server failed"})
    finally:
        await merged.aclose()


def ndjson_response(lines: AsyncIterator[bytes], headers: dict[str, str]) -> StreamingHttpResponse:
    response = StreamingHttpResponse(lines, content_type=NDJSON, headers=headers)
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx would hold the tokens back
    return response
