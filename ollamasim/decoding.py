"""Request bodies decoded the way gin's ShouldBindJSON decodes them into Ollama's Go structs.

Wrong types produce Go's `json: cannot unmarshal ...` messages (400). `null` means absent, unknown
fields are ignored, and an empty body is `missing request body`.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from ollamasim.wire import ApiError, decode_error, json_kind, parse_keep_alive

# Go field types per struct. Only what the simulator reads is listed; other fields are ignored.
GENERATE = {
    "model": "string", "prompt": "string", "suffix": "string", "system": "string", "template": "string",
    "context": "[]int", "stream": "bool", "raw": "bool", "images": "[]api.ImageData",
    "options": "map[string]interface {}", "truncate": "bool", "shift": "bool", "logprobs": "bool",
    "top_logprobs": "int",
}
CHAT = {
    "model": "string", "messages": "[]api.Message", "stream": "bool", "tools": "api.Tools",
    "options": "map[string]interface {}", "truncate": "bool", "shift": "bool", "logprobs": "bool",
    "top_logprobs": "int",
}
EMBED = {"model": "string", "truncate": "bool", "dimensions": "int", "options": "map[string]interface {}"}
EMBEDDINGS = {"model": "string", "prompt": "string", "options": "map[string]interface {}"}
SHOW = {"model": "string", "name": "string", "verbose": "bool"}
PULL = {"model": "string", "name": "string", "insecure": "bool", "stream": "bool"}
DELETE = {"model": "string", "name": "string"}
COPY = {"source": "string", "destination": "string"}
CREATE = {"model": "string", "name": "string", "from": "string", "system": "string", "template": "string",
          "parameters": "map[string]interface {}", "stream": "bool", "quantize": "string"}

_MESSAGE = {"role": "string", "content": "string", "thinking": "string", "images": "[]api.ImageData",
            "tool_calls": "[]api.ToolCall", "tool_name": "string", "tool_call_id": "string"}
THINK_LEVELS = ("high", "medium", "low", "max")


def parse_body(raw: bytes) -> Any:
    if not raw.strip():
        raise ApiError(400, "missing request body")
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ApiError(400, decode_error(raw)) from None


def decode(raw: bytes, struct: str, fields: dict[str, str]) -> dict[str, Any]:
    """Decode into a dict holding only the known, present, correctly typed fields (plus the rest as-is)."""
    data = parse_body(raw)
    if not isinstance(data, dict):
        raise ApiError(400, f"json: cannot unmarshal {json_kind(data)} into Go value of type api.{struct}")
    out: dict[str, Any] = {}
    for key, value in data.items():
        if value is None:
            continue
        gotype = fields.get(key)
        if gotype is not None:
            _check(struct, key, value, gotype)
        out[key] = value
    if "keep_alive" in out:
        out["keep_alive"] = parse_keep_alive(out["keep_alive"])
    if "think" in out:
        out["think"] = _think(out["think"])
    return out


def _fail(struct: str, path: str, value: Any, gotype: str) -> ApiError:
    kind = json_kind(value)
    if kind == "number" and gotype in ("int", "[]int"):
        kind = f"number {value}"
    return ApiError(400, f"json: cannot unmarshal {kind} into Go struct field {struct}.{path} of type {gotype}")


def _check(struct: str, path: str, value: Any, gotype: str) -> None:
    if value is None:
        return
    ok = True
    if gotype == "string":
        ok = isinstance(value, str)
    elif gotype == "bool":
        ok = isinstance(value, bool)
    elif gotype == "int":
        ok = _is_int(value)
    elif gotype == "map[string]interface {}":
        ok = isinstance(value, dict)
    elif gotype == "[]int":
        if not isinstance(value, list):
            ok = False
        else:
            for item in value:
                if not _is_int(item):
                    raise _fail(struct, path, item, "int")
    elif gotype == "[]api.ImageData":
        if not isinstance(value, list):
            ok = False
        else:
            for item in value:
                _image(struct, path, item)
    elif gotype == "[]api.Message":
        if not isinstance(value, list):
            ok = False
        else:
            for item in value:
                if not isinstance(item, dict):
                    raise _fail(struct, path, item, "api.Message")
                for key, sub in item.items():
                    if key in _MESSAGE:
                        _check(struct, f"{path}.{key}", sub, _MESSAGE[key])
    elif gotype == "[]api.ToolCall":
        if not isinstance(value, list):
            ok = False
        else:
            for call in value:
                function = call.get("function") if isinstance(call, dict) else None
                if not isinstance(call, dict) or (function is not None and not isinstance(function, dict)):
                    raise _fail(struct, path, call, "api.ToolCall")
                arguments = (function or {}).get("arguments")
                if arguments is not None and not isinstance(arguments, dict):
                    raise ApiError(400, f"json: cannot unmarshal {json_kind(arguments)} into Go struct field "
                                        f"ToolCallFunction.{path}.function.arguments of type "
                                        "api.ToolCallFunctionArguments")
    elif gotype == "api.Tools":
        ok = isinstance(value, list) and all(isinstance(t, dict) for t in value)
    if not ok:
        raise _fail(struct, path, value, gotype)


def _is_int(value: Any) -> bool:
    return not isinstance(value, bool) and (isinstance(value, int) or isinstance(value, float) and value.is_integer())


def _image(struct: str, path: str, item: Any) -> None:
    if not isinstance(item, str):
        raise _fail(struct, path, item, "api.ImageData")
    try:
        base64.b64decode(item, validate=True)
    except (binascii.Error, ValueError):
        bad = next((i for i, c in enumerate(item) if not (c.isalnum() or c in "+/=")), len(item) - 1)
        raise ApiError(400, f"illegal base64 data at input byte {max(bad, 0)}") from None


def _think(value: Any) -> bool | str:
    """api.ThinkValue: a bool or a level string."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        if value in THINK_LEVELS:
            return value
        raise ApiError(400, f'invalid think value: "{value}" (must be "high", "medium", "low", true, or false)')
    raise ApiError(400, "think must be a boolean or string")
