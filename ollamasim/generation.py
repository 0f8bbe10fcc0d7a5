"""Deterministic model output: tokens, prose, code, tool calls, JSON for a format, logprobs, embeddings.

Nothing here pretends to be intelligent. It produces output with the right *shape* (valid JSON for a
schema, tool arguments that satisfy the tool's parameters, similar vectors for similar texts) and the
same output for the same seed, so tests and benchmarks can rely on it.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import uuid
import zlib
from dataclasses import dataclass, field
from typing import Any

from ollamasim.catalogue import ModelEntry

# One token = an optional run of whitespace plus a word, or one punctuation mark. Joining the tokens of
# a text gives the text back, which keeps streamed pieces and token counts consistent.
_TOKEN_RE = re.compile(r"\s*(?:\w+|[^\w\s])|\s+")


def tokenize(text: str) -> list[str]:
    return _TOKEN_RE.findall(text)


def count_tokens(text: str) -> int:
    return len(_TOKEN_RE.findall(text))


def token_id(piece: str) -> int:
    return zlib.crc32(piece.encode()) % 128000 + 256


def make_rng(*parts: Any, seed: int | None, temperature: float | None) -> random.Random:
    """Seeded output is reproducible; so is greedy decoding (temperature 0). Otherwise it varies."""
    if seed is not None and seed >= 0:
        key = json.dumps([*parts, "seed", seed], default=str)
    elif temperature == 0:
        key = json.dumps([*parts, "greedy"], default=str)
    else:
        return random.Random()
    return random.Random(int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big"))


# ---- prompt accounting -----------------------------------------------------------------------------
def chat_prompt_tokens(messages: list[dict[str, Any]], tools: list[Any]) -> int:
    """A stand-in chat template: 4 tokens of framing per message, 3 for the assistant header, plus BOS."""
    total = 1 + 3
    for message in messages:
        total += 4 + count_tokens(message.get("content") or "")
        if message.get("tool_calls"):
            total += count_tokens(json.dumps(message["tool_calls"]))
        total += 64 * len(message.get("images") or [])
    if tools:
        total += count_tokens(json.dumps(tools))
    return total


def generate_prompt_tokens(prompt: str, system: str, suffix: str, context: list[int], raw: bool) -> int:
    framing = 0 if raw else 8
    return len(context) + count_tokens(system) + count_tokens(prompt) + count_tokens(suffix) + framing + 1


# ---- text ------------------------------------------------------------------------------------------
_WORDS = (
    "the model answer system request server memory token context queue slot cache value result data "
    "simple clear fast small large local shared stable useful careful quick first next last every "
    "process handle return check build share load keep send read write measure compare explain show "
    "because when while after before often usually always never also then so but and or with for "
    "about between through under over into from each many several most some this that these those "
    "time place way part case point fact idea question example detail number reason method step "
    "network client gateway user people team project test report option setting limit budget"
).split()
_OPENERS = ("Here is what I know about {kw}.", "Let me explain {kw}.", "Regarding {kw}, here is a short answer.",
            "Good question about {kw}.")
_CODE_LINES = (
    "def {f}({a}):", "    {v} = {g}({a})", "    if {v} is None:", "        return {a}", "    return {v}",
    "for {v} in {a}:", "    {w}.append({v})", "{w} = []", "{v} = {g}({a}, {w})", "# {c}",
)
_CODE_NAMES = ("items", "value", "result", "data", "config", "total", "count", "buffer", "node", "entry")
_CODE_FUNCS = ("parse", "load", "compute", "merge", "normalize", "render", "validate", "collect")


def _sentence(rng: random.Random, first: bool) -> list[str]:
    words = [rng.choice(_WORDS) for _ in range(rng.randint(6, 14))]
    words[0] = words[0].capitalize()
    pieces = [("" if first else " ") + words[0]]
    for i, word in enumerate(words[1:], start=1):
        pieces.append(" " + word)
        if i in (4, 9) and rng.random() < 0.3:
            pieces.append(",")
    pieces.append(".")
    return pieces


def prose(rng: random.Random, target: int, lead: str | None = None) -> list[str]:
    """Whole sentences, at least `target` tokens, ending with a full stop (a natural end)."""
    pieces = tokenize(lead) if lead else []
    while len(pieces) < target:
        pieces.extend(_sentence(rng, first=not pieces))
    return pieces


def code(rng: random.Random, target: int) -> list[str]:
    lines: list[str] = []
    while count_tokens("\n".join(lines)) < target:
        lines.append(rng.choice(_CODE_LINES).format(
            f=rng.choice(_CODE_FUNCS), g=rng.choice(_CODE_FUNCS), a=rng.choice(_CODE_NAMES),
            v=rng.choice(_CODE_NAMES), w=rng.choice(_CODE_NAMES), c=" ".join(rng.sample(_WORDS, 4))))
    return tokenize("\n".join(lines) + "\n")


def keyword(text: str) -> str | None:
    words = [w for w in re.findall(r"[A-Za-z][A-Za-z-]{3,}", text or "")]
    return max(words, key=len) if words else None


# ---- JSON schema instances -------------------------------------------------------------------------
@dataclass
class Hints:
    """Values lifted from the user's words, so `get_weather` for "weather in Tokyo" gets city=Tokyo."""

    names: list[str] = field(default_factory=list)
    numbers: list[float] = field(default_factory=list)

    @classmethod
    def from_text(cls, text: str) -> Hints:
        words = []
        for match in re.finditer(r"\b[A-Z][a-zA-Z]+", text or ""):
            before = (text or "")[: match.start()].rstrip()
            if before and before[-1] not in ".!?":  # skip words that merely start a sentence
                words.append(match.group())
        numbers = [float(n) for n in re.findall(r"-?\d+(?:\.\d+)?", text or "")]
        return cls(names=words, numbers=numbers)


