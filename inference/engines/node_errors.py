"""Errors from nodes (Ollama or OpenAI-compatible servers) mapped to OpenAI-shaped API errors (common/apierrors.py).

A node's error text is never passed on word for word: it can name the node's host, its addresses
and file paths ("error loading model /root/.ollama/models/blobs/sha256-..."). Clients get a message
of our own with the request id; the full text goes to the log under the same id. What is useful and
safe is kept: a capability the model lacks, a prompt that does not fit the context.
"""

from __future__ import annotations

import contextvars
import logging
import re

from common.apierrors import ApiError

log = logging.getLogger(__name__)

# The id of the API request being served (inference/web/middleware.py sets it), for messages and logs.
request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("gatehouse_request_id", default=None)

# Ollama rejects a full queue synchronously with 503; the request was never started, so a client
# retry is safe. Two seconds is short enough for chat UIs and well under the 60 s the SDKs honour.
BUSY_RETRY_AFTER = 2

# Ollama 5xx texts that will fail again however often the client retries (bad model file, not
# enough memory, a malformed option we sent). The SDKs retry every 5xx twice unless told otherwise,
# which would triple the load on an already unhappy GPU server for nothing.
_PERMANENT_UPSTREAM_MARKERS = (
    "requires more system memory",
    "must be of type",
    "error loading model",
    "unable to load model",
    "unknown model architecture",
    "invalid file magic",
    "does not support",
)

# "<name> does not support <capability>" -> (param, what we tell the client). The name Ollama
# prints is its internal one (registry.ollama.ai/library/x:latest), so we never echo it.
_CAPABILITY_PARAMS: dict[str, tuple[str | None, str]] = {
    "tools": ("tools", "does not support tools (function calling)"),
    "insert": ("suffix", "does not support `suffix` (fill-in-the-middle)"),
    "generate": ("model", "does not support text generation (is it an embedding model?)"),
    "completion": ("model", "does not support text generation (is it an embedding model?)"),
    "thinking": ("reasoning_effort", "does not support reasoning"),
    "vision": ("messages", "does not support image input"),
    "embedding": ("model", "does not support embeddings"),
}
_CAPABILITY_RE = re.compile(r"does not support (\w+)")

CONTEXT_LENGTH_EXCEEDED = "context_length_exceeded"
# How a node refuses a prompt longer than the context: "the prompt is longer than the context length
# currently available to the model; ..." (Ollama, llama-server runners without context shift), "request
# (N tokens) exceeds the available context size (M tokens), ..." (llama-server's, which Ollama passes on
# when truncate is off) and "the input length exceeds the context length" (Ollama's runner before
# v0.30.0). inference/openai_api/context_overflow.py says which fields make a node refuse.
_CONTEXT_REFUSALS = ("context length", "context size")



def _summary(lowered: str, model: str) -> str:
    """What went wrong upstream, in our words, from the markers in the node's text."""
    if "requires more system memory" in lowered or "out of memory" in lowered:
        why = "it does not have enough memory for the model (it requires more system memory than is available)"
    elif "error loading model" in lowered or "unable to load model" in lowered or "invalid file magic" in lowered:
        why = "it could not load the model"
    elif "unknown model architecture" in lowered:
        why = "it cannot run this model (unknown model architecture)"
    elif "unexpectedly stopped" in lowered or "runner" in lowered:
        why = "its model runner stopped"
    else:
        why = "see the server log"
    return f"The model server failed while serving `{model}`: {why}"


def from_node(status_code: int, error_text: str, model: str, *, request: str | None = None) -> ApiError:
    """Map a node's error (Ollama's `ollama.ResponseError.status_code` / `.error`, or an OpenAI-compatible
    server's status and error message) to ours.

    `model` is the name the client asked for, so messages never leak Ollama's internal name.
    `status_code` is -1 when the error arrived as an `{"error": ...}` line inside a stream.
    `request` is the API request's id when the caller runs outside the request (the scheduler).
    """
    text = (error_text or "").strip() or "unknown error"
    lowered = text.lower()
    rid = request or request_id.get()
    ref = f" (request id {rid})" if rid else ""
    log.warning("node error for %s (request id %s): status %s: %s", model, rid, status_code, text)

    if status_code == 404:
        return ApiError.model_not_found(model)

    if "server busy" in lowered or status_code in (429, 503):
        # Queue full: nothing ran, retrying shortly is exactly right.
        return ApiError.backend_unavailable(
            "The model server is busy; please retry shortly.", retry_after=BUSY_RETRY_AFTER
        )

    if status_code == 400:
        match = _CAPABILITY_RE.search(lowered)
        if match:
            param, what = _CAPABILITY_PARAMS.get(
                match.group(1), (None, f"does not support {match.group(1)}")
            )
            return ApiError.invalid_request(
                f"The model `{model}` {what}.", param=param, code="unsupported_parameter"
            )
        if "top_logprobs" in lowered:
            return ApiError.invalid_request(
                f"The model server refused 'top_logprobs': it must be between 0 and 20{ref}.", param="top_logprobs")
        if "invalid input" in lowered:
            return ApiError.invalid_request(f"The model server refused the input as invalid{ref}.", param="input")
        if any(refusal in lowered for refusal in _CONTEXT_REFUSALS):
            # Kept: it says what to fix, and inference/openai_api/context_overflow.py reads the token counts in it.
            return ApiError.invalid_request(text, code=CONTEXT_LENGTH_EXCEEDED)
        return ApiError.invalid_request(f"The model server refused the request{ref}.")

    if status_code in (401, 403):
        # The node (a provider, a server started with --api-key) wants another key than the one it got:
        # an administrator's fix, never the caller's, and not one a retry makes.
        return ApiError.bad_gateway(
            f"The model server refused Gatehouse's credentials for `{model}`; an administrator must check the "
            f"node's API key{ref}.", permanent=True)

    permanent = any(marker in lowered for marker in _PERMANENT_UPSTREAM_MARKERS)
    if 400 <= status_code < 500:
        # Any other 4xx from upstream (401/403 from a proxy, 405, 499 cancelled) is our own
        # misconfiguration or cancellation, not the client's fault: report a gateway error, and
        # one that will not fix itself on retry.
        permanent = status_code != 499
    return ApiError.bad_gateway(f"{_summary(lowered, model)}{ref}.", permanent=permanent)
