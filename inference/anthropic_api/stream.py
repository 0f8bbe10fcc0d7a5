"""Relaying a generation as a Messages API event stream: `event:` lines, as Anthropic's SDKs require.

The same relay as inference/streaming.py `sse_events` (which writes OpenAI's unnamed `data:` chunks): a
request still waiting for its turn gets `: queued position=N estimated-wait-ms=M` comments, a silent
upstream gets `: keep-alive` comments (both ignored by SSE readers), and a failure after the stream started
is an `error` event, which the SDKs raise as the matching typed error. The message starts at once
(`message_start`, `ping`), so a client sees its request accepted even while it waits.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator

from django.conf import settings

from common.apierrors import ApiError
from inference.anthropic_api import errors
from inference.anthropic_api.format import MessageEvents, sse
from inference.engines import NodeFailure
from inference.scheduler.scheduling_errors import SchedulingError
from inference.streaming import KEEPALIVE, QUEUE_POSITION_SECONDS, WaitingStream, position_comment
from inference.upstream import MergedStream, upstream_error

log = logging.getLogger(__name__)


async def message_events(stream: MergedStream | WaitingStream, events: MessageEvents) -> AsyncIterator[bytes]:
    admission = stream.admission if isinstance(stream, WaitingStream) else None
    merged = stream.merged if isinstance(stream, WaitingStream) else stream
    tick = min(QUEUE_POSITION_SECONDS, settings.SSE_KEEPALIVE_SECONDS) if admission else settings.SSE_KEEPALIVE_SECONDS
    try:
        for name, data in events.start():
            yield sse(name, data)
        if admission is not None:
            yield position_comment(admission)
        last_sent = time.monotonic()
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
            _, part = item
            for name, data in events.feed(part):
                yield sse(name, data)
        for name, data in events.finish():
            yield sse(name, data)
    except (ApiError, NodeFailure, SchedulingError) as exc:
        log.warning("Messages stream for %s failed after it started: %s", events.model, exc)
        error = errors.as_api_error(exc) if isinstance(exc, SchedulingError) else upstream_error(exc)
        yield sse("error", errors.event_body(error))
    finally:
        await merged.aclose()
