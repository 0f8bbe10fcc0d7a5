"""Ollama's native errors mapped to OpenAI-shaped API errors (portal/apierrors.py)."""

from __future__ import annotations

import re

from portal.apierrors import ApiError

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



def from_ollama(status_code: int, error_text: str, model: str) -> ApiError:
    """Map an Ollama native error (`ollama.ResponseError.status_code` / `.error`) to ours.

    `model` is the name the client asked for, so messages never leak Ollama's internal name.
    `status_code` is -1 when the error arrived as an `{"error": ...}` line inside a stream.
    """
    text = (error_text or "").strip() or "unknown error"
    lowered = text.lower()

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
            return ApiError.invalid_request(text, param="top_logprobs")
        if "invalid input" in lowered:
            return ApiError.invalid_request(text, param="input")
        if "context length" in lowered:
            return ApiError.invalid_request(text, code="context_length_exceeded")
        return ApiError.invalid_request(text)

    permanent = any(marker in lowered for marker in _PERMANENT_UPSTREAM_MARKERS)
    if 400 <= status_code < 500:
        # Any other 4xx from upstream (401/403 from a proxy, 405, 499 cancelled) is our own
        # misconfiguration or cancellation, not the client's fault: report a gateway error, and
        # one that will not fix itself on retry.
        permanent = status_code != 499
    return ApiError.bad_gateway(f"The model server failed: {text}", permanent=permanent)
