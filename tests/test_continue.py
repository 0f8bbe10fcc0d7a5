"""The Continue IDE extension (provider `openai`, apiBase ending in /v1) against the live server.

Continue sends some of these with raw `fetch` and reads streams with its own line parser
(`packages/fetch/src/stream.ts`): HTTP 200 exactly, one `data:` JSON per line, `data: [DONE]` at the
end, and a line starting with `: ping` taken as the end of the stream. The requests below are the
bodies and headers Continue builds (Continue's openai adapter), sent with httpx.
"""

from __future__ import annotations

import json

import httpx
import numpy as np
import openai
import pytest
import yaml

from apiaccess.connect import pick_models
from apiaccess.connect.editors import continue_json, continue_yaml
from inference.models import Model
from tests.conftest import CHAT_MODEL, CODE_MODEL, EMBED_MODEL
from tests.support.continue_paths import autocomplete_path
from tests.support.openai_errors import assert_openai_error

FIM_STOP = ["<fim_prefix>", "<fim_suffix>", "<fim_middle>", "<|endoftext|>", "\n\n", "\r\n\r\n", "/src/"]
READ_FILE_TOOL = {
    "type": "function",
    "function": {
        "name": "read_file",
        "description": "Use this tool if you need to view the contents of an existing file.",
        "parameters": {
            "type": "object",
            "required": ["filepath"],
            "properties": {
                "filepath": {"type": "string", "description": "The path of the file to read, relative to the root"}
            },
        },
    },
}
CHAT_STOP = ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]


def continue_headers(key: str) -> dict[str, str]:
    """What Continue's raw-fetch paths send (core/llm/llms/OpenAI.ts::_getHeaders)."""
    return {"Content-Type": "application/json", "Authorization": f"Bearer {key}", "api-key": key}


class ContinueStreamError(AssertionError):
    pass


def continue_stream_sse(status: int, text: str) -> list[dict]:
    """Continue's streamResponse + streamSse, line for line: the events it would hand to the editor."""
    if status != 200:
        raise ContinueStreamError(f"Continue requires HTTP 200, got {status}: {text}")
    events = []
    for line in text.split("\n"):
        if line.startswith(("data:[DONE]", "data: [DONE]")) or line.startswith(": ping"):
            break
        if not line.startswith("data:"):
            continue
        payload = line[len("data: "):] if line.startswith("data: ") else line[len("data:"):]
        try:
            data = json.loads(payload)
        except ValueError:
            raise ContinueStreamError(f"Malformed JSON sent from server: {payload}") from None
        if isinstance(data, dict) and data.get("error"):
            raise ContinueStreamError(f"Error streaming response: {data['error']}")
        if data:
            events.append(data)
    return events


def assert_plain_sse(text: str) -> None:
    """Every line is a single-line `data:` event, blank, or an SSE comment Continue skips (queue
    position and keep-alive comments; never `: ping`, which Continue takes as the end of the stream);
    nothing Continue would misread, and `data: [DONE]` closes the stream."""
    lines = [line for line in text.split("\n") if line.strip()]
    for line in lines:
        if line.startswith(":"):
            assert not line.startswith(": ping"), f"Continue would stop reading at {line!r}"
            continue
        assert line.startswith("data: "), f"not a data line: {line!r}"
        if line != "data: [DONE]":
            json.loads(line[len("data: "):])
    assert lines and lines[-1] == "data: [DONE]", lines[-3:]
    assert text.endswith("data: [DONE]\n\n")
    assert sum(line == "data: [DONE]" for line in lines) == 1


def post_stream(url: str, key: str, body: dict) -> httpx.Response:
    with httpx.Client(timeout=60) as client:
        response = client.post(url, headers=continue_headers(key), json=body)
    return response


# ---- tab autocomplete (checklist 36) -----------------------------------------------------------------


@pytest.fixture
def autocomplete_response(base_url, world) -> httpx.Response:
    body = {
        "model": CODE_MODEL,
        "prompt": "<fim_prefix>def f(<fim_suffix>)\n<fim_middle>",
        "max_tokens": 256,
        "temperature": 0.01,
        "stop": FIM_STOP,
        "stream": True,
    }
    return post_stream(base_url + "/completions", world.alice_key, body)


def test_it_answers_continue_autocomplete_with_200_event_stream(autocomplete_response):
    assert autocomplete_response.status_code == 200, autocomplete_response.text
    assert autocomplete_response.headers["content-type"].startswith("text/event-stream")


def test_it_streams_autocomplete_lines_that_continue_parses(autocomplete_response):
    assert_plain_sse(autocomplete_response.text)


