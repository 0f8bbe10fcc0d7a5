"""Which num_ctx a runner gets: the request's, else the Modelfile's, else OLLAMA_CONTEXT_LENGTH, else Ollama's
default, which since v0.15.5 follows total VRAM (Ollama server/routes.go `Serve`); then the training
context caps it."""

from __future__ import annotations

import ollama
import pytest

from ollamasim.config import from_dict
from tests.sim.simkit import sim_config
from tests.support.simulator import SimulatorProcess

pytestmark = pytest.mark.timeout(60)

LONG = "long:1b"  # trained for a million tokens, so the training context never caps the defaults
MODELS = [{"name": LONG, "size": 1_000_000_000, "capabilities": ["completion"], "context_length": 1_048_576,
           "kv_bytes_per_token": 1024}]


@pytest.mark.parametrize(("version", "gpu_memory", "default"), [
    ("0.32.15", "8GiB", 4096),
    ("0.32.15", "22GiB", 4096),
    ("0.32.15", "23GiB", 32768),  # Ollama compares with 23 and 47 GiB: GPUs report a bit under their size
    ("0.32.15", "24GiB", 32768),
    ("0.32.15", "46GiB", 32768),
    ("0.32.15", "47GiB", 262144),
    ("0.32.15", "80GiB", 262144),
    ("0.15.5", "24GiB", 32768),
    ("0.15.4", "80GiB", 4096),  # before v0.15.5 the default was fixed
    ("0.6.7", "8GiB", 4096),
    ("0.6.6", "80GiB", 2048),
])
def test_it_picks_ollamas_default_context_for_the_version_and_the_vram(version, gpu_memory, default):
    server = from_dict({"server": {"version": version, "gpu_memory": gpu_memory}}).server
    assert server.default_num_ctx == default


def test_it_lets_an_explicit_context_length_setting_win_over_the_vram_tier():
    server = from_dict({"server": {"gpu_memory": "80GiB", "num_ctx": 8192}}).server
    assert server.default_num_ctx == 8192


@pytest.mark.parametrize("version", ["latest", "0.32", "x0.32.15"])
def test_it_refuses_a_version_string_it_cannot_compare(version):
    with pytest.raises(ValueError, match="version must look like 0.32.15"):
        from_dict({"server": {"version": version}})


def test_it_loads_a_model_with_the_vram_tier_unless_the_request_sets_num_ctx():
    with SimulatorProcess(sim_config({"gpu_memory": "48GiB"}, models=MODELS, pullable=[])) as sim:
        client = ollama.Client(host=sim.url)
        client.generate(model=LONG, prompt="x", options={"num_predict": 1})
        assert client.ps().models[0].context_length == 262144
        client.generate(model=LONG, prompt="x", options={"num_predict": 1, "num_ctx": 8192})
        assert client.ps().models[0].context_length == 8192
        assert sim.stats()["config"]["default_num_ctx"] == 262144


def test_it_uses_the_context_length_flag_as_ollama_uses_its_environment_variable():
    with SimulatorProcess(sim_config({"gpu_memory": "48GiB"}, models=MODELS, pullable=[]),
                          args=["--num-ctx", "16384"]) as sim:
        client = ollama.Client(host=sim.url)
        client.generate(model=LONG, prompt="x", options={"num_predict": 1})
        assert client.ps().models[0].context_length == 16384
