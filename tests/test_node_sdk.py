"""The official Node `openai` SDK (5.x, the major version Continue pins) against the live server.

One Node process (tests/node/client.mjs) runs every scenario once per session and reports what a
Node user would see; the tests below each check one behaviour of that report. The SDK is installed
from tests/node/package-lock.json when it is missing (tests/support/node.py).
"""

from __future__ import annotations

import json
import subprocess

import numpy as np
import openai
import pytest

from tests.conftest import CHAT_MODEL, EMBED_MODEL
from tests.support.node import NODE_DIR, node_with_packages

SEED = 4242
PROMPT = "Explain in two sentences what an API gateway does for a team of developers."
TOOL_PROMPT = "Open the file src/app.py with read_file and tell me what it does."
EMBED_INPUTS = [
    "The gateway routes each request to a GPU node.",
    "café déjà vu — naïve façade, 東京",
    "def add(a, b):\n    return a + b\n",
    "Redis keeps the queue; daphne serves the API.",
]


@pytest.fixture(scope="session")
def node_binary() -> str:
    return node_with_packages()


@pytest.fixture(scope="session")
def node_report(node_binary, gatehouse, world) -> dict:
    job = {
        "base_url": gatehouse.url + "/v1",
        "api_key": world.alice_key,
        "bad_key": "gh-this-key-does-not-exist",
        "chat_model": CHAT_MODEL,
        "embed_model": EMBED_MODEL,
        "seed": SEED,
        "prompt": PROMPT,
        "tool_prompt": TOOL_PROMPT,
        "embed_inputs": EMBED_INPUTS,
    }
    result = subprocess.run(
        [node_binary, str(NODE_DIR / "client.mjs")],
        input=json.dumps(job), capture_output=True, text=True, timeout=150, cwd=NODE_DIR,
    )
    assert result.returncode == 0, f"client.mjs failed ({result.returncode}):\n{result.stderr}"
    return json.loads(result.stdout.strip().splitlines()[-1])


def _step(report: dict, name: str) -> dict:
    """One scenario's outcome; fails with the SDK's own error if that scenario threw."""
    outcome = report[name]
    assert "error" not in outcome, f"the Node SDK threw in {name}: {outcome['error']}"
    return outcome


def _as_float32(vectors) -> np.ndarray:
    return np.asarray(vectors, dtype=np.float64).astype(np.float32)


def test_it_runs_the_sdk_version_that_continue_pins(node_report):
    assert node_report["sdk_version"].startswith("5.")


def test_it_streams_text_equal_to_the_non_streamed_answer_for_the_same_seed(node_report):
    plain = _step(node_report, "plain_chat")
    streamed = _step(node_report, "stream_chat")
    assert streamed["text"], "the Node stream produced no text"
    assert streamed["text"] == plain["content"]
    assert streamed["finish_reasons"] == [plain["finish_reason"]]


def test_it_sends_exactly_one_usage_chunk_to_a_node_stream(node_report):
    streamed = _step(node_report, "stream_chat")
    plain = _step(node_report, "plain_chat")
    assert len(streamed["usage_chunks"]) == 1, streamed["usage_chunks"]
    only = streamed["usage_chunks"][0]
    assert only["choices"] == 0 and streamed["usage_chunk_is_last"]
    assert streamed["empty_choice_chunks"] == 1
    usage = only["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["completion_tokens"] == plain["usage"]["completion_tokens"] > 0


def test_it_sends_the_role_once_in_a_node_stream(node_report):
    assert _step(node_report, "stream_chat")["roles"] == ["assistant"]


def test_it_lets_the_node_stream_helper_finish_with_an_assistant_message(node_report):
    helper = _step(node_report, "helper_stream")
    assert helper["role"] == "assistant"
    assert helper["finish_reason"] in ("stop", "length")
    assert helper["choices"] == 1
    assert helper["content"] and helper["content"] == helper["content_events"]


def test_it_decodes_node_default_base64_embeddings_to_the_explicit_float_vectors(node_report):
    embeddings = _step(node_report, "embeddings")
    assert embeddings["default_encoding_sent"] == "base64"  # the SDK's implicit default
    assert embeddings["default_indexes"] == embeddings["float_indexes"] == list(range(len(EMBED_INPUTS)))
    implicit, explicit = _as_float32(embeddings["default"]), _as_float32(embeddings["float"])
    assert implicit.shape == (len(EMBED_INPUTS), 384)
    np.testing.assert_allclose(implicit, explicit, rtol=1e-6, atol=1e-7)
    assert np.all(np.isfinite(implicit))


def test_it_gives_node_the_same_vectors_as_the_python_sdk(node_report, gatehouse, world):
    node_vectors = _as_float32(_step(node_report, "embeddings")["default"])
    client = openai.OpenAI(base_url=gatehouse.url + "/v1", api_key=world.alice_key, max_retries=0)
    python = client.embeddings.create(model=EMBED_MODEL, input=EMBED_INPUTS, encoding_format="float")
    python_vectors = _as_float32([item.embedding for item in python.data])
    np.testing.assert_allclose(node_vectors, python_vectors, rtol=1e-6, atol=1e-7)


def test_it_streams_continue_tool_calls_that_aggregate_to_a_name_and_json_arguments(node_report):
    tools = _step(node_report, "continue_tools")
    assert tools["finish_reason"] == "tool_calls"
    assert len(tools["tool_calls"]) == 1, tools["tool_calls"]  # parallel_tool_calls: false
    call = tools["tool_calls"][0]
    assert call["name"] == "read_file"
    assert call["id"].startswith("call_") and call["type"] == "function"
    arguments = json.loads(call["arguments"])
    assert isinstance(arguments, dict) and isinstance(arguments["filepath"], str)


def test_it_gives_every_streamed_tool_call_delta_an_index_and_a_function(node_report):
    entries = _step(node_report, "continue_tools")["raw_entries"]
    assert entries
    for entry in entries:
        assert isinstance(entry.get("index"), int), entry
        assert isinstance(entry.get("function"), dict), entry


def test_it_sends_one_role_and_one_usage_chunk_in_a_continue_tool_stream(node_report):
    tools = _step(node_report, "continue_tools")
    assert tools["roles"] == 1
    assert tools["usage_chunks"] == 1


def test_it_rejects_a_wrong_key_with_the_node_authentication_error(node_report):
    error = node_report["wrong_key"]["error"]
    assert error is not None, "a wrong key was accepted"
    assert error["status"] == 401
    assert error["class"] == "AuthenticationError" and error["is_authentication_error"]
    assert error["message"].startswith("401 ")
    assert error["body"]["type"] and error["body"]["message"]
    assert error["request_id"]
