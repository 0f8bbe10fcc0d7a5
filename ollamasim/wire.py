"""Byte-level details of Ollama's wire format: Go's JSON encoding, Go time and duration formats, errors.

Ollama is written in Go, so what clients see is shaped by `encoding/json` and `time`. A gateway that
compares bytes (or a test that does) should see the same things from the simulator.
"""

from __future__ import annotations

import json
import math
import time
from datetime import UTC, datetime, timedelta
from typing import Any

# time.Duration(math.MaxInt64): what Ollama stores for a negative keep_alive ("forever").
MAX_DURATION_NS = 2**63 - 1
FOREVER = math.inf


class ApiError(Exception):
    """An error Ollama reports as `{"error": message}` with an HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def dumps(obj: Any) -> str:
    """json.Marshal: compact, UTF-8 kept, and HTML-sensitive characters escaped like Go does."""
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    # `<`, `>` and `&` can only occur inside JSON strings, so replacing them is safe.
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def go_quote(s: str) -> str:
    """strconv.Quote / %q for the strings we meet in error messages (JSON escaping is close enough)."""
    return json.dumps(s, ensure_ascii=False)


def _format_fraction(ns_part: int) -> str:
    # RFC3339Nano trims trailing zeros from the fraction and drops it entirely when zero.
    if ns_part == 0:
        return ""
    return "." + f"{ns_part:09d}".rstrip("0")


def rfc3339nano_utc(ns: int | None = None) -> str:
    """`time.Now().UTC()` marshalled: e.g. 2024-12-06T00:48:09.983619Z (what created_at uses)."""
    if ns is None:
        ns = time.time_ns()
    seconds, frac = divmod(ns, 1_000_000_000)
    dt = datetime.fromtimestamp(seconds, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + _format_fraction(frac) + "Z"


def rfc3339nano_local(ns: int) -> str:
    """A local-timezone timestamp as Go marshals it (expires_at, modified_at): Z when the offset is 0."""
    seconds, frac = divmod(ns, 1_000_000_000)
    dt = datetime.fromtimestamp(seconds).astimezone()
    offset = dt.utcoffset() or timedelta(0)
    if offset == timedelta(0):
        zone = "Z"
    else:
        total = int(offset.total_seconds())
        sign = "+" if total >= 0 else "-"
        hours, minutes = divmod(abs(total) // 60, 60)
        zone = f"{sign}{hours:02d}:{minutes:02d}"
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + _format_fraction(frac) + zone


_UNITS_NS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,  # U+00B5
    "μs": 1_000,  # U+03BC
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "h": 3600 * 1_000_000_000,
}


def parse_go_duration(text: str) -> int:
    """time.ParseDuration, with its error messages. Returns nanoseconds (may be negative)."""
    orig = text
    invalid = ValueError(f"time: invalid duration {go_quote(orig)}")
    s = text
    neg = False
    if s and s[0] in "+-":
        neg = s[0] == "-"
        s = s[1:]
    if s == "0":
        return 0
    if s == "":
        raise invalid
    total = 0.0
    while s:
        if not (s[0] == "." or s[0].isdigit()):
            raise invalid
        i = 0
        while i < len(s) and s[i].isdigit():
            i += 1
        int_part = s[:i]
        s = s[i:]
        frac_part = ""
        if s.startswith("."):
            s = s[1:]
            j = 0
            while j < len(s) and s[j].isdigit():
                j += 1
            frac_part = s[:j]
            s = s[j:]
        if not int_part and not frac_part:
            raise invalid
        k = 0
        while k < len(s) and s[k] != "." and not s[k].isdigit():
            k += 1
        unit = s[:k]
        s = s[k:]
        if unit == "":
            raise ValueError(f"time: missing unit in duration {go_quote(orig)}")
        if unit not in _UNITS_NS:
            raise ValueError(f"time: unknown unit {go_quote(unit)} in duration {go_quote(orig)}")
        value = float(f"{int_part or '0'}.{frac_part or '0'}")
        total += value * _UNITS_NS[unit]
        if total > MAX_DURATION_NS:
            raise invalid
    ns = int(total)
    return -ns if neg else ns


def go_type_name(value: Any) -> str:
    """reflect.TypeOf(v) for a value json.Unmarshal produced into `any`."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "float64"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "[]interface {}"
    if isinstance(value, dict):
        return "map[string]interface {}"
    return "%!s(<nil>)"


def parse_keep_alive(value: Any) -> float | None:
    """api.Duration.UnmarshalJSON. Returns seconds, math.inf for "forever", None when absent.

    Numbers are seconds, strings are Go durations, and anything negative means forever.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ApiError(400, f"Unsupported type: '{go_type_name(value)}'")
    if isinstance(value, str):
        try:
            ns = parse_go_duration(value)
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        return FOREVER if ns < 0 else ns / 1e9
    return FOREVER if value < 0 else float(value)


def json_kind(value: Any) -> str:
    """The JSON kind Go names in UnmarshalTypeError messages."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


def decode_error(raw: bytes) -> str:
    """An approximation of the message Go's decoder gives for malformed JSON."""
    text = raw.decode("utf-8", errors="replace")
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.pos >= len(text.rstrip()):
            return "unexpected EOF"
        char = text[exc.pos]
        if exc.msg.startswith("Expecting property name"):
            return f"invalid character {_go_char(char)} looking for beginning of object key string"
        if exc.msg.startswith("Expecting ':'"):
            return f"invalid character {_go_char(char)} after object key"
        if exc.msg.startswith("Expecting ',' delimiter") and "{" in text[: exc.pos]:
            return f"invalid character {_go_char(char)} after object key:value pair"
        if exc.msg.startswith("Extra data"):
            return f"invalid character {_go_char(char)} after top-level value"
        return f"invalid character {_go_char(char)} looking for beginning of value"
    return "unexpected EOF"


def _go_char(char: str) -> str:
    # Go's quoteChar: '\'' and '"' are escaped, everything else printed between single quotes.
    if char == "'":
        return "'\\''"
    if char == '"':
        return "'\"'"
    return f"'{char}'"
