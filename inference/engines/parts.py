"""What every engine hands back, whatever the server spoke: the canonical generation events.

A front protocol (the OpenAI routes in inference/openai_api/openai_format.py) renders these and nothing else, so a
new engine only has to produce them and a new protocol only has to render them. The fields are the
union of what the servers report: Ollama gives thinking, whole tool calls, logprobs and exact token
counts in its last part; OpenAI-compatible servers give the same in their own shapes.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class TokenLogprob:
    token: str
    logprob: float
    top_logprobs: tuple[TokenLogprob, ...] = ()


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments_json: str  # OpenAI's wire form: a JSON object as a string


@dataclass
class Part:
    """One piece of a generation: a streamed delta, or a whole answer when not streamed.

    `done` marks the last part of a call; only then are `finish_reason` and the token counts set.
    """

    text: str = ""  # chat content, or completion text
    thinking: str = ""  # a reasoning model's trace
    tool_calls: tuple[ToolCall, ...] = ()  # whole calls (engines assemble streamed fragments)
    logprobs: tuple[TokenLogprob, ...] = ()
    done: bool = False
    finish_reason: str | None = None  # "stop", "length" (max tokens or a full context), "tool_calls"
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    gpu_ns: int = 0  # load + prompt evaluation + generation time, where the server says


@dataclass
class Embeddings:
    vectors: list[list[float]] = field(default_factory=list)
    prompt_tokens: int = 0
    done: bool = True  # a whole answer, as far as metering is concerned