def schema_instance(schema: Any, rng: random.Random, hints: Hints | None = None, root: Any = None,
                    depth: int = 0) -> Any:
    """An instance that validates against `schema` (the commonly used subset of JSON Schema)."""
    hints = hints or Hints()
    root = schema if root is None else root
    if not isinstance(schema, dict) or depth > 6:
        return None if depth > 6 else {}
    if "$ref" in schema:
        return schema_instance(_resolve_ref(root, schema["$ref"]), rng, hints, root, depth + 1)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        options = [s for s in schema.get(key) or [] if isinstance(s, dict) and s.get("type") != "null"]
        if options or schema.get(key):
            return schema_instance((options or schema[key])[0], rng, hints, root, depth + 1)
    if schema.get("allOf"):
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            part = _resolve_ref(root, part["$ref"]) if isinstance(part, dict) and "$ref" in part else part
            for k, v in (part or {}).items():
                merged[k] = {**merged.get(k, {}), **v} if isinstance(v, dict) and k == "properties" else v
        return schema_instance(merged, rng, hints, root, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "array" if "items" in schema else "string"
    if kind == "object":
        props = schema.get("properties") or {}
        return {name: schema_instance(sub, rng, hints, root, depth + 1) for name, sub in props.items()}
    if kind == "array":
        low = schema.get("minItems", 1)
        high = max(low, min(schema.get("maxItems", 3), low + 2))
        items = schema.get("items") if isinstance(schema.get("items"), dict) else {}
        return [schema_instance(items, rng, hints, root, depth + 1) for _ in range(rng.randint(low, high))]
    if kind in ("integer", "number"):
        return _number(schema, kind, rng, hints)
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "null":
        return None
    return _string(schema, rng, hints)


def _resolve_ref(root: Any, ref: str) -> Any:
    node = root
    for part in ref.lstrip("#/").split("/") if ref.startswith("#") else []:
        node = node.get(part, {}) if isinstance(node, dict) else {}
    return node


def _number(schema: dict[str, Any], kind: str, rng: random.Random, hints: Hints) -> int | float:
    low = schema.get("minimum", schema.get("exclusiveMinimum", 0))
    high = schema.get("maximum", schema.get("exclusiveMaximum", max(low, 0) + 100))
    if "exclusiveMinimum" in schema and "minimum" not in schema:
        low = low + (1 if kind == "integer" else 0.5)
    if "exclusiveMaximum" in schema and "maximum" not in schema:
        high = high - (1 if kind == "integer" else 0.5)
    if high < low:
        high = low
    value = next((n for n in hints.numbers if low <= n <= high), None)
    if value is None:
        value = rng.uniform(low, high)
    if kind == "integer":
        value = min(max(math.ceil(low), round(value)), math.floor(high))
        multiple = schema.get("multipleOf")
        if isinstance(multiple, int) and multiple > 0:
            value = math.ceil(value / multiple) * multiple
        return int(value)
    return round(value, 2)


def _string(schema: dict[str, Any], rng: random.Random, hints: Hints) -> str:
    fmt = schema.get("format")
    if fmt == "date":
        return f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    if fmt == "date-time":
        return f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:00:00Z"
    if fmt == "email":
        return f"{rng.choice(_WORDS)}@example.com"
    if fmt in ("uri", "url"):
        return f"https://example.com/{rng.choice(_WORDS)}"
    if fmt == "uuid":
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))
    text = hints.names.pop(0) if hints.names else " ".join(rng.choice(_WORDS) for _ in range(rng.randint(1, 3)))
    low, high = schema.get("minLength", 0), schema.get("maxLength")
    while len(text) < low:
        text += " " + rng.choice(_WORDS)
    return text[:high] if high is not None else text


