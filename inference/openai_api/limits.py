"""Size limits on request bodies that no real client reaches, checked on the parsed JSON before the
pydantic models see it (validating 600,000 messages takes seconds), and the lone-surrogate check.

OpenAI's own limits where it documents one (128 tools, 2048 embedding inputs); elsewhere far above
what any client sends: the largest contexts served today (about a million tokens) are a few million
characters, and Continue, the client with the most stop strings, sends about a dozen.
"""

from __future__ import annotations

import json
import re
from typing import Any

from common.apierrors import ApiError

MAX_MESSAGES = 10_000
MAX_TOOLS = 128
MAX_STOP_SEQUENCES = 64
MAX_STOP_CHARS = 1_000  # per stop sequence
MAX_PROMPTS = 2_048  # completions: prompts in one request (each one upstream call at most)
MAX_TEXT_CHARS = 10_000_000  # all the text of a request's messages, prompt or input together

# json.loads keeps a lone UTF-16 surrogate as a str that cannot be encoded as UTF-8, so sending it on
# to the node fails. It gets one from the JSON escape ("\ud800") and also from raw bytes: it decodes
# bodies with "surrogatepass", so ED A0 80 (U+D800 encoded as if it were a character, as CESU-8 and
# WTF-8 do) becomes "\ud800" too, and so do unpaired surrogates in a UTF-16 or UTF-32 body. Both
# forms are rare in UTF-8 bodies (Python's json.dumps writes emoji as surrogate pairs, and real UTF-8
# never has ED followed by A0-BF), so the walk below runs only when one of them is there.
_SURROGATE = re.compile(rb"\\u[dD][89abcdefABCDEF]|\xed[\xa0-\xbf]")


def _too_many(param: str, limit: int, what: str) -> ApiError:
    return ApiError.invalid_request(f"Invalid '{param}': at most {limit} {what} per request.", param=param)


def _text_size(value: Any) -> int:
    """Characters of text in a value (strings anywhere inside it); image data URIs count too."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        return sum(_text_size(v) for v in value)
    if isinstance(value, dict):
        return sum(_text_size(v) for v in value.values())
    return 0


def check_limits(data: dict[str, Any]) -> None:
    """Raise a 400 ApiError naming the field when a body is beyond what any client sends."""
    messages = data.get("messages")
    if isinstance(messages, list) and len(messages) > MAX_MESSAGES:
        raise _too_many("messages", MAX_MESSAGES, "messages")
    tools = data.get("tools")
    if isinstance(tools, list) and len(tools) > MAX_TOOLS:
        raise _too_many("tools", MAX_TOOLS, "tools")
    stop = data.get("stop")
    if isinstance(stop, list):
        if len(stop) > MAX_STOP_SEQUENCES:
            raise _too_many("stop", MAX_STOP_SEQUENCES, "stop sequences")
        if any(isinstance(s, str) and len(s) > MAX_STOP_CHARS for s in stop):
            raise ApiError.invalid_request(
                f"Invalid 'stop': a stop sequence may be at most {MAX_STOP_CHARS} characters.", param="stop")
    elif isinstance(stop, str) and len(stop) > MAX_STOP_CHARS:
        raise ApiError.invalid_request(
            f"Invalid 'stop': a stop sequence may be at most {MAX_STOP_CHARS} characters.", param="stop")
    prompt = data.get("prompt")
    if isinstance(prompt, list) and prompt and not isinstance(prompt[0], int) and len(prompt) > MAX_PROMPTS:
        raise _too_many("prompt", MAX_PROMPTS, "prompts")
    for field in ("messages", "prompt", "input"):
        value = data.get(field)
        if value is not None and not isinstance(value, int | float | bool) and _text_size(value) > MAX_TEXT_CHARS:
            raise ApiError.invalid_request(
                f"Invalid '{field}': at most {MAX_TEXT_CHARS} characters of text per request.", param=field)


def _printable(text: str) -> str:
    # The field name goes back to the client in the error, so it must be encodable itself.
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _first_surrogate(value: Any, path: list[str]) -> list[str] | None:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path
        return None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        if isinstance(key, str) and _first_surrogate(key, path) is not None:
            return [*path, _printable(key)]
        found = _first_surrogate(item, [*path, str(key)])
        if found is not None:
            return found
    return None


def check_surrogates(raw: bytes, data: dict[str, Any]) -> None:
    """A 400 naming the field that holds a lone UTF-16 surrogate, which no UTF-8 text can carry."""
    if json.detect_encoding(raw) in ("utf-8", "utf-8-sig") and not _SURROGATE.search(raw):
        return
    path = _first_surrogate(data, [])
    if path is not None:
        param = ".".join(path) or None
        raise ApiError.invalid_request(
            f"Invalid '{param}': the string contains a lone UTF-16 surrogate (the escape \\ud800 or the "
            "bytes ED A0 80, for example), which is not valid Unicode text.", param=param)
