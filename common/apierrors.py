"""OpenAI-shaped API errors, shared by every app that answers API calls (inference, apiaccess).

Every 4xx/5xx the gateway returns carries `{"error": {"message", "type", "param", "code"}}` with all
four keys present: the Python SDK reads `.code`/`.param`/`.type` from that object and the Node SDK
builds its exception message from it (see the OpenAI API reference, "Error codes"). Views raise `ApiError` and render
`err.as_dict()` with `err.status` and `err.headers`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

INVALID_REQUEST = "invalid_request_error"
SERVER_ERROR = "server_error"


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

    def with_code(self, code: str) -> ApiError:
        self.code = code
        return self

    def with_param(self, param: str) -> ApiError:
        self.param = param
        return self

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
    def store_unavailable(cls, message: str) -> ApiError:
        """Gatehouse's own store (Redis: queues, rate limits) cannot be reached. Not the model's fault and
        over quickly (Redis calls give up within REDIS_SOCKET_TIMEOUT), so a short Retry-After."""
        return cls(503, message, type=SERVER_ERROR, code="service_unavailable", headers={"Retry-After": "2"})

    @classmethod
    def bad_gateway(cls, message: str, *, permanent: bool = False) -> ApiError:
        # The SDKs retry every 5xx unless `x-should-retry: false` says the same request would fail
        # again (openai-python `_base_client.py` `_should_retry`).
        headers = {"x-should-retry": "false"} if permanent else {}
        return cls(502, message, type=SERVER_ERROR, headers=headers)
