"""OpenAI-shaped API errors.

Every 4xx/5xx the gateway returns carries `{"error": {"message", "type", "param", "code"}}` with all
four keys present: the Python SDK reads `.code`/`.param`/`.type` from that object and the Node SDK
builds its exception message from it (reference/openai.md §2). Views raise `ApiError` and render
`err.as_dict()` with `err.status` and `err.headers`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

INVALID_REQUEST = "invalid_request_error"
SERVER_ERROR = "server_error"

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
# v0.30.0). inference/context_overflow.py says which fields make a node refuse.
_CONTEXT_REFUSALS = ("context length", "context size")


class ApiError(Exception):
    """An error response in OpenAI's format, raised anywhere below a view."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = INVALID_REQUEST,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers: dict[str, str] = dict(headers or {})

    def __repr__(self) -> str:
        return f"ApiError({self.status}, {self.message!r}, param={self.param!r}, code={self.code!r})"

    def as_dict(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    # -- client errors -------------------------------------------------------------------------

    @classmethod
    def invalid_request(cls, message: str, param: str | None = None, code: str | None = None) -> ApiError:
        return cls(400, message, param=param, code=code)

    @classmethod
    def invalid_api_key(cls, message: str = "Incorrect API key provided.") -> ApiError:
        return cls(401, message, code="invalid_api_key")

    @classmethod
    def permission_denied(cls, message: str) -> ApiError:
        return cls(403, message, code="permission_denied")

    @classmethod
    def model_not_found(cls, model: str) -> ApiError:
        return cls(
            404,
            f"The model `{model}` does not exist or you do not have access to it.",
            param="model",
            code="model_not_found",
        )

    @classmethod
    def not_found(cls, message: str) -> ApiError:
        return cls(404, message)

    @classmethod
    def method_not_allowed(cls, method: str, path: str, allowed: Iterable[str] = ()) -> ApiError:
        allowed = sorted({m.upper() for m in allowed})
        headers = {"Allow": ", ".join(allowed)} if allowed else {}
        return cls(405, f"Invalid method for URL ({method.upper()} {path}).", headers=headers)

    @classmethod
    def payload_too_large(cls, limit_bytes: int) -> ApiError:
        return cls(
            413,
            f"Request body too large: the limit is {limit_bytes} bytes.",
            code="request_too_large",
        )

    @classmethod
    def rate_limited(cls, message: str, retry_after: int | None = None) -> ApiError:
        # 429 is retried by the SDKs; Retry-After (<= 60 s) tells them when.
        headers = {"Retry-After": str(max(1, int(retry_after)))} if retry_after is not None else {}
        return cls(429, message, type="requests", code="rate_limit_exceeded", headers=headers)

    # -- server errors ---------------------------------------------------------------------------

    @classmethod
    def backend_unavailable(cls, message: str, retry_after: int | None = None) -> ApiError:
        headers = {"Retry-After": str(max(1, int(retry_after)))} if retry_after is not None else {}
        return cls(503, message, type=SERVER_ERROR, headers=headers)

    @classmethod
    def bad_gateway(cls, message: str, *, permanent: bool = False) -> ApiError:
        # The SDKs retry every 5xx unless `x-should-retry: false` says the same request would fail
        # again (reference/openai.md §2, checklist item 11).
        headers = {"x-should-retry": "false"} if permanent else {}
        return cls(502, message, type=SERVER_ERROR, headers=headers)

    @classmethod
    def from_ollama(cls, status_code: int, error_text: str, model: str) -> ApiError:
        """Map an Ollama native error (`ollama.ResponseError.status_code` / `.error`) to ours.

        `model` is the name the client asked for, so messages never leak Ollama's internal name.
        `status_code` is -1 when the error arrived as an `{"error": ...}` line inside a stream.
        """
        text = (error_text or "").strip() or "unknown error"
        lowered = text.lower()

        if status_code == 404:
            return cls.model_not_found(model)

        if "server busy" in lowered or status_code in (429, 503):
            # Queue full: nothing ran, retrying shortly is exactly right.
            return cls.backend_unavailable(
                "The model server is busy; please retry shortly.", retry_after=BUSY_RETRY_AFTER
            )

        if status_code == 400:
            match = _CAPABILITY_RE.search(lowered)
            if match:
                param, what = _CAPABILITY_PARAMS.get(
                    match.group(1), (None, f"does not support {match.group(1)}")
                )
                return cls.invalid_request(
                    f"The model `{model}` {what}.", param=param, code="unsupported_parameter"
                )
            if "top_logprobs" in lowered:
                return cls.invalid_request(text, param="top_logprobs")
            if "invalid input" in lowered:
                return cls.invalid_request(text, param="input")
            if any(refusal in lowered for refusal in _CONTEXT_REFUSALS):
                return cls.invalid_request(text, code=CONTEXT_LENGTH_EXCEEDED)
            return cls.invalid_request(text)

        permanent = any(marker in lowered for marker in _PERMANENT_UPSTREAM_MARKERS)
        if 400 <= status_code < 500:
            # Any other 4xx from upstream (401/403 from a proxy, 405, 499 cancelled) is our own
            # misconfiguration or cancellation, not the client's fault: report a gateway error, and
            # one that will not fix itself on retry.
            permanent = status_code != 499
        return cls.bad_gateway(f"The model server failed: {text}", permanent=permanent)
