"""What makes Ollama reload a loaded model (server/sched.go `needsReload`): any field of api.Runner that
differs, compared with reflect.DeepEqual (so an unset pointer differs from any value), and, since v0.30.0,
a different context-shift setting, which is a llama-server launch option."""

from __future__ import annotations

from collections.abc import Iterator

import ollama
import pytest

from tests.sim.simkit import CHAT, EMBEDDER, clean, sim_config
from tests.support.simulator import SimulatorProcess

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def reload_sim() -> Iterator[SimulatorProcess]:
    with SimulatorProcess(sim_config()) as sim:
        yield sim


@pytest.fixture
def sim(reload_sim: SimulatorProcess) -> SimulatorProcess:
    return clean(reload_sim)


def generate(sim: SimulatorProcess, options: dict | None = None, **body) -> None:
    """One request through the official client; `shift`, which it cannot send, goes in the raw body."""
    client = ollama.Client(host=sim.url)
    payload = {"model": CHAT, "prompt": "x", "stream": False, "options": {"num_predict": 1, **(options or {})},
               **body}
    client._request(ollama.GenerateResponse, "POST", "/api/generate", json=payload, stream=False)


def reloads(sim: SimulatorProcess) -> int:
    return sim.model_stats(CHAT).get("reloads", 0)


@pytest.mark.parametrize("option", [
    {"num_ctx": 2048},
    {"num_batch": 1024},
    {"num_gpu": 20},
    {"main_gpu": 0},  # a pointer in api.Runner: nil, the default, is not 0
    {"use_mmap": False},  # a pointer too
    {"num_thread": 4},
    {"draft_num_predict": 4},  # Ollama zeroes it when unset, so even its documented default reloads
])
def test_it_reloads_when_any_runner_option_differs(sim, option):
    generate(sim)
    generate(sim, option)
    assert reloads(sim) == 1
    generate(sim, option)  # the runner now has it
    assert reloads(sim) == 1


def test_it_keeps_the_runner_for_sampling_options_and_the_automatic_gpu_count(sim):
    generate(sim)
    generate(sim, {"temperature": 0.1, "seed": 3, "top_k": 5, "stop": ["x"], "num_keep": 8, "num_gpu": -1})
    generate(sim, shift=True)  # the model's own default: nothing differs
    assert reloads(sim) == 0


def test_it_reloads_when_the_context_shift_setting_differs(sim):
    generate(sim)
    generate(sim, shift=False)
    assert reloads(sim) == 1
    generate(sim, shift=False)
    assert reloads(sim) == 1
    generate(sim)  # no shift field means the default, on
    assert reloads(sim) == 2


def test_it_reloads_a_chat_model_that_embeds_after_chatting_without_context_shift(sim):
    """Embedding requests carry no shift, so they want the default: a chat model loaded with shift off
    reloads when the same model is asked for embeddings."""
    generate(sim, shift=False)
    ollama.Client(host=sim.url).embed(model=CHAT, input="x")
    assert reloads(sim) == 1
    assert sim.model_stats(EMBEDDER).get("reloads", 0) == 0


def test_it_never_reloads_for_shift_before_0_30():
    with SimulatorProcess(sim_config({"version": "0.29.1"})) as older:
        generate(older)
        generate(older, shift=False)
        assert reloads(older) == 0