def free_json(rng: random.Random, topic: str | None) -> Any:
    """What a model gives for `format: "json"` without a schema: a small object about the prompt."""
    return {"topic": topic or rng.choice(_WORDS), "answer": "".join(_sentence(rng, first=True)),
            "confidence": round(rng.uniform(0.5, 0.99), 2)}


# ---- tool calls -------------------------------------------------------------------------------------
def choose_tool(tools: list[Any], text: str) -> dict[str, Any] | None:
    """The tool whose name the user mentions (`get_weather` matches "get weather" too), else the first."""
    functions = [t.get("function") for t in tools if isinstance(t, dict) and isinstance(t.get("function"), dict)]
    functions = [f for f in functions if f.get("name")]
    lowered = (text or "").lower()
    for function in functions:
        name = str(function["name"]).lower()
        if name in lowered or name.replace("_", " ") in lowered:
            return function
    return functions[0] if functions else None


def tool_call(function: dict[str, Any], text: str, rng: random.Random) -> dict[str, Any]:
    parameters = function.get("parameters") or {"type": "object", "properties": {}}
    arguments = schema_instance(parameters, rng, Hints.from_text(text))
    if not isinstance(arguments, dict):
        arguments = {}
    return {"id": f"call_{rng.getrandbits(32):08x}",
            "function": {"index": 0, "name": function["name"], "arguments": arguments}}


# ---- planning one response ---------------------------------------------------------------------------
@dataclass
class Plan:
    """Everything a response will contain, decided before the first token is "decoded". (How much of the
    prompt the runner reads is decided when it gets its slot: ollamasim/context.py.)"""

    thinking: list[str] = field(default_factory=list)
    content: list[str] = field(default_factory=list)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    tool_call_tokens: int = 0


