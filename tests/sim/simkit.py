"""Constants and helpers shared by the simulator's tests (fixtures are in conftest.py)."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.support import processes
from tests.support.simulator import SimulatorProcess

CHAT = "llama3.2:3b"
CODER = "qwen2.5-coder:1.5b"
THINKER = "qwen3:0.6b"
EMBEDDER = "all-minilm:latest"

# Fast enough for a quick suite, slow enough that a stream is still a stream.
FAST: dict[str, Any] = {"tokens_per_second": 2000, "time_to_first_token_ms": 2, "load_seconds_per_gib": 0.02,
                        "pull_seconds_per_gib": 0.02, "response_tokens": [8, 24]}

MODELS: list[dict[str, Any]] = [
    {"name": CHAT, "size": 2_019_393_189, "family": "llama", "parameter_size": "3.2B",
     "quantization_level": "Q4_K_M", "capabilities": ["completion", "tools"], "context_length": 131072,
     "embedding_length": 3072},
    {"name": CODER, "size": 986_061_892, "family": "qwen2", "parameter_size": "1.5B",
     "quantization_level": "Q4_K_M", "capabilities": ["completion", "insert"], "context_length": 32768,
     "embedding_length": 1536},
    {"name": THINKER, "size": 522_653_767, "family": "qwen3", "parameter_size": "751.63M",
     "quantization_level": "Q4_K_M", "capabilities": ["completion", "tools", "thinking"],
     "context_length": 40960, "embedding_length": 1024},
    {"name": EMBEDDER, "size": 45_960_996, "family": "bert", "parameter_size": "23M",
     "quantization_level": "F16", "capabilities": ["embedding"], "context_length": 512, "embedding_length": 384},
]
PULLABLE = [{"name": "tinyllama:1.1b", "size": 637_700_138, "family": "llama", "parameter_size": "1B",
             "quantization_level": "Q4_0", "capabilities": ["completion"], "context_length": 2048}]


def sim_config(server: dict[str, Any] | None = None, models: list[dict[str, Any]] | None = None,
               pullable: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"server": {**FAST, **(server or {})}, "models": MODELS if models is None else models,
            "pullable": PULLABLE if pullable is None else pullable}


def clean(sim: SimulatorProcess) -> SimulatorProcess:
    """Unload everything, wait until it is gone, then zero the counters."""
    sim.reset(unload=True, faults=True)
    processes.eventually(lambda: not sim.stats()["loaded"], timeout=10, what="models to unload")
    sim.reset()
    return sim


def loaded_names(sim: SimulatorProcess) -> list[str]:
    return [m["name"] for m in httpx.get(sim.url + "/api/ps").json()["models"]]


def loading_names(sim: SimulatorProcess) -> list[str]:
    """Models being loaded right now. Since v0.30.0 /api/ps does not show them; /sim/stats does."""
    return [row["model"] for row in sim.stats()["loaded"] if row["loading"]]


def hold_loads(sim: SimulatorProcess, model: str) -> None:
    """Make loads of `model` last until release_loads: a load in progress follows /sim/faults."""
    sim.set_faults(model, load_seconds=3600)


def release_loads(sim: SimulatorProcess, model: str) -> None:
    sim.set_faults(model, load_seconds=0)


def ndjson(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]
