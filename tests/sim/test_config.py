"""The command line, the TOML config, and the Go-compatible helpers underneath (no process needed for most)."""

from __future__ import annotations

import math
import re
import subprocess
import sys
import tomllib

import httpx
import pytest

from ollamasim.catalogue import parse_name
from ollamasim.config import from_dict, parse_size, to_toml
from ollamasim.wire import ApiError, dumps, parse_go_duration, parse_keep_alive, rfc3339nano_utc
from tests.sim.simkit import CHAT, sim_config
from tests.support.processes import REPO
from tests.support.simulator import SimulatorProcess

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize(("text", "ns"), [
    ("0", 0), ("5m", 300 * 10**9), ("1h30m", 5400 * 10**9), ("1.5s", 1_500_000_000), ("300ms", 300_000_000),
    ("-1m", -60 * 10**9), ("2h45m30.5s", (2 * 3600 + 45 * 60 + 30.5) * 10**9), ("10us", 10_000), ("7µs", 7_000),
])
def test_it_parses_go_durations(text, ns):
    assert parse_go_duration(text) == ns


@pytest.mark.parametrize(("text", "error"), [
    ("", 'time: invalid duration ""'), ("abc", 'time: invalid duration "abc"'),
    ("10", 'time: missing unit in duration "10"'), ("5d", 'time: unknown unit "d" in duration "5d"'),
    (".s", 'time: invalid duration ".s"'),
])
def test_it_rejects_bad_go_durations_with_gos_messages(text, error):
    with pytest.raises(ValueError, match=re.escape(error)):
        parse_go_duration(text)


def test_it_reads_keep_alive_like_api_duration():
    assert parse_keep_alive(None) is None
    assert parse_keep_alive(30) == 30.0 and parse_keep_alive(0.5) == 0.5
    assert parse_keep_alive(-1) == math.inf and parse_keep_alive("-1s") == math.inf
    assert parse_keep_alive("2m") == 120.0
    for value, kind in ((True, "bool"), ({}, "map[string]interface {}"), ([1], "[]interface {}")):
        with pytest.raises(ApiError, match=re.escape(f"Unsupported type: '{kind}'")):
            parse_keep_alive(value)


def test_it_encodes_json_and_times_like_go():
    assert dumps({"a": "<x> & é", "b": [1, 2.5]}) == '{"a":"\\u003cx\\u003e \\u0026 é","b":[1,2.5]}'
    assert rfc3339nano_utc(1_700_000_000_123_400_000) == "2023-11-14T22:13:20.1234Z"
    assert rfc3339nano_utc(1_700_000_000_000_000_000) == "2023-11-14T22:13:20Z"


def test_it_normalises_model_names():
    assert parse_name("llama3.2").short == "llama3.2:latest"
    assert parse_name("LLAMA3.2:3B").key == parse_name("llama3.2:3b").key
    assert parse_name("jmorgan/foo:bar").short == "jmorgan/foo:bar"
    assert parse_name("hf.co/org/model:Q4").full == "hf.co/org/model:Q4"
    assert parse_name("llama3.2").full == "registry.ollama.ai/library/llama3.2:latest"
    for bad in ("", "bad name", "a/b/c/d", ":tag", "-x", "x:"):
        assert parse_name(bad) is None, bad


def test_it_parses_sizes():
    assert parse_size("24GiB") == 24 * 2**30 and parse_size("512 MiB") == 512 * 2**20
    assert parse_size("8GB") == 8 * 10**9 and parse_size(1234) == 1234
    with pytest.raises(ValueError):
        parse_size("lots")


def test_it_writes_toml_that_reads_back_the_same():
    config = sim_config({"keep_alive": "5m", "fast_path": False},
                        models=[{"name": "m:1", "capabilities": ["completion"], "parameters": {"stop": ["a\"b"]}}],
                        pullable=[])
    assert tomllib.loads(to_toml(config)) == config
    assert tomllib.loads(to_toml({"server": {}, "models": []}))["models"] == []
    parsed = from_dict(tomllib.loads(to_toml(config)))
    assert parsed.server.keep_alive == 300 and parsed.server.fast_path is False
    assert parsed.models[0].parameters == {"stop": ['a"b']}