def test_it_streams_a_non_empty_autocomplete_completion(autocomplete_response):
    events = continue_stream_sse(autocomplete_response.status_code, autocomplete_response.text)
    completion = "".join(e["choices"][0]["text"] for e in events if e.get("choices") and e["choices"][0]["text"])
    assert completion.strip()
    assert not any(stop in completion for stop in FIM_STOP)
    assert all(e["object"] == "text_completion" for e in events)


@pytest.fixture(scope="module")
def connect_page_autocomplete_models(gatehouse, world, django_db_blocker) -> dict[str, dict]:
    """The autocomplete model entry of each Continue configuration the Connect page hands out."""
    base_url = gatehouse.url + "/v1"
    with django_db_blocker.unblock():
        models = pick_models(Model.objects.filter(enabled=True))
    from_yaml = yaml.safe_load(continue_yaml(base_url, world.alice_key, models))["models"]
    return {"config.yaml": next(m for m in from_yaml if "autocomplete" in m["roles"]),
            "config.json": json.loads(continue_json(base_url, world.alice_key, models))["tabAutocompleteModel"]}


@pytest.mark.parametrize("config", ["config.yaml", "config.json"])
def test_the_connect_pages_continue_configs_send_autocomplete_to_completions(connect_page_autocomplete_models,
                                                                            config):
    entry = connect_page_autocomplete_models[config]
    assert (entry["model"], autocomplete_path(entry)) == (CODE_MODEL, "completions")
    body = {"model": entry["model"], "prompt": "<fim_prefix>def f(<fim_suffix>)\n<fim_middle>", "max_tokens": 64,
            "temperature": 0.01, "stop": FIM_STOP, "stream": True}
    response = post_stream(entry["apiBase"].rstrip("/") + "/" + autocomplete_path(entry), entry["apiKey"], body)
    events = continue_stream_sse(response.status_code, response.text)
    assert events and all(e["object"] == "text_completion" for e in events)


@pytest.mark.parametrize("entry", [
    {"model": CODE_MODEL, "useLegacyCompletionsEndpoint": False},  # what the Connect page used to hand out
    {"model": "gpt-oss:20b"},
    {"model": "opencoder:8b"},
], ids=["legacy-endpoint-off", "gpt-id", "o-id"])
def test_continue_sends_these_autocomplete_models_to_chat_whatever_the_server(entry):
    """The traps the Connect page's configuration and warning steer people around."""
    assert autocomplete_path({"apiBase": "https://gatehouse.example/v1", **entry}) == "chat/completions"


# ---- chat and agent mode -----------------------------------------------------------------------------


def continue_chat_body(content: str, *, tools: bool) -> dict:
    """core/llm/openaiTypeConverters.ts::toChatBody plus OpenAI.ts::modifyChatBody and the adapter."""
    body = {
        "messages": [
            {"role": "system", "content": "<important_rules>\nAlways cite file paths.\n</important_rules>"},
            {"role": "user", "content": content},
        ],
        "model": CHAT_MODEL,
        "max_tokens": 4096,
        "temperature": 0.2,
        "top_p": 0.9,
        "frequency_penalty": 0,
        "presence_penalty": 0,
        "stream": True,
        "stop": CHAT_STOP,
        "stream_options": {"include_usage": True},
    }
    if tools:
        body.update(tools=[READ_FILE_TOOL], tool_choice="auto", parallel_tool_calls=False)
    return body


@pytest.fixture
def agent_stream(base_url, world) -> list[dict]:
    body = continue_chat_body("Read the file src/app.py and summarise it. Use read_file.", tools=True)
    response = post_stream(base_url + "/chat/completions", world.alice_key, body)
    assert_plain_sse(response.text)
    return continue_stream_sse(response.status_code, response.text)


@pytest.fixture
def chat_stream(base_url, world) -> list[dict]:
    body = continue_chat_body("How do I reverse a list in Python?", tools=False)
    response = post_stream(base_url + "/chat/completions", world.alice_key, body)
    assert_plain_sse(response.text)
    return continue_stream_sse(response.status_code, response.text)


def _deltas(events: list[dict]) -> list[dict]:
    return [e["choices"][0]["delta"] for e in events if e["choices"]]


def test_it_streams_a_continue_chat_answer_with_text(chat_stream):
    text = "".join(d.get("content") or "" for d in _deltas(chat_stream))
    assert text.strip()


