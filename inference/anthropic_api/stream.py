"""Relaying a generation as a Messages API event stream: `event:` lines, as Anthropic's SDKs require.

The relay itself is inference/streaming.py `relay_events`, the same for every protocol: a request still
waiting for its turn gets `: queued position=N estimated-wait-ms=M` comments, a silent upstream gets
`: keep-alive` comments (both ignored by SSE readers). This module is only the wire format: the message
starts at once (`message_start`, `ping`), so a client sees its request accepted even while it waits, and
a failure after the stream started is an `error` event, which the SDKs raise as the matching typed error.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from common.apierrors import ApiError
from inference.anthropic_api import errors
from inference.anthropic_api.format import MessageEvents, sse
from inference.engines.parts import Part
from inference.streaming import WaitingStream, relay_events
from inference.upstream import MergedStream


class AnthropicEvents:
    """The Messages API's named events, as an encoder for the shared relay."""

    def __init__(self, events: MessageEvents) -> None:
        self.events = events

    def opening(self) -> list[bytes]:
        return [sse(name, data) for name, data in self.events.start()]

    def feed(self, index: int, part: Part) -> list[bytes]:
        return [sse(name, data) for name, data in self.events.feed(part)]

    def closing(self) -> list[bytes]:
        return [sse(name, data) for name, data in self.events.finish()]

    def failure(self, error: ApiError) -> list[bytes]:
        return [sse("error", errors.event_body(error))]


def message_events(stream: MergedStream | WaitingStream, events: MessageEvents) -> AsyncIterator[bytes]:
    return relay_events(stream, AnthropicEvents(events), events.model)