@pytest.mark.parametrize(("config", "message"), [
    ({"server": {"num_paralel": 2}}, "unknown keys ['num_paralel']"),
    ({"models": [{"name": "m", "capabilities": ["flying"]}]}, "unknown capabilities ['flying']"),
    ({"server": {"chunk_style": "new"}}, "chunk_style must be 'head' or 'legacy'"),
    ({"server": {"gpu_memory": "lots"}}, "not a size"),
])
def test_it_refuses_a_bad_config_before_listening(tmp_path, config, message):
    path = tmp_path / "bad.toml"
    path.write_text(to_toml(config))
    done = subprocess.run([sys.executable, "-m", "ollamasim", "--port", "0", "--config", str(path)], cwd=REPO,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert message in done.stderr


def test_it_serves_the_demo_catalogue_and_prints_one_line_when_listening():
    with SimulatorProcess() as sim:
        names = {m["name"] for m in httpx.get(sim.url + "/api/tags").json()["models"]}
        first_line = sim.output().splitlines()[0]
    assert names == {"llama3.2:3b", "qwen2.5-coder:1.5b", "qwen3:0.6b", "all-minilm:latest"}
    assert first_line == f"ollamasim 0.32.15 listening on {sim.url} (4 models, num_parallel=1)"


def test_it_lets_command_line_flags_override_the_file():
    args = ["--num-parallel", "3", "--max-queue", "7", "--keep-alive", "90s", "--gpu-memory", "8GiB",
            "--no-fast-path", "--version-string", "0.9.0"]
    with SimulatorProcess(sim_config({"num_parallel": 1, "max_queue": 1}), args=args) as sim:
        config = sim.stats()["config"]
        version = httpx.get(sim.url + "/api/version").json()
    assert (config["num_parallel"], config["max_queue"], config["keep_alive"]) == (3, 7, 90)
    assert config["gpu_memory"] == 8 * 2**30 and config["fast_path"] is False
    assert version == {"version": "0.9.0"}


def test_it_shares_one_runner_between_models_built_on_the_same_weights():
    """Derived models (FROM base + PARAMETER num_ctx) share the weights blob, so alternating between them
    reloads the runner every time (ollama#10948)."""
    derived = {"name": "llama-8k", "parent": CHAT, "size": 2_019_393_189, "capabilities": ["completion"],
               "parameters": {"num_ctx": 8192}}
    config = sim_config(models=[sim_config()["models"][0], derived])
    with SimulatorProcess(config) as sim:
        for model in (CHAT, "llama-8k", CHAT, "llama-8k"):
            httpx.post(sim.url + "/api/generate", json={"model": model, "prompt": "x", "stream": False,
                                                        "options": {"num_predict": 1}}, timeout=30)
            rows = httpx.get(sim.url + "/api/ps").json()["models"]
            # The base model gets the default context, 32768 for the simulated 24 GiB GPU.
            assert len(rows) == 1 and rows[0]["context_length"] == (8192 if model == "llama-8k" else 32768)
        stats = sim.stats()["models"]
        shown = httpx.post(sim.url + "/api/show", json={"model": "llama-8k"}).json()
    assert stats["llama-8k:latest"]["reloads"] == 2 and stats[CHAT]["reloads"] == 1
    assert re.search(r"^num_ctx\s+8192$", shown["parameters"], re.MULTILINE)


def test_it_documents_itself_without_pointing_outside_the_repository():
    import ollamasim

    doc = ollamasim.__doc__
    assert "Known deviations from Ollama" in doc
    assert not re.search(r"(^|\s)/(work|home|tmp|root)/", doc), "the docstring cites a path outside the repository"
    cited = re.findall(r"ollamasim/\w+\.py", doc)
    assert cited and all((REPO / path).exists() for path in cited), cited
