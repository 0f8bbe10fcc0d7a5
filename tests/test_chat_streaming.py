"""Streaming chat completions: the exact SSE shape clients rely on (OpenAI's streaming format),
errors before and after the first byte, and cancellation when the client goes away."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from tests.conftest import BROKEN_MODEL, CHAT_MODEL
from tests.support.processes import eventually
from tests.support.sse import parse_sse

USER = [{"role": "user", "content": "Tell me about rivers."}]


def stream_raw(base_url: str, key: str, body: dict) -> httpx.Response:
    return httpx.post(base_url + "/chat/completions", json={"stream": True, **body}, timeout=30,
                      headers={"Authorization": f"Bearer {key}", "Accept": "application/json"})


def test_it_streams_only_data_events_and_ends_with_done(base_url, world):
    response = stream_raw(base_url, world.alice_key, {"model": CHAT_MODEL, "messages": USER})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    assert "content-length" not in response.headers
    chunks, done = parse_sse(response.text)
    assert done and chunks
    assert len({(c["id"], c["created"], c["model"]) for c in chunks}) == 1
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert all(c["choices"] for c in chunks), "no empty-choices chunk unless usage was asked for"
    assert all(c.get("usage") is None for c in chunks)
    deltas = [c["choices"][0] for c in chunks]
    assert deltas[0]["delta"]["role"] == "assistant"
    assert all("role" not in d["delta"] for d in deltas[1:]), "role only in the first delta"
    assert [d["finish_reason"] for d in deltas[:-1]] == [None] * (len(deltas) - 1)
    assert deltas[-1]["finish_reason"] in ("stop", "length")


def test_it_streams_the_same_text_as_the_non_stream_answer(base_url, world):
    body = {"model": CHAT_MODEL, "messages": USER, "seed": 5, "temperature": 0}
    client = openai.OpenAI(base_url=base_url, api_key=world.alice_key)
    whole = client.chat.completions.create(**body)
    streamed = "".join(chunk.choices[0].delta.content or "" for chunk in client.chat.completions.create(
        **body, stream=True))
    assert streamed == whole.choices[0].message.content


def test_it_sends_exactly_one_usage_chunk_when_asked(base_url, world):
    response = stream_raw(base_url, world.alice_key, {"model": CHAT_MODEL, "messages": USER, "max_tokens": 6,
                                                      "stream_options": {"include_usage": True}})
    chunks, done = parse_sse(response.text)
    with_usage = [c for c in chunks if c.get("usage")]
    assert len(with_usage) == 1 and with_usage[0] is chunks[-1]
    assert with_usage[0]["choices"] == []
    usage = with_usage[0]["usage"]
    assert usage["completion_tokens"] == 6
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert all("usage" in c and c["usage"] is None for c in chunks[:-1])
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"


def test_it_streams_n_choices_each_with_its_own_role_and_finish(base_url, world):
    response = stream_raw(base_url, world.alice_key, {"model": CHAT_MODEL, "messages": USER, "n": 2,
                                                      "max_tokens": 4})
    chunks, done = parse_sse(response.text)
    for index in (0, 1):
        mine = [c["choices"][0] for c in chunks if c["choices"][0]["index"] == index]
        assert mine[0]["delta"].get("role") == "assistant"
        assert sum(1 for d in mine if "role" in d["delta"]) == 1
        assert [d["finish_reason"] for d in mine if d["finish_reason"]] == ["length"]


def test_it_streams_tool_calls_as_openai_deltas(base_url, world):
    from tests.test_chat_completions import WEATHER_TOOL

    response = stream_raw(base_url, world.alice_key, {
        "model": CHAT_MODEL, "tools": [WEATHER_TOOL], "stream_options": {"include_usage": True},
        "parallel_tool_calls": False, "messages": [{"role": "user", "content": "weather in Lima? get_weather"}]})
    chunks, done = parse_sse(response.text)
    deltas = [c["choices"][0] for c in chunks if c["choices"]]
    entries = [tc for d in deltas for tc in d["delta"].get("tool_calls", [])]
    assert entries and all("index" in tc and "function" in tc for tc in entries)
    first = entries[0]
    assert first["id"].startswith("call_") and first["type"] == "function"
    assert first["function"]["name"] == "get_weather" and first["function"]["arguments"] == ""
    for later in entries[1:]:
        assert "id" not in later and "name" not in later["function"], "never repeat id or name"
    arguments = "".join(tc["function"].get("arguments", "") for tc in entries)
    assert isinstance(json.loads(arguments)["city"], str)
    assert deltas[-1]["finish_reason"] == "tool_calls"


def test_it_gives_a_final_message_through_the_sdk_stream_helper(base_url, world):
    client = openai.OpenAI(base_url=base_url, api_key=world.alice_key)
    # No max_tokens: a length finish makes the helper raise LengthFinishReasonError by design.
    with client.chat.completions.stream(model=CHAT_MODEL, messages=USER) as stream:
        for _ in stream:
            pass
        final = stream.get_final_completion()
    assert final.choices[0].message.role == "assistant"
    assert final.choices[0].message.content


def test_it_reports_errors_before_the_first_byte_as_http_errors(base_url, world):
    for body, status in (({"model": "nope", "messages": USER}, 404), ({"model": CHAT_MODEL}, 400),
                         ({"model": CHAT_MODEL, "messages": "hi"}, 400)):
        response = stream_raw(base_url, world.alice_key, body)
        assert response.status_code == status
        assert response.headers["content-type"] == "application/json"
        assert "error" in response.json()


def test_it_reports_a_mid_stream_failure_as_an_error_event(base_url, world, simulator):
    client = openai.OpenAI(base_url=base_url, api_key=world.alice_key, max_retries=0)
    with pytest.raises(openai.APIError) as caught:
        for _ in client.chat.completions.create(model=BROKEN_MODEL, messages=USER, stream=True):
            pass
    assert "failed" in caught.value.message.lower() or "error" in caught.value.message.lower()


def test_it_cancels_generation_when_the_client_disconnects(base_url, world, simulator):
    stats_before = simulator.stats()["models"].get(CHAT_MODEL, {}).get("cancellations", 0)
    with httpx.stream("POST", base_url + "/chat/completions", timeout=30, headers={
            "Authorization": f"Bearer {world.alice_key}"},
            json={"model": CHAT_MODEL, "messages": USER, "stream": True, "max_tokens": 100000}) as response:
        # Skip the comments of a stream that waited for the model to load: leave once tokens flow.
        first = next(line for line in response.iter_lines() if line and not line.startswith(":"))
        assert first.startswith("data: ")

    def cancelled():
        model_stats = simulator.stats()["models"][CHAT_MODEL]
        return model_stats["cancellations"] > stats_before and model_stats["in_flight"] == 0

    eventually(cancelled, what="generation went on after the client left")
    again = openai.OpenAI(base_url=base_url, api_key=world.alice_key).chat.completions.create(
        model=CHAT_MODEL, messages=USER, max_tokens=2)
    assert again.choices[0].message.content