def plan_chat(entry: ModelEntry, messages: list[dict[str, Any]], tools: list[Any], fmt: Any, think: bool,
              rng: random.Random, length_range: list[int]) -> Plan:
    plan = Plan()
    last = messages[-1] if messages else {}
    user_text = next((m.get("content") or "" for m in reversed(messages) if m.get("role") == "user"), "")
    target = rng.randint(*length_range)
    if think:
        plan.thinking = prose(rng, max(4, target // 2), lead=f"Okay, the user wants to know about {keyword(user_text) or 'this'}.")
    if tools and last.get("role") == "user":
        function = choose_tool(tools, last.get("content") or "")
        if function is not None:
            call = tool_call(function, last.get("content") or "", rng)
            plan.tool_calls = [call]
            plan.tool_call_tokens = count_tokens(json.dumps({"name": call["function"]["name"],
                                                             "arguments": call["function"]["arguments"]}))
            return plan
    if fmt is not None:
        plan.content = _format_pieces(fmt, rng, user_text)
    elif last.get("role") == "tool":
        tool_name = last.get("tool_name") or _last_tool_name(messages) or "tool"
        snippet = " ".join(str(last.get("content") or "").split()[:12]) or "nothing"
        plan.content = prose(rng, target, lead=f"The {tool_name} tool returned {snippet}.")
    elif "coder" in entry.name.model:
        plan.content = code(rng, target)
    else:
        kw = keyword(user_text)
        plan.content = prose(rng, target, lead=rng.choice(_OPENERS).format(kw=kw) if kw else None)
    return plan


def plan_generate(entry: ModelEntry, prompt: str, suffix: str, fmt: Any, think: bool, rng: random.Random,
                  length_range: list[int]) -> Plan:
    plan = Plan()
    target = rng.randint(*length_range)
    if think:
        plan.thinking = prose(rng, max(4, target // 2), lead="Okay, let me think about this.")
    if fmt is not None:
        plan.content = _format_pieces(fmt, rng, prompt)
    elif suffix or "coder" in entry.name.model:
        plan.content = code(rng, target)
    else:
        plan.content = prose(rng, target)
    return plan


def _format_pieces(fmt: Any, rng: random.Random, text: str) -> list[str]:
    value = schema_instance(fmt, rng, Hints.from_text(text)) if isinstance(fmt, dict) else free_json(rng, keyword(text))
    return tokenize(json.dumps(value, ensure_ascii=False))


def _last_tool_name(messages: list[dict[str, Any]]) -> str | None:
    for message in reversed(messages):
        for call in message.get("tool_calls") or []:
            if isinstance(call, dict) and isinstance(call.get("function"), dict):
                return call["function"].get("name")
    return None


# ---- logprobs ----------------------------------------------------------------------------------------
def logprobs(rng: random.Random, pieces: list[str], top: int) -> list[dict[str, Any]]:
    """api.Logprob entries: the chosen token first among its alternatives, all with plausible values."""
    out = []
    for piece in pieces:
        chosen = -round(abs(rng.gauss(0, 0.4)), 6)
        entry: dict[str, Any] = {"token": piece, "logprob": chosen, "bytes": list(piece.encode())}
        if top > 0:
            alternatives = [{"token": piece, "logprob": chosen, "bytes": list(piece.encode())}]
            value = chosen
            for word in rng.sample(_WORDS, min(top - 1, len(_WORDS))):
                value -= round(rng.uniform(0.5, 3.0), 6)
                alternatives.append({"token": " " + word, "logprob": round(value, 6), "bytes": list((" " + word).encode())})
            entry["top_logprobs"] = alternatives
        out.append(entry)
    return out


# ---- embeddings --------------------------------------------------------------------------------------
def _features(text: str) -> list[tuple[str, float]]:
    words = re.findall(r"\w+", text.lower())
    feats: list[tuple[str, float]] = [("w:" + w, 1.0) for w in words]
    for w in words:
        padded = f"#{w}#"
        feats.extend(("c:" + padded[i:i + 3], 0.5) for i in range(len(padded) - 2))
    return feats or [("empty", 1.0)]


def raw_embedding(text: str, dim: int) -> list[float]:
    """A hashed bag of words and character trigrams: texts that share words point the same way.

    Each feature lands once in every band [0, dim), [0, dim/2), [0, dim/4), ... so the leading dimensions
    carry the most signal, like Matryoshka-trained models, and `dimensions` truncation keeps meaning.
    """
    vector = [0.0] * dim
    bands = [dim >> j for j in range(16) if dim >> j >= 2] or [dim]
    scale = 1 / math.sqrt(len(bands))
    for feature, weight in _features(text):
        digest = hashlib.blake2b(feature.encode(), digest_size=4 * len(bands)).digest()
        for j, band in enumerate(bands):
            h = int.from_bytes(digest[4 * j:4 * j + 4], "big")
            vector[h % band] += scale * (weight if h >> 31 else -weight)
    # A small fixed background keeps unrelated texts from being exactly orthogonal, like real models.
    background = random.Random(dim)
    return [v + background.uniform(-0.01, 0.01) for v in vector]


def normalize(vector: list[float]) -> list[float]:
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]


def embedding(text: str, dim: int, dimensions: int | None = None) -> list[float]:
    """/api/embed: L2-normalised; `dimensions` truncates and renormalises."""
    vector = normalize(raw_embedding(text, dim))
    if dimensions and 0 < dimensions < len(vector):
        vector = normalize(vector[:dimensions])
    return [round(v, 8) for v in vector]


def legacy_embedding(text: str, dim: int) -> list[float]:
    """/api/embeddings returns the model's raw (unnormalised) vector."""
    scale = 2.0 + math.log1p(count_tokens(text))
    return [v * scale for v in normalize(raw_embedding(text, dim))]
