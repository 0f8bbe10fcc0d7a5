"""Server-sent events for OpenAI streams: relay upstream parts as chunks, token by token.

The generator runs under daphne's event loop as the body of a StreamingHttpResponse (async
iterator, so Django does not buffer it: STYLE.md §7.2). When the client disconnects, Django cancels
it; the `finally` closes the upstream streams, which closes their HTTP requests and stops Ollama.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from django.http import StreamingHttpResponse

from inference.openai_format import SSE_DONE, sse_error, sse_event
from inference.upstream import UPSTREAM_ERRORS, MergedStream, upstream_error

log = logging.getLogger(__name__)


async def _events(merged: MergedStream, chunker, model: str) -> AsyncIterator[bytes]:
    try:
        async for index, part in merged:
            for chunk in chunker.feed(index, part):
                yield sse_event(chunk)
        for chunk in chunker.finish():
            yield sse_event(chunk)
        yield SSE_DONE
    except UPSTREAM_ERRORS as exc:
        # The status line is long gone: report the failure in-stream, as OpenAI does, then close.
        log.warning("upstream failed mid-stream for %s: %s", model, exc)
        yield sse_error(upstream_error(exc, model))
    finally:
        await merged.aclose()


def event_stream_response(merged: MergedStream, chunker, model: str) -> StreamingHttpResponse:
    response = StreamingHttpResponse(_events(merged, chunker, model), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    # nginx buffers proxied responses unless told not to; tokens must arrive as they are made.
    response["X-Accel-Buffering"] = "no"
    return response
