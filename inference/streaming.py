"""Server-sent events: relay upstream parts token by token, in the front protocol's wire format (an
`SseEncoder`: OpenAI's chunks for chat and completions, Responses events for /v1/responses).

The generator runs under daphne's event loop as the body of a StreamingHttpResponse (an async
iterator, so Django does not buffer it). When the client disconnects, Django cancels it; the
`finally` cancels the calls' pump tasks, which close their HTTP requests (stopping the server) and
release their slots.

A stream whose turn has not come starts at once (a `WaitingStream`): while it waits, a comment every
QUEUE_POSITION_SECONDS says where it stands (`: queued position=3 estimated-wait-ms=1200`), and when its
turn comes one more says how long it waited (`: queue-wait-ms=5321`). Comments, so every SDK ignores
them. While an upstream call is silent (a long prompt evaluation), a `: keep-alive` comment goes out
every SSE_KEEPALIVE_SECONDS so proxies and clients keep the connection. Never `: ping`: Continue takes
a comment starting with "ping" as the end of the stream.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from django.conf import settings
from django.http import StreamingHttpResponse

from common.apierrors import ApiError
from inference.engines import NodeFailure
from inference.engines.parts import Part
from inference.openai_api.openai_format import SSE_DONE, sse_error, sse_event
from inference.scheduler.scheduling_errors import SchedulingError
from inference.scheduler.slots import Admission
from inference.upstream import MergedStream, upstream_error
from inference.web import http_errors

log = logging.getLogger(__name__)

KEEPALIVE = b": keep-alive\n\n"
QUEUE_POSITION_SECONDS = 1.0


@dataclass
class WaitingStream:
    """A stream that started before its turn came: its calls, and the admission that says where it stands."""

    merged: MergedStream
    admission: Admission


def position_comment(admission: Admission) -> bytes:
    return f": queued position={admission.position} estimated-wait-ms={admission.eta_ms}\n\n".encode()


class SseEncoder(Protocol):
    """A front protocol's wire format for a stream: each method returns the SSE bytes to send."""

    def opening(self) -> list[bytes]: ...  # before anything else (before queue comments, too)

    def feed(self, index: int, part: Part) -> list[bytes]: ...  # one part of choice `index`

    def closing(self) -> list[bytes]: ...  # every call ended normally

    def failure(self, error: ApiError) -> list[bytes]: ...  # a call failed after the stream started


class OpenAIChunks:
    """Chat and completion chunks as OpenAI streams them: `data:` lines, then `data: [DONE]`."""

    def __init__(self, chunker) -> None:
        self.chunker = chunker

    def opening(self) -> list[bytes]:
        return []

    def feed(self, index: int, part: Part) -> list[bytes]:
        return [sse_event(chunk) for chunk in self.chunker.feed(index, part)]

    def closing(self) -> list[bytes]:
        return [*(sse_event(chunk) for chunk in self.chunker.finish()), SSE_DONE]

    def failure(self, error: ApiError) -> list[bytes]:
        return [sse_error(error)]


def sse_events(stream: MergedStream | WaitingStream, chunker, model: str) -> AsyncIterator[bytes]:
    return relay_events(stream, OpenAIChunks(chunker), model)


async def relay_events(stream: MergedStream | WaitingStream, encoder: SseEncoder, model: str) -> AsyncIterator[bytes]:
    """The stream's parts in the encoder's wire format, with the queue and keep-alive comments between them."""
    admission = stream.admission if isinstance(stream, WaitingStream) else None
    merged = stream.merged if isinstance(stream, WaitingStream) else stream
    tick = min(QUEUE_POSITION_SECONDS, settings.SSE_KEEPALIVE_SECONDS) if admission else settings.SSE_KEEPALIVE_SECONDS
    last_sent = time.monotonic()
    try:
        for event in encoder.opening():
            yield event
        if admission is not None:
            yield position_comment(admission)
        async for item in merged.items(tick):
            if item is None:
                if admission is not None and admission.waiting:
                    yield position_comment(admission)
                    last_sent = time.monotonic()
                elif time.monotonic() - last_sent >= settings.SSE_KEEPALIVE_SECONDS - 0.05:
                    yield KEEPALIVE
                    last_sent = time.monotonic()
                continue
            if admission is not None:  # its turn came: say how long it waited
                yield f": queue-wait-ms={admission.queue_wait_ms}\n\n".encode()
                admission = None
            last_sent = time.monotonic()
            index, part = item
            for event in encoder.feed(index, part):
                yield event
        for event in encoder.closing():
            yield event
    except (ApiError, NodeFailure, SchedulingError) as exc:
        # The status line is long gone: report the failure in-stream, as OpenAI does, then close.
        log.warning("stream for %s failed after it started: %s", model, exc)
        error = http_errors.to_api_error(exc) if isinstance(exc, SchedulingError) else upstream_error(exc)
        for event in encoder.failure(error):
            yield event
    finally:
        await merged.aclose()


def event_stream_response(events: AsyncIterator[bytes], headers: dict[str, str]) -> StreamingHttpResponse:
    response = StreamingHttpResponse(events, content_type="text/event-stream", headers=headers)
    response["Cache-Control"] = "no-cache"
    # nginx buffers proxied responses unless told not to; tokens must arrive as they are made.
    response["X-Accel-Buffering"] = "no"
    return response
