"""Server-sent events for OpenAI streams: relay upstream parts as chunks, token by token.

The generator runs under daphne's event loop as the body of a StreamingHttpResponse (an async
iterator, so Django does not buffer it). When the client disconnects, Django cancels it; the
`finally` cancels the calls' pump tasks, which close their HTTP requests (stopping Ollama) and
release their slots.

While a request waits in the queue, or an upstream call is silent (a long prompt evaluation), a
`: keep-alive` comment goes out every SSE_KEEPALIVE_SECONDS so proxies and clients keep the
connection. Never `: ping`: Continue takes a comment starting with "ping" as the end of the stream.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from django.conf import settings
from django.http import StreamingHttpResponse

from inference.nodes import UPSTREAM_ERRORS
from inference.openai_format import SSE_DONE, sse_error, sse_event
from inference.upstream import MergedStream, upstream_error
from portal.apierrors import ApiError

log = logging.getLogger(__name__)

KEEPALIVE = b": keep-alive\n\n"


async def sse_events(merged: MergedStream, chunker, model: str) -> AsyncIterator[bytes]:
    try:
        async for item in merged.items(settings.SSE_KEEPALIVE_SECONDS):
            if item is None:
                yield KEEPALIVE
                continue
            index, part = item
            for chunk in chunker.feed(index, part):
                yield sse_event(chunk)
        for chunk in chunker.finish():
            yield sse_event(chunk)
        yield SSE_DONE
    except (ApiError, *UPSTREAM_ERRORS) as exc:
        # The status line is long gone: report the failure in-stream, as OpenAI does, then close.
        log.warning("stream for %s failed after it started: %s", model, exc)
        yield sse_error(upstream_error(exc, model))
    finally:
        await merged.aclose()


def event_stream_response(events: AsyncIterator[bytes], headers: dict[str, str]) -> StreamingHttpResponse:
    response = StreamingHttpResponse(events, content_type="text/event-stream", headers=headers)
    response["Cache-Control"] = "no-cache"
    # nginx buffers proxied responses unless told not to; tokens must arrive as they are made.
    response["X-Accel-Buffering"] = "no"
    return response
