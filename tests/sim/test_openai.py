"""Ollama's OpenAI layer with its quirks (Ollama middleware/openai.go, openai/openai.go), checked with
raw bytes and the openai SDK."""

from __future__ import annotations

import base64
import json
import re
import struct
import time

import httpx
import openai
import pytest

from tests.sim.simkit import CHAT, CODER, EMBEDDER, sim_config
from tests.support.simulator import SimulatorProcess

pytestmark = pytest.mark.timeout(60)

HI = [{"role": "user", "content": "Tell me about queues"}]
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


def sse(text: str) -> list[str]:
    """The data payloads of an event stream, in order."""
    assert text.endswith("\n\n")
    events = text.split("\n\n")[:-1]
    assert all(event.startswith("data: ") for event in events), events
    return [event[len("data: "):] for event in events]


@pytest.fixture
def sdk(sim) -> openai.OpenAI:
    with openai.OpenAI(base_url=sim.url + "/v1", api_key="ignored", max_retries=0) as client:
        yield client


def test_it_answers_chat_completions_in_ollamas_shape(sim, http):
    response = http.post("/v1/chat/completions", json={"model": "Llama3.2:3b", "messages": HI, "seed": 4})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    data = response.json()
    assert re.match(r"^chatcmpl-\d{1,3}$", data["id"])
    assert data["object"] == "chat.completion" and data["system_fingerprint"] == "fp_ollama"
    assert data["model"] == "Llama3.2:3b" and abs(data["created"] - time.time()) < 5
    choice = data["choices"][0]
    assert choice["index"] == 0 and choice["message"]["role"] == "assistant" and choice["message"]["content"]
    assert choice["finish_reason"] == "stop"
    native = http.post("/api/chat", json={"model": CHAT, "messages": HI, "stream": False}).json()
    usage = data["usage"]
    assert usage["prompt_tokens"] == native["prompt_eval_count"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_it_streams_head_style_chunks(http):
    response = http.post("/v1/chat/completions", json={"model": CHAT, "messages": HI, "stream": True,
                                                       "max_tokens": 4, "stream_options": {"include_usage": True}})
    assert response.headers["content-type"] == "text/event-stream"
    events = sse(response.text)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert len({c["id"] for c in chunks}) == 1 and len({c["created"] for c in chunks}) == 1
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    content, finish, usage = chunks[:4], chunks[4], chunks[5]
    assert content[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all("role" not in c["choices"][0]["delta"] for c in content[1:])
    assert all(c["choices"][0]["finish_reason"] is None for c in content)
    assert finish["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "length"}
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == 4


def test_it_streams_legacy_style_chunks_when_configured():
    with SimulatorProcess(sim_config(), args=["--chunk-style", "legacy"]) as sim:
        response = httpx.post(sim.url + "/v1/chat/completions", timeout=30, json={
            "model": CHAT, "messages": HI, "stream": True, "max_tokens": 3})
    chunks = [json.loads(e) for e in sse(response.text)[:-1]]
    assert len(chunks) == 4  # three tokens, then the native final chunk: no usage chunk unless asked
    assert all(c["choices"][0]["delta"]["role"] == "assistant" for c in chunks)
    assert chunks[-1]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


def test_it_works_with_the_openai_sdk(sdk):
    completion = sdk.chat.completions.create(model=CHAT, messages=HI, max_tokens=5)
    assert completion.choices[0].finish_reason == "length" and completion.usage.completion_tokens == 5
    pieces = [chunk.choices[0].delta.content or "" for chunk in
              sdk.chat.completions.create(model=CHAT, messages=HI, max_tokens=6, stream=True, seed=2)
              if chunk.choices]
    again = sdk.chat.completions.create(model=CHAT, messages=HI, max_tokens=6, seed=2)
    assert "".join(pieces) == again.choices[0].message.content


def test_it_injects_temperature_one_when_it_is_absent(sdk):
    # Sampled, so replies vary; but a short reply can be just one of four openers, so two of a few may
    # match by chance (three of three differing failed a run). Twelve all alike: under 1 in 4 million.
    varied = {sdk.chat.completions.create(model=CHAT, messages=HI, max_tokens=12).choices[0].message.content
              for _ in range(12)}
    assert len(varied) > 1
    greedy = {sdk.chat.completions.create(model=CHAT, messages=HI, max_tokens=12, temperature=0)
              .choices[0].message.content for _ in range(2)}
    assert len(greedy) == 1


def test_it_ignores_native_only_fields(sim, http):
    response = http.post("/v1/chat/completions", json={
        "model": CHAT, "messages": HI, "seed": 1, "options": {"num_predict": 1}, "num_ctx": 999, "keep_alive": 0,
        "n": 3, "tool_choice": "none", "user": "u", "max_completion_tokens": 1})
    data = response.json()
    assert response.status_code == 200 and len(data["choices"]) == 1
    assert data["usage"]["completion_tokens"] > 1
    assert http.get("/api/ps").json()["models"][0]["context_length"] == 32768  # the default, not 999


def test_it_returns_whole_tool_calls_with_string_arguments(sdk, http):
    completion = sdk.chat.completions.create(model=CHAT, tools=[WEATHER], messages=[
        {"role": "user", "content": "What's the weather in Lisbon?"}])
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.type == "function" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Lisbon"}
    events = sse(http.post("/v1/chat/completions", json={
        "model": CHAT, "tools": [WEATHER], "stream": True,
        "messages": [{"role": "user", "content": "weather in Oslo"}]}).text)
    chunks = [json.loads(e) for e in events[:-1]]
    calls = [c for c in chunks if c["choices"][0]["delta"].get("tool_calls")]
    assert len(calls) == 1
    assert calls[0]["choices"][0]["delta"]["tool_calls"] == [{
        "id": calls[0]["choices"][0]["delta"]["tool_calls"][0]["id"], "index": 0, "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}}]
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    # A follow-up with the tool's result goes back through as tool_name.
    follow = sdk.chat.completions.create(model=CHAT, tools=[WEATHER], messages=[
        {"role": "user", "content": "weather in Oslo"},
        {"role": "assistant", "content": "", "tool_calls": [{"id": "call_1", "type": "function", "function": {
            "name": "get_weather", "arguments": '{"city":"Oslo"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}])
    assert follow.choices[0].message.content.startswith("The get_weather tool returned sunny.")


def test_it_maps_response_format_to_native_format(sdk):
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "n": {"type": "integer"}},
              "required": ["name", "n"]}
    reply = sdk.chat.completions.create(model=CHAT, messages=HI, response_format={
        "type": "json_schema", "json_schema": {"name": "x", "schema": schema}})
    data = json.loads(reply.choices[0].message.content)
    assert isinstance(data["name"], str) and isinstance(data["n"], int)
    loose = sdk.chat.completions.create(model=CHAT, messages=HI, response_format={"type": "json_object"})
    assert isinstance(json.loads(loose.choices[0].message.content), dict)


@pytest.mark.parametrize(("body", "status", "kind", "message"), [
    ({"model": CHAT, "messages": []}, 400, "invalid_request_error", "[] is too short - 'messages'"),
    ({"model": "nope", "messages": HI}, 404, "not_found_error", "model 'nope' not found"),
    ({"model": "bad name!", "messages": HI}, 400, "invalid_request_error", "invalid model name"),
    ({"model": CHAT, "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]}, 400, "invalid_request_error",
     "image URLs are not currently supported, please use base64 encoded data instead"),
    ({"model": CHAT, "messages": HI, "reasoning_effort": "extreme"}, 400, "invalid_request_error", None),
    ({"model": CODER, "messages": HI, "tools": [WEATHER]}, 400, "invalid_request_error",
     "registry.ollama.ai/library/qwen2.5-coder:1.5b does not support tools"),
    ({"model": CHAT, "messages": "hi"}, 400, "invalid_request_error",
     "json: cannot unmarshal string into Go struct field ChatCompletionRequest.messages of type []openai.Message"),
])
def test_it_wraps_errors_in_the_openai_envelope(http, body, status, kind, message):
    response = http.post("/v1/chat/completions", json=body)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["type"] == kind and error["param"] is None and error["code"] is None
    if message is not None:
        assert error["message"] == message


def test_it_reports_eof_for_an_empty_openai_body(http):
    response = http.post("/v1/chat/completions", content=b"")
    assert response.status_code == 400 and response.json()["error"]["message"] == "EOF"


def test_it_raises_the_sdks_typed_errors(sdk):
    with pytest.raises(openai.BadRequestError):
        sdk.chat.completions.create(model=CHAT, messages=[])
    with pytest.raises(openai.NotFoundError) as caught:
        sdk.chat.completions.create(model="nope", messages=HI)
    assert caught.value.status_code == 404
    assert caught.value.body == {"message": "model 'nope' not found", "type": "not_found_error", "param": None,
                                 "code": None}


def test_it_truncates_the_stream_without_done_on_a_mid_stream_error(sim, http):
    sim.set_faults(CHAT, fail_after_tokens=2)
    events = sse(http.post("/v1/chat/completions", json={"model": CHAT, "messages": HI, "stream": True}).text)
    assert events[-1] != "[DONE]"
    chunks = [json.loads(e) for e in events]
    assert len(chunks) == 3
    assert chunks[-1]["choices"][0]["delta"] == {"content": ""} and chunks[-1]["choices"][0]["finish_reason"] is None
    sim.set_faults(CHAT, fail_after_tokens=0)
    early = http.post("/v1/chat/completions", json={"model": CHAT, "messages": HI, "stream": True})
    assert early.status_code == 500 and early.json()["error"]["type"] == "api_error"


def test_it_serves_legacy_completions(sdk, http):
    done = sdk.completions.create(model=CHAT, prompt="Once upon a time", max_tokens=5)
    assert done.object == "text_completion" and re.match(r"^cmpl-\d{1,3}$", done.id)
    assert done.choices[0].finish_reason == "length" and done.usage.completion_tokens == 5
    events = sse(http.post("/v1/completions", json={"model": CHAT, "prompt": "x", "max_tokens": 3, "stream": True,
                                                    "stream_options": {"include_usage": True}}).text)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["usage"] == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0} for c in chunks[:-1])
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 3
    fim = sdk.completions.create(model=CODER, prompt="def f(x):\n", suffix="\n    return y\n", max_tokens=4)
    assert fim.usage.completion_tokens == 4


@pytest.mark.parametrize(("body", "message"), [
    ({"model": CHAT, "prompt": ["a", "b"]},
     "json: cannot unmarshal array into Go struct field CompletionRequest.prompt of type string"),
    ({"model": CHAT, "prompt": "x", "stop": ["a", 1]}, "invalid type for 'stop' field: float64"),
    ({"model": CHAT, "prompt": "x", "suffix": "y"}, "registry.ollama.ai/library/llama3.2:3b does not support insert"),
])
def test_it_rejects_bad_completion_requests(http, body, message):
    response = http.post("/v1/completions", json=body)
    assert response.status_code == 400 and response.json()["error"]["message"] == message


def test_it_serves_embeddings_as_floats_or_base64(sdk, http):
    floats = http.post("/v1/embeddings", json={"model": EMBEDDER, "input": ["a cat", "a dog"]}).json()
    assert floats["object"] == "list" and floats["model"] == EMBEDDER
    assert [d["index"] for d in floats["data"]] == [0, 1] and len(floats["data"][0]["embedding"]) == 384
    assert floats["usage"] == {"prompt_tokens": 4, "total_tokens": 4}
    packed = http.post("/v1/embeddings", json={"model": EMBEDDER, "input": "a cat", "encoding_format": "base64"})
    raw = base64.b64decode(packed.json()["data"][0]["embedding"])
    unpacked = struct.unpack(f"<{len(raw) // 4}f", raw)
    assert unpacked == pytest.approx(floats["data"][0]["embedding"], abs=1e-6)
    via_sdk = sdk.embeddings.create(model=EMBEDDER, input="a cat", dimensions=32)  # the SDK asks for base64
    assert len(via_sdk.data[0].embedding) == 32


@pytest.mark.parametrize(("body", "status", "message"), [
    ({"model": EMBEDDER, "input": []}, 400, "invalid input"),
    ({"model": EMBEDDER}, 400, "invalid input"),
    ({"model": EMBEDDER, "input": [[1, 2]]}, 400, "invalid input type"),
    ({"model": EMBEDDER, "input": "x", "encoding_format": "int8"}, 400,
     "Invalid value for 'encoding_format' = int8. Supported values: ['float', 'base64']."),
    ({"model": "nope", "input": "x"}, 404, 'model "nope" not found, try pulling it first'),
])
def test_it_rejects_bad_embedding_requests(http, body, status, message):
    response = http.post("/v1/embeddings", json=body)
    assert response.status_code == status and response.json()["error"]["message"] == message


def test_it_embeds_an_empty_string_as_one_input(http):
    data = http.post("/v1/embeddings", json={"model": EMBEDDER, "input": ""}).json()
    assert len(data["data"]) == 1 and len(data["data"][0]["embedding"]) == 384


def test_it_lists_and_retrieves_models(sdk, http):
    listed = http.get("/v1/models").json()
    assert listed["object"] == "list"
    assert {m["id"] for m in listed["data"]} == {CHAT, CODER, "qwen3:0.6b", EMBEDDER}
    assert all(m["object"] == "model" and m["owned_by"] == "library" and isinstance(m["created"], int)
               for m in listed["data"])
    assert {m.id for m in sdk.models.list()} == {m["id"] for m in listed["data"]}
    one = http.get("/v1/models/Llama3.2:3b").json()
    assert one["id"] == "Llama3.2:3b" and one["owned_by"] == "library"
    assert sdk.models.retrieve(CHAT).id == CHAT
    missing = http.get("/v1/models/nope")
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found_error"
    assert missing.json()["error"]["message"] == "model 'nope:latest' not found"  # ShowHandler's wording
    invalid = http.get("/v1/models/bad name!")
    assert invalid.status_code == 400 and invalid.json()["error"]["message"] == "invalid model name"
