"""Request `options`: type checks with Ollama's messages, defaults, and the load-time subset.

Load-time options (`api.Runner`) decide whether a loaded runner can serve a request; any difference
forces a reload, and so does a different context-shift setting on llama-server runners (Ollama
server/sched.go `needsReload`). Sampling options never do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ollamasim.catalogue import ModelEntry
from ollamasim.config import ServerConfig
from ollamasim.wire import ApiError

_INT = {"num_keep", "seed", "num_predict", "top_k", "repeat_last_n", "num_ctx", "num_batch", "num_gpu",
        "main_gpu", "num_thread", "draft_num_predict"}
_FLOAT = {"top_p", "min_p", "typical_p", "temperature", "repeat_penalty", "presence_penalty",
          "frequency_penalty"}
_BOOL = {"use_mmap"}
_STRING_LIST = {"stop"}
# Knobs that are not Ollama options: unknown keys are ignored by Ollama, so a gateway passes them
# through untouched and a test can inject faults per request (documented in ollamasim/__init__.py).
_SIM_INT = {"sim_fail_after_tokens", "sim_stall_after_tokens"}

# The fields of Ollama's api.Runner (api/types.go): whatever differs among these reloads the model.
LOAD_KEYS = ("num_ctx", "num_batch", "num_gpu", "main_gpu", "use_mmap", "num_thread", "draft_num_predict")

# Architectures Ollama runs with one slot whatever OLLAMA_NUM_PARALLEL says (Ollama server/sched.go `load`).
SINGLE_SLOT_FAMILIES = frozenset({"mllama", "qwen3vl", "qwen3vlmoe", "qwen35", "qwen35moe", "qwen3next", "lfm2",
                                  "lfm2moe", "nemotron_h", "nemotron_h_moe", "nemotron_h_omni"})
# Families whose llama-server cannot shift its context, so `shift` defaults to off for them.
NO_CONTEXT_SHIFT_FAMILIES = frozenset({"deepseek2"})

DEFAULTS: dict[str, Any] = {
    "num_keep": 4, "seed": -1, "num_predict": -1, "top_k": 40, "top_p": 0.9, "min_p": 0.0,
    "typical_p": 1.0, "repeat_last_n": 64, "temperature": 0.8, "repeat_penalty": 1.0,
    "presence_penalty": 0.0, "frequency_penalty": 0.0, "stop": [],
    # main_gpu and use_mmap are pointers in api.Runner: unset is nil, which differs from any value.
    "num_batch": 512, "num_gpu": -1, "main_gpu": None, "use_mmap": None, "num_thread": 0,
    # Ollama zeroes draft_num_predict unless the request or Modelfile set it (no simulated model has a
    # draft model), so asking for the default 4 still differs from a runner loaded without it.
    "draft_num_predict": 0,
}


def check(options: dict[str, Any]) -> dict[str, Any]:
    """api.Options.FromMap: returns the known options converted, raising its 500-status errors."""
    out: dict[str, Any] = {}
    for key, value in options.items():
        if value is None:
            continue
        if key in _INT or key in _SIM_INT:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ApiError(500, f'option "{key}" must be of type integer')
            out[key] = int(value)
        elif key in _FLOAT:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ApiError(500, f'option "{key}" must be of type float32')
            out[key] = float(value)
        elif key in _BOOL:
            if not isinstance(value, bool):
                raise ApiError(500, f'option "{key}" must be of type boolean')
            out[key] = value
        elif key in _STRING_LIST:
            if not isinstance(value, list):
                raise ApiError(500, f'option "{key}" must be of type array')
            if not all(isinstance(item, str) for item in value):
                raise ApiError(500, f'option "{key}" must be of an array of strings')
            out[key] = list(value)
        # Anything else: Ollama logs "invalid option provided" and carries on.
    return out


@dataclass
class Resolved:
    """Effective options for one request on one model."""

    values: dict[str, Any]  # Modelfile parameters and request options over the defaults
    num_ctx: int
    num_parallel: int
    # llama-server's context shift (a launch option since v0.30.0; None for older runners, where
    # `shift` is a per-request setting that never reloads).
    context_shift: bool | None = None

    def get(self, key: str) -> Any:
        return self.values.get(key, DEFAULTS.get(key))

    @property
    def load_options(self) -> dict[str, Any]:
        loaded = {key: self.get(key) for key in LOAD_KEYS}
        loaded["num_ctx"] = self.num_ctx
        loaded["context_shift"] = self.context_shift
        return loaded


def supports_context_shift(entry: ModelEntry) -> bool:
    """Ollama server/sched.go `supportsContextShift`."""
    families = {entry.config.family, *(entry.config.families or [])}
    return not families & NO_CONTEXT_SHIFT_FAMILIES


def resolve(entry: ModelEntry, server: ServerConfig, request_options: dict[str, Any],
            shift: bool | None = None) -> Resolved:
    """Modelfile PARAMETERs override defaults, request options override both (`modelOptions`).

    `shift` is the request's top-level field; embedding requests have none (Ollama passes nil)."""
    modelfile = check(dict(entry.config.parameters))
    requested = check(request_options)
    values = {**modelfile, **requested}
    num_ctx = values.get("num_ctx") or server.default_num_ctx
    # effectiveContext: never beyond what the model was trained for, and at least 4 (2048 for vision).
    num_ctx = max(4, min(num_ctx, entry.config.context_length))
    if entry.has("vision"):
        num_ctx = max(num_ctx, 2048)
    num_parallel = entry.config.num_parallel or server.num_parallel
    if not entry.has("completion") or entry.config.family in SINGLE_SLOT_FAMILIES:
        num_parallel = 1  # models without completion, and some architectures, get one slot
    context_shift = None
    if server.behaviour.llama_server_runners:
        context_shift = supports_context_shift(entry) if shift is None else shift
    return Resolved(values=values, num_ctx=num_ctx, num_parallel=num_parallel, context_shift=context_shift)


def needs_reload(loaded: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """needsReload: any load-time difference, except that a request with the default num_gpu (< 0)
    accepts whatever the runner was loaded with."""
    for key in (*LOAD_KEYS, "context_shift"):
        have, want = loaded.get(key), wanted.get(key)
        if key == "num_gpu" and want is not None and want < 0:
            continue
        if have != want:
            return True
    return False
