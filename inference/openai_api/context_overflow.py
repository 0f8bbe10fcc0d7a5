"""A prompt longer than a model's context: refuse it as OpenAI does, or let Ollama cut it, per model.

Ollama's defaults cut silently: chat drops the oldest messages until the prompt fits `num_ctx`, a single
over-long prompt is cut to its start and end, and once the context is full during generation the runner
shifts it, forgetting the middle of the conversation (Ollama server/prompt.go chatPrompt,
llm/llama_server.go). A client of an OpenAI API expects the opposite: a 400 `context_length_exceeded`
it can act on, and generation that stops with `finish_reason: "length"` at the end of the context.

`Model.context_overflow` chooses. With "error" (the default) every chat and completion request carries
`truncate: false` and `shift: false`, so the node refuses what does not fit and stops at the end of the
context; the views turn the refusal into OpenAI's error with `reported_as_openai`.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

from common.apierrors import ApiError
from inference.engines.node_errors import CONTEXT_LENGTH_EXCEEDED
from inference.models import Model
from inference.registry import ModelRoute

ERROR = Model.ContextOverflow.ERROR
TRUNCATE = Model.ContextOverflow.TRUNCATE

# llama-server's refusal (which Ollama passes on as its error text) carries both numbers.
_LLAMA_SERVER_COUNTS = re.compile(r"request \((\d+) tokens\) exceeds the available context size \((\d+) tokens\)")


def request_fields(route: ModelRoute) -> dict[str, bool]:
    """Top-level fields for the node's /api/chat and /api/generate bodies.

    `shift` is a llama-server launch option since Ollama v0.30.0, so a request whose `shift` differs from
    the loaded runner's reloads the model (server/sched.go needsReload): anything else that loads or uses
    this model on a node (a preload, say) must send the same fields.
    """
    if route.context_overflow == TRUNCATE:
        return {}
    return {"truncate": False, "shift": False}


@contextlib.contextmanager
def reported_as_openai(route: ModelRoute, *, param: str) -> Iterator[None]:
    """Turn a node's refusal of an over-long prompt into OpenAI's `context_length_exceeded` for `param`
    ("messages" for chat, "prompt" for completions), with the numbers when the node gave them."""
    try:
        yield
    except ApiError as error:
        if error.code != CONTEXT_LENGTH_EXCEEDED:
            raise
        raise context_length_exceeded(route, param, error.message) from error


def context_length_exceeded(route: ModelRoute, param: str, node_message: str) -> ApiError:
    limit, requested = route.context_length, None
    counts = _LLAMA_SERVER_COUNTS.search(node_message)
    if counts:
        requested, limit = int(counts.group(1)), int(counts.group(2))
    what = "messages" if param == "messages" else "prompt"
    if requested is None:
        verb = "do" if what == "messages" else "does"
        message = (f"This model's maximum context length is {limit} tokens, and your {what} {verb} not fit in "
                   f"it. Please reduce the length of the {what}.")
    else:
        message = (f"This model's maximum context length is {limit} tokens. However, your {what} resulted in "
                   f"{requested} tokens. Please reduce the length of the {what}.")
    return ApiError.invalid_request(message, param=param, code=CONTEXT_LENGTH_EXCEEDED)
