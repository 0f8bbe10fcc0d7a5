"""Read a raw SSE body the way strict clients do, so tests catch what lenient parsers forgive."""

from __future__ import annotations

import json


def parse_sse(body: str) -> tuple[list[dict], bool]:
    """Return (the JSON payloads, whether the stream ended with [DONE]).

    Fails on anything but `data:` lines, blank separators and Gatehouse's comments (`: keep-alive`, a
    waiting stream's `: queued ...` and `: queue-wait-ms=...`): Node v4 and Continue's parser choke on
    `event:`/`id:` lines, and Continue treats `: ping` as end of stream.
    """
    payloads: list[dict] = []
    done = False
    for event in body.split("\n\n"):
        if not event:
            continue
        lines = event.split("\n")
        assert len(lines) == 1, f"multi-line SSE event: {event!r}"
        line = lines[0]
        if line == ": keep-alive" or line.startswith((": queued position=", ": queue-wait-ms=")):
            continue
        assert line.startswith("data: "), f"unexpected SSE line: {line!r}"
        assert not done, "data after [DONE]"
        data = line[len("data: "):]
        if data == "[DONE]":
            done = True
            continue
        payloads.append(json.loads(data))
    assert body.endswith("\n\n"), "the stream must end with a complete event"
    return payloads, done
