"""The whole-file check of a batch input file, before it is accepted.

A batch file is JSONL: one request per line, `{"custom_id": ..., "method": "POST", "url": ..., "body": {...}}`
(OpenAI's Batch API reference). Every line is checked the way its endpoint would check it as a request of
its own: the endpoint's request schema and limits (inference/openai_api/schemas.py,
responses_schemas.py), the model resolved in the catalogue and allowed for the uploading key, and the
endpoint's own refusals (an embedding model on /v1/chat/completions). A line cannot stream. The first bad
line refuses the whole file, with its number (from 1) in the message and `param: "file"`, so nothing that
cannot run is ever stored.

Sync and CPU-bound: the upload view runs it in a worker thread.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from common.apierrors import ApiError
from inference.openai_api.openai_protocol import CHAT_PROTOCOL, COMPLETION_PROTOCOL, EMBEDDING_PROTOCOL
from inference.openai_api.responses_protocol import RESPONSES_PROTOCOL
from inference.openai_api.schemas import validate_data
from inference.registry import ModelRoute, find_model

# The endpoints a line may target, and the front protocol that serves each (schema, canonical request).
PROTOCOLS = {
    "/v1/chat/completions": CHAT_PROTOCOL,
    "/v1/completions": COMPLETION_PROTOCOL,
    "/v1/embeddings": EMBEDDING_PROTOCOL,
    "/v1/responses": RESPONSES_PROTOCOL,
}
ENDPOINTS = tuple(PROTOCOLS)
BOM = b"\xef\xbb\xbf"
CUSTOM_ID_CHARS = 500  # BatchLine.custom_id holds this many


def bad_line(number: int, message: str) -> ApiError:
    return ApiError.invalid_request(f"Line {number}: {message}", param="file", code="invalid_batch_file")


def check_file(lines: Iterable[bytes], *, routes: dict[str, ModelRoute], may_use: Callable[[str], bool],
               max_requests: int) -> tuple[int, set[str]]:
    """Check every line; return the number of requests (non-empty lines) and the endpoints they call, or
    raise a 400 ApiError about the first bad line. `routes` is the catalogue (registry.models_by_id),
    `may_use` the key's access."""
    seen: dict[str, int] = {}  # custom_id -> its line
    endpoints: set[str] = set()
    for number, raw in enumerate(lines, start=1):
        if number == 1 and raw.startswith(BOM):
            raw = raw[len(BOM):]
        if not raw.strip():
            continue  # blank lines (and the newline at the end) are not requests
        if len(seen) >= max_requests:
            raise ApiError.invalid_request(
                f"The file has more than {max_requests} requests (non-empty lines); split it into several files.",
                param="file", code="too_many_lines")
        request = _parse_line(number, raw)
        custom_id = request.get("custom_id")
        if not isinstance(custom_id, str) or not custom_id:
            raise bad_line(number, "'custom_id' must be a non-empty string.")
        if len(custom_id) > CUSTOM_ID_CHARS:
            raise bad_line(number, f"'custom_id' is longer than {CUSTOM_ID_CHARS} characters.")
        if not custom_id.isprintable() or _has_surrogate(custom_id):
            raise bad_line(number, "'custom_id' must be printable Unicode text.")
        if custom_id in seen:
            raise bad_line(number, f"'custom_id' {custom_id!r} is already used on line {seen[custom_id]}; "
                                   "each request needs its own.")
        seen[custom_id] = number
        check_request(number, raw, request, routes=routes, may_use=may_use)
        endpoints.add(request["url"])
    if not seen:
        raise ApiError.invalid_request("The file is empty: it has no requests (one JSON object per line).",
                                       param="file", code="invalid_batch_file")
    return len(seen), endpoints


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _parse_line(number: int, raw: bytes) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise bad_line(number, f"not valid UTF-8 text: byte 0x{raw[exc.start]:02x} at position {exc.start} "
                               f"({exc.reason}). The file must be UTF-8.") from None
    try:
        request = json.loads(text)
    except ValueError as exc:
        raise bad_line(number, f"not valid JSON: {exc}.") from None
    except RecursionError:
        raise bad_line(number, "not valid JSON: nested too deeply.") from None
    if not isinstance(request, dict):
        raise bad_line(number, "each line must be a JSON object with 'custom_id', 'method', 'url' and 'body'.")
    return request


def check_request(number: int, raw: bytes, request: dict[str, Any], *, routes: dict[str, ModelRoute],
                  may_use: Callable[[str], bool]) -> None:
    """One line's request, checked as its endpoint would check it (module docstring)."""
    if request.get("method") != "POST":
        raise bad_line(number, f"'method' must be \"POST\", not {json.dumps(request.get('method'))}.")
    url = request.get("url")
    protocol = PROTOCOLS.get(url) if isinstance(url, str) else None
    if protocol is None:
        raise bad_line(number, f"'url' must be one of {', '.join(ENDPOINTS)}, not {json.dumps(url)}.")
    body = request.get("body")
    if not isinstance(body, dict):
        raise bad_line(number, "'body' must be a JSON object: the request to send to " + url + ".")
    try:
        parsed = validate_data(protocol.schema, raw, body)
    except ApiError as error:
        where = f" (body.{error.param})" if error.param else ""
        raise bad_line(number, f"invalid request for {url}{where}: {error.message}") from None
    if body.get("stream"):
        raise bad_line(number, "'body.stream' must be false or absent: batch requests cannot stream.")
    route = find_model(routes, parsed.model)
    if route is None or not may_use(route.public_id):
        # Unknown and not allowed read the same, as on every other route.
        raise bad_line(number, f"the model `{parsed.model}` does not exist or you do not have access to it.")
    try:
        protocol.canonical(parsed, route)
    except ApiError as error:
        raise bad_line(number, f"invalid request for {url}: {error.message}") from None
