"""Simulator configuration: a TOML file with a [server] table, [[models]] and optional [[pullable]].

Every knob mirrors an Ollama setting (named after its OLLAMA_* variable) or a property of the simulated
hardware. Unknown keys are an error, so a typo in a test config fails loudly instead of being ignored.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ollamasim.versions import Behaviour
from ollamasim.wire import FOREVER, parse_go_duration

CAPABILITIES = {"completion", "tools", "insert", "embedding", "vision", "thinking"}

_SIZE_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGT]i?B|B)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}


def parse_size(value: Any) -> int:
    """Bytes from an int or a string such as "24GiB", "512MiB" or "8GB"."""
    if isinstance(value, bool):
        raise ValueError(f"not a size: {value!r}")
    if isinstance(value, int | float):
        return int(value)
    match = _SIZE_RE.match(str(value))
    if not match:
        raise ValueError(f"not a size: {value!r}")
    number, unit = match.groups()
    return int(float(number) * _SIZE_UNITS[(unit or "b").lower()])


def parse_seconds(value: Any) -> float:
    """Seconds from a number or a Go duration string; negative means forever (as for keep_alive)."""
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        seconds = parse_go_duration(str(value)) / 1e9
    return FOREVER if seconds < 0 else seconds


@dataclass
class ModelConfig:
    name: str
    size: int = 2_000_000_000  # bytes of weights on disk (what /api/tags shows)
    family: str = "llama"
    families: list[str] | None = None
    parameter_size: str = "3.2B"
    quantization_level: str = "Q4_K_M"
    format: str = "gguf"
    capabilities: list[str] = field(default_factory=lambda: ["completion"])
    context_length: int = 131072  # training context; num_ctx is clamped to it
    embedding_length: int = 3072
    parent: str | None = None  # a derived model (FROM parent) shares the parent's weights blob
    parameters: dict[str, Any] = field(default_factory=dict)  # Modelfile PARAMETERs, e.g. num_ctx, stop
    template: str | None = None
    system: str | None = None
    license: str | None = None
    modified_at: str | None = None  # ISO 8601; default: a fixed time derived from the name
    kv_bytes_per_token: int | None = None
    tokens_per_second: float | None = None
    time_to_first_token_ms: float | None = None
    num_parallel: int | None = None
    load_seconds: float | None = None  # overrides size * load_seconds_per_gib
    # Fault injection (see README in ollamasim/__init__.py).
    fail_after_tokens: int | None = None
    stall_after_tokens: int | None = None
    error_message: str | None = None
    load_error: str | None = None
    load_stalls: bool = False

    def __post_init__(self) -> None:
        self.size = parse_size(self.size)
        unknown = set(self.capabilities) - CAPABILITIES
        if unknown:
            raise ValueError(f"model {self.name}: unknown capabilities {sorted(unknown)}")
        if self.kv_bytes_per_token is not None:
            self.kv_bytes_per_token = parse_size(self.kv_bytes_per_token)


@dataclass
class ServerConfig:
    version: str = "0.32.15"  # what /api/version reports; also picks the version-dependent behaviours
    num_parallel: int = 1  # OLLAMA_NUM_PARALLEL (HEAD default 1)
    max_queue: int = 512  # OLLAMA_MAX_QUEUE
    max_loaded_models: int = 0  # OLLAMA_MAX_LOADED_MODELS; 0 = auto = 3 per GPU
    gpu_count: int = 1
    keep_alive: float = 300.0  # OLLAMA_KEEP_ALIVE in seconds (inf = forever)
    load_timeout: float = 300.0  # OLLAMA_LOAD_TIMEOUT, a stall timeout; 0 = none
    gpu_memory: int = 24 * 2**30  # VRAM budget shared by all runners
    num_ctx: int = 0  # OLLAMA_CONTEXT_LENGTH; 0 = unset, so Ollama's default for the version and VRAM
    kv_bytes_per_token: int = 128 * 1024  # KV cache per context token per slot
    tokens_per_second: float = 40.0  # decode speed per request; 0 = as fast as possible
    time_to_first_token_ms: float = 150.0  # fixed prompt-eval latency
    prompt_tokens_per_second: float = 0.0  # extra prompt-eval time per prompt token; 0 = none
    load_seconds_per_gib: float = 0.5  # load latency per GiB of runner size
    pull_seconds_per_gib: float = 0.2
    response_tokens: list[int] = field(default_factory=lambda: [20, 120])  # natural reply length range
    chunk_style: str = "head"  # OpenAI streaming: "head" (v0.32.6+) or "legacy"
    fast_path: bool = True  # v0.11.5+: loaded runners bypass the pending queue

    def __post_init__(self) -> None:
        self.behaviour = Behaviour.of(self.version)  # not a field: /sim/stats shows the version instead
        self.keep_alive = parse_seconds(self.keep_alive)
        self.load_timeout = parse_seconds(self.load_timeout)
        self.gpu_memory = parse_size(self.gpu_memory)
        self.kv_bytes_per_token = parse_size(self.kv_bytes_per_token)
        if self.chunk_style not in ("head", "legacy"):
            raise ValueError("chunk_style must be 'head' or 'legacy'")
        if self.num_parallel < 1:
            raise ValueError("num_parallel must be at least 1")
        if self.max_queue < 0:
            raise ValueError("max_queue must not be negative")
        if self.num_ctx < 0:
            raise ValueError("num_ctx must not be negative (0 means Ollama's default)")
        if len(self.response_tokens) != 2 or not 0 < self.response_tokens[0] <= self.response_tokens[1]:
            raise ValueError("response_tokens must be [min, max] with 0 < min <= max")

    @property
    def max_runners(self) -> int:
        return self.max_loaded_models or 3 * max(1, self.gpu_count)

    @property
    def default_num_ctx(self) -> int:
        """The context a request gets when neither it nor the Modelfile sets num_ctx."""
        return self.num_ctx or self.behaviour.default_num_ctx(self.gpu_memory)


@dataclass
class SimConfig:
    server: ServerConfig
    models: list[ModelConfig]
    pullable: list[ModelConfig]


DEMO_MODELS: list[dict[str, Any]] = [
    {"name": "llama3.2:3b", "size": 2_019_393_189, "family": "llama", "parameter_size": "3.2B",
     "quantization_level": "Q4_K_M", "capabilities": ["completion", "tools"], "context_length": 131072,
     "embedding_length": 3072, "kv_bytes_per_token": 114688,
     "parameters": {"stop": ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]}},
    {"name": "qwen2.5-coder:1.5b", "size": 986_061_892, "family": "qwen2", "parameter_size": "1.5B",
     "quantization_level": "Q4_K_M", "capabilities": ["completion", "insert"], "context_length": 32768,
     "embedding_length": 1536, "kv_bytes_per_token": 28672},
    {"name": "qwen3:0.6b", "size": 522_653_767, "family": "qwen3", "parameter_size": "751.63M",
     "quantization_level": "Q4_K_M", "capabilities": ["completion", "tools", "thinking"],
     "context_length": 40960, "embedding_length": 1024, "kv_bytes_per_token": 114688},
    {"name": "all-minilm:latest", "size": 45_960_996, "family": "bert", "parameter_size": "23M",
     "quantization_level": "F16", "capabilities": ["embedding"], "context_length": 512,
     "embedding_length": 384, "kv_bytes_per_token": 9216, "time_to_first_token_ms": 20},
]

DEMO_PULLABLE: list[dict[str, Any]] = [
    {"name": "llama3.1:8b", "size": 4_920_753_328, "family": "llama", "parameter_size": "8.0B",
     "quantization_level": "Q4_K_M", "capabilities": ["completion", "tools"], "context_length": 131072,
     "embedding_length": 4096},
    {"name": "nomic-embed-text:latest", "size": 274_302_450, "family": "nomic-bert",
     "parameter_size": "137M", "quantization_level": "F16", "capabilities": ["embedding"],
     "context_length": 2048, "embedding_length": 768},
]


def _build(cls, data: dict[str, Any], where: str):
    known = {f.name for f in fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
    return cls(**data)


def from_dict(data: dict[str, Any], overrides: dict[str, Any] | None = None) -> SimConfig:
    """Build a config from parsed TOML. Without a `models` key the demo catalogue is served."""
    unknown = set(data) - {"server", "models", "pullable"}
    if unknown:
        raise ValueError(f"unknown top-level tables {sorted(unknown)}")
    server_data = {**data.get("server", {}), **{k: v for k, v in (overrides or {}).items() if v is not None}}
    server = _build(ServerConfig, server_data, "[server]")
    model_rows = data["models"] if "models" in data else DEMO_MODELS
    pull_rows = data["pullable"] if "pullable" in data else ([] if "models" in data else DEMO_PULLABLE)
    models = [_build(ModelConfig, dict(row), f"[[models]] {row.get('name')}") for row in model_rows]
    pullable = [_build(ModelConfig, dict(row), f"[[pullable]] {row.get('name')}") for row in pull_rows]
    return SimConfig(server=server, models=models, pullable=pullable)


def load(path: str | Path | None, overrides: dict[str, Any] | None = None) -> SimConfig:
    data: dict[str, Any] = {}
    if path is not None:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    return from_dict(data, overrides)


def to_toml(data: dict[str, Any]) -> str:
    """Write the small subset of TOML this config uses (tables, arrays of tables, scalars, lists, inline tables).

    The standard library reads TOML but cannot write it; tests build configs as dicts.
    """
    lines: list[str] = []
    for key, value in data.items():
        if isinstance(value, dict):
            lines.append(f"[{key}]")
            lines.extend(f"{k} = {_toml_value(v)}" for k, v in value.items() if v is not None)
            lines.append("")
        elif isinstance(value, list) and all(isinstance(v, dict) for v in value):
            for row in value:
                lines.append(f"[[{key}]]")
                lines.extend(f"{k} = {_toml_value(v)}" for k, v in row.items() if v is not None)
                lines.append("")
            if not value:
                # An empty catalogue must still say "models = []" so the demo one is not used.
                lines.insert(0, f"{key} = []")
        else:
            lines.insert(0, f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f'"{k}" = {_toml_value(v)}' for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")