@pytest.mark.parametrize("which", ["chat_stream", "agent_stream"])
def test_it_sends_the_role_only_in_the_first_delta_of_a_continue_chat(request, which):
    deltas = _deltas(request.getfixturevalue(which))
    assert deltas[0].get("role") == "assistant"
    assert not any("role" in d for d in deltas[1:]), [d for d in deltas[1:] if "role" in d]


def test_it_streams_continue_tool_call_deltas_with_index_and_function(agent_stream):
    entries = [entry for d in _deltas(agent_stream) for entry in d.get("tool_calls") or []]
    assert entries, "the agent request got no tool call"
    for entry in entries:
        assert isinstance(entry.get("index"), int), entry
        assert isinstance(entry.get("function"), dict), entry
    assert {entry["index"] for entry in entries} == {0}  # parallel_tool_calls: false
    name = "".join(e["function"].get("name") or "" for e in entries)
    arguments = "".join(e["function"].get("arguments") or "" for e in entries)
    assert name == "read_file"
    assert isinstance(json.loads(arguments)["filepath"], str)
    assert [e["choices"][0]["finish_reason"] for e in agent_stream if e["choices"]][-1] == "tool_calls"


@pytest.mark.parametrize("which", ["chat_stream", "agent_stream"])
def test_it_sends_exactly_one_usage_chunk_after_the_finish_chunk(request, which):
    events = request.getfixturevalue(which)
    with_usage = [i for i, e in enumerate(events) if e.get("usage")]
    finishes = [i for i, e in enumerate(events) if e["choices"] and e["choices"][0]["finish_reason"]]
    assert len(with_usage) == 1, f"{len(with_usage)} chunks carry usage"
    assert len(finishes) == 1
    assert with_usage[0] == len(events) - 1 and with_usage[0] > finishes[0]
    last = events[-1]
    assert last["choices"] == []
    assert last["usage"]["total_tokens"] == last["usage"]["prompt_tokens"] + last["usage"]["completion_tokens"]


# ---- embeddings (@codebase indexing) -------------------------------------------------------------------


def test_it_embeds_continue_batches_of_128_in_input_order(base_url, world):
    """The adapter's embed(): the SDK's default (base64) request, 128 inputs at a time."""
    chunks = [f"snippet {i}: def handler_{i}(request):\n    return route(request, {i})" for i in range(200)]
    client = openai.OpenAI(base_url=base_url, api_key=world.alice_key, max_retries=0)
    vectors = []
    for start in range(0, len(chunks), 128):
        batch = chunks[start:start + 128]
        response = client.embeddings.create(model=EMBED_MODEL, input=batch)
        assert [item.index for item in response.data] == list(range(len(batch)))
        vectors.extend(item.embedding for item in response.data)
    assert len(vectors) == len(chunks) and all(len(v) == 384 for v in vectors)
    # Continue maps data[] in array order, so vector i must be the vector of chunk i.
    for i in (0, 127, 128, 199):
        alone = client.embeddings.create(model=EMBED_MODEL, input=chunks[i], encoding_format="float")
        np.testing.assert_allclose(np.asarray(vectors[i]), np.asarray(alone.data[0].embedding), atol=1e-6)


# ---- model autodetection and wrong URLs ------------------------------------------------------------------


def test_it_lists_model_ids_for_continue_autodetect(base_url, world):
    response = httpx.get(base_url + "/models", headers=continue_headers(world.alice_key), timeout=30)
    assert response.status_code == 200
    ids = [model["id"] for model in response.json()["data"]]
    assert {CHAT_MODEL, CODE_MODEL, EMBED_MODEL} <= set(ids)


def test_it_answers_continue_on_the_responses_api(base_url, world):
    # Continue sends ids like gpt-5 or o3 to /v1/responses unless useResponsesApi is false.
    body = {"model": CHAT_MODEL, "input": [{"role": "user", "content": "hi"}], "stream": True}
    response = httpx.post(base_url + "/responses", headers=continue_headers(world.alice_key), json=body, timeout=30)
    assert response.status_code == 200
    last = response.text.rstrip("\n").split("\n\n")[-1]
    assert last.startswith("event: response.completed\ndata: ")


@pytest.mark.parametrize("path", ["/chat/completions", "/completions"])
def test_it_answers_a_base_url_without_v1_with_json_continue_can_parse(gatehouse, world, path):
    body = continue_chat_body("hello", tools=False) if path == "/chat/completions" else {
        "model": CODE_MODEL, "prompt": "def f(", "max_tokens": 16, "stream": True}
    response = httpx.post(gatehouse.url + path, headers=continue_headers(world.alice_key), json=body, timeout=30)
    assert_openai_error(response, 404)
