"""Count the tokens a request used, for its rate limits, including a stream the client abandoned.

Servers report exact counts only in a call's last part (inference/engines/parts.py). A stream that
ends early (the client left, the node failed) never gets there, so until then each part relayed
counts as one generated token (servers stream about one token a part) and the prompt counts as
estimated at admission. A call that never got a slot used nothing.
"""

from __future__ import annotations

import time
from typing import Any

from inference.engines.parts import Embeddings, Part
from inference.engines.request import CHAT, COMPLETION, GenerationRequest

CHARS_PER_TOKEN = 4  # a rough estimate for a prompt, until the node reports its count

class CallMeter:
    """The tokens of one upstream call."""

    def __init__(self, prompt_estimate: int) -> None:
        self.prompt_estimate = prompt_estimate
        self.started = False
        self.node = ""
        self.parts = 0
        self.first_part_at: float | None = None  # time.monotonic()
        self.final: tuple[int, int] | None = None  # (prompt, completion) as the node reported them
        self.gpu_ns = 0  # the node's load, prompt evaluation and generation durations

    def start(self, node: str) -> None:
        self.started = True
        self.node = node

    def observe(self, part: Part | Embeddings) -> None:
        """A streamed part, or a whole non-streamed answer."""
        if self.first_part_at is None:
            self.first_part_at = time.monotonic()
        if isinstance(part, Embeddings):
            self.final = (part.prompt_tokens, 0)
        elif part.done:
            self.final = (part.prompt_tokens or 0, part.completion_tokens or 0)
            self.gpu_ns = part.gpu_ns
        else:
            self.parts += 1

    @property
    def prompt_tokens(self) -> int:
        if self.final is not None:
            return self.final[0]
        return self.prompt_estimate if self.started else 0

    @property
    def completion_tokens(self) -> int:
        return self.final[1] if self.final is not None else self.parts


def _chars(text: Any) -> int:
    return len(text) if isinstance(text, str) else 0


def prompt_estimates(request: GenerationRequest) -> list[int]:
    """About how many prompt tokens each upstream call of a request carries (images and tool schemas
    not counted), until the node reports the count."""
    if request.operation == CHAT:
        chars = sum(_chars(message.text) for message in request.body.messages)
        per_call = [chars] * request.call_count
    elif request.operation == COMPLETION:
        suffix = _chars(getattr(request.body, "suffix", None))
        per_call = [_chars(request.texts[request.call_index(i)[0]]) + suffix for i in range(request.call_count)]
    else:
        per_call = [sum(_chars(text) for text in request.texts)]
    return [-(-chars // CHARS_PER_TOKEN) for chars in per_call]


class RequestMeter:
    """All calls of one request."""

    def __init__(self, prompt_estimates: list[int]) -> None:
        self.calls = [CallMeter(estimate) for estimate in prompt_estimates]

    @property
    def estimate(self) -> int:
        return sum(call.prompt_estimate for call in self.calls)

    @property
    def prompt_tokens(self) -> int:
        return sum(call.prompt_tokens for call in self.calls)

    @property
    def completion_tokens(self) -> int:
        return sum(call.completion_tokens for call in self.calls)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def first_part_at(self) -> float | None:
        times = [call.first_part_at for call in self.calls if call.first_part_at is not None]
        return min(times) if times else None

    @property
    def gpu_seconds(self) -> float:
        return sum(call.gpu_ns for call in self.calls) / 1e9

    @property
    def node(self) -> str:
        return next((call.node for call in self.calls if call.node), "")
