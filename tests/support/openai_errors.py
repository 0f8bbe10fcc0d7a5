"""The suite's one check that an answer is an OpenAI error: a JSON body {"error": {"message", "type",
"param", "code"}} with all four keys (what the OpenAI API sends and its SDKs read), a message and a
type, and the request's x-request-id header."""

from __future__ import annotations

import json
from typing import Any

import httpx

ERROR_KEYS = frozenset({"message", "type", "param", "code"})


def openai_error_problem(payload: Any) -> str | None:
    """What keeps `payload` (a decoded JSON body) from being an OpenAI error object, or None."""
    error = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(error, dict) or set(error) != ERROR_KEYS:
        return f"not an OpenAI error object: {str(payload)[:200]}"
    if not isinstance(error["message"], str) or not error["message"] or not error["type"]:
        return f"an error without message or type: {error}"
    return None


def assert_openai_error(answer: httpx.Response | tuple[int, dict[str, str], bytes], status: int,
                        code: str | None = None) -> dict:
    """Assert `answer` is an OpenAI error with this status (and code); return the error object.

    `answer` is an httpx response, or (status, headers with lower-case names, body) read off a socket.
    """
    if isinstance(answer, tuple):
        got, headers, body = answer
    else:
        got, headers, body = answer.status_code, answer.headers, answer.content
    assert got == status, body[:500]
    assert headers.get("content-type", "").startswith("application/json"), headers
    assert headers.get("x-request-id", "").startswith("req_"), headers
    payload = json.loads(body)
    problem = openai_error_problem(payload)
    assert problem is None, problem
    error = payload["error"]
    if code is not None:
        assert error["code"] == code, error
    return error
