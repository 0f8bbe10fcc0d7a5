"""Anthropic's Messages API (`/v1/messages`, `/v1/messages/count_tokens`) with the real `anthropic` SDK against
the live server and the Ollama simulator: what Claude Code and the SDK's users see."""

from __future__ import annotations

import base64
import functools
import json

import anthropic
import httpx
import pytest

from inference.anthropic_api import errors
from inference.scheduler.scheduling_errors import LimitExceeded, QueueFull
from tests.conftest import BROKEN_MODEL, CHAT_MODEL, EMBED_MODEL
from tests.support.llama import DEFAULT_ALIAS, LlamaServer
from tests.support.processes import eventually
from tests.support.stack import Stack, sim_config

HELLO = [{"role": "user", "content": "Tell me about the sea."}]
WEATHER = {"name": "get_weather", "description": "Weather for a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
TIME = {"name": "get_time", "input_schema": {"type": "object", "properties": {"zone": {"type": "string"}}}}
# A 1x1 PNG.
PIXEL = base64.b64encode(bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000" "1f15c4890000000d49444154789c6360000002000001"
    "e221bc330000000049454e44ae426082")).decode()


@pytest.fixture
def client(gatehouse, world) -> anthropic.Anthropic:
    # The SDK appends /v1/messages itself: the base URL is the server's root.
    return anthropic.Anthropic(base_url=gatehouse.url, api_key=world.alice_key, max_retries=0)


def test_it_answers_a_message_in_anthropic_shape(client):
    reply = client.messages.create(model=CHAT_MODEL, max_tokens=200, messages=HELLO)
    assert reply.type == "message" and reply.role == "assistant" and reply.model == CHAT_MODEL
    assert reply.id.startswith("msg_")
    assert [block.type for block in reply.content] == ["text"] and reply.content[0].text
    assert reply.stop_reason in ("end_turn", "max_tokens") and reply.stop_sequence is None
    assert reply.usage.input_tokens > 0 and reply.usage.output_tokens > 0


def test_a_system_prompt_reaches_the_model_as_a_string_or_as_blocks(client):
    bare = client.messages.create(model=CHAT_MODEL, max_tokens=5, messages=HELLO).usage.input_tokens
    prompt = "You are a sailor who answers in rhymes about ships and the wind."
    as_text = client.messages.create(model=CHAT_MODEL, max_tokens=5, messages=HELLO, system=prompt)
    as_blocks = client.messages.create(model=CHAT_MODEL, max_tokens=5, messages=HELLO,
                                       system=[{"type": "text", "text": prompt}])
    assert as_text.usage.input_tokens > bare
    assert as_blocks.usage.input_tokens == as_text.usage.input_tokens


def test_max_tokens_stops_the_answer_with_stop_reason_max_tokens(client):
    # The sampling settings of older API versions are still accepted.
    reply = client.messages.create(model=CHAT_MODEL, max_tokens=3, messages=HELLO, stop_sequences=["\n\n\n"],
                                   metadata={"user_id": "u-1"}, extra_body={"temperature": 0.5, "top_p": 0.9,
                                                                           "top_k": 40})
    assert reply.stop_reason == "max_tokens" and reply.usage.output_tokens == 3


def test_a_tool_round_trip(client):
    ask = [{"role": "user", "content": "What is the weather in Rome? use get_weather"}]
    first = client.messages.create(model=CHAT_MODEL, max_tokens=200, messages=ask, tools=[WEATHER, TIME],
                                   tool_choice={"type": "tool", "name": "get_weather"})
    assert first.stop_reason == "tool_use"
    (call,) = [block for block in first.content if block.type == "tool_use"]
    assert call.id.startswith("toolu_") and call.name == "get_weather" and isinstance(call.input["city"], str)
    history = [*ask, {"role": "assistant", "content": [block.model_dump() for block in first.content]},
               {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "22 degrees"},
                                            {"type": "text", "text": "Thanks!"}]}]
    # The tool's answer goes back in a tool message; the model then answers in words.
    second = client.messages.create(model=CHAT_MODEL, max_tokens=200, tools=[WEATHER], messages=history[:2] + [
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "is_error": True,
                                      "content": [{"type": "text", "text": "timeout"}]}]}])
    assert second.stop_reason in ("end_turn", "max_tokens") and second.content[0].type == "text"
    assert client.messages.create(model=CHAT_MODEL, max_tokens=20, messages=history).content


def test_tool_choice_any_forces_a_call_and_none_forbids_one(client):
    ask = [{"role": "user", "content": "What time is it? use get_time"}]
    forced = client.messages.create(model=CHAT_MODEL, max_tokens=100, messages=ask, tools=[TIME],
                                    tool_choice={"type": "any", "disable_parallel_tool_use": True})
    assert forced.stop_reason == "tool_use"
    refused = client.messages.create(model=CHAT_MODEL, max_tokens=20, messages=ask, tools=[TIME],
                                     tool_choice={"type": "none"})
    assert refused.stop_reason != "tool_use" and all(block.type == "text" for block in refused.content)


def test_streaming_builds_the_same_message_the_sdk_assembles(client):
    with client.messages.stream(model=CHAT_MODEL, max_tokens=60, messages=HELLO) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text and final.content[0].type == "text" and final.content[0].text == text
    assert final.id.startswith("msg_") and final.stop_reason in ("end_turn", "max_tokens")
    assert final.usage.input_tokens > 0 and final.usage.output_tokens > 0


def test_a_streamed_tool_call_arrives_as_a_whole_object(client):
    with client.messages.stream(model=CHAT_MODEL, max_tokens=200, tools=[WEATHER],
                                messages=[{"role": "user", "content": "Weather in Oslo? use get_weather"}]) as stream:
        final = stream.get_final_message()
    (call,) = [block for block in final.content if block.type == "tool_use"]
    assert final.stop_reason == "tool_use" and isinstance(call.input["city"], str)


def test_the_raw_stream_names_every_event(gatehouse, world):
    body = {"model": CHAT_MODEL, "max_tokens": 3, "stream": True, "messages": HELLO}
    with httpx.stream("POST", gatehouse.url + "/v1/messages", json=body, timeout=30,
                      headers={"x-api-key": world.alice_key, "anthropic-version": "2023-06-01"}) as response:
        assert response.status_code == 200 and response.headers["content-type"] == "text/event-stream"
        names = [line[7:] for line in response.iter_lines() if line.startswith("event: ")]
    assert names[:3] == ["message_start", "ping", "content_block_start"]
    assert names[-4:] == ["content_block_delta", "content_block_stop", "message_delta", "message_stop"]


def test_an_error_in_the_middle_of_a_stream_is_an_error_event(client):
    with pytest.raises(anthropic.APIStatusError) as caught:
        with client.messages.stream(model=BROKEN_MODEL, max_tokens=100, messages=HELLO) as stream:
            for _ in stream:
                pass
    assert caught.value.body["type"] == "error" and caught.value.body["error"]["type"] == "api_error"


def test_count_tokens_counts_the_prompt_and_the_tools(client):
    bare = client.messages.count_tokens(model=CHAT_MODEL, messages=HELLO).input_tokens
    with_tools = client.messages.count_tokens(model=CHAT_MODEL, messages=HELLO, tools=[WEATHER, TIME],
                                              system="Answer briefly.").input_tokens
    assert 0 < bare < with_tools


def test_an_image_for_a_model_without_vision_is_a_400(client):
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PIXEL}}
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(model=CHAT_MODEL, max_tokens=10, messages=[
            {"role": "user", "content": [image, {"type": "text", "text": "What is this?"}]}])
    assert caught.value.body["error"] == {"type": "invalid_request_error",
                                          "message": f"The model `{CHAT_MODEL}` does not support image input."}


@pytest.mark.parametrize("body,words", [
    ({"model": CHAT_MODEL, "messages": HELLO}, "'max_tokens'"),
    ({"model": CHAT_MODEL, "max_tokens": 10, "messages": [{"role": "user", "content": [{"type": "document"}]}]},
     "'document'"),
    ({"model": CHAT_MODEL, "max_tokens": 10, "messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "url", "url": "https://example.org/a.png"}}]}]}, "base64"),
    ({"model": CHAT_MODEL, "max_tokens": 10, "messages": HELLO, "tools": [WEATHER],
      "tool_choice": {"type": "tool", "name": "nope"}}, "'nope'"),
    ({"model": EMBED_MODEL, "max_tokens": 10, "messages": HELLO}, "embedding model"),
])
def test_a_bad_body_is_a_400_in_anthropic_shape(gatehouse, world, body, words):
    response = httpx.post(gatehouse.url + "/v1/messages", json=body, headers={"x-api-key": world.alice_key},
                          timeout=30)
    assert response.status_code == 400
    error = response.json()
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    assert words in error["error"]["message"] and error["request_id"].startswith("req_")


def test_an_unknown_model_is_a_404_not_found_error(client):
    create = functools.partial(client.messages.create, max_tokens=10)
    for call in (create, client.messages.count_tokens):
        with pytest.raises(anthropic.NotFoundError) as caught:
            call(model="claude-sonnet-4-5", messages=HELLO)
        assert caught.value.body["error"]["type"] == "not_found_error"


def test_a_bad_key_is_a_401_authentication_error(gatehouse):
    bad = anthropic.Anthropic(base_url=gatehouse.url, api_key="gh-not-a-key", max_retries=0)
    for call in (functools.partial(bad.messages.create, max_tokens=10), bad.messages.count_tokens):
        with pytest.raises(anthropic.AuthenticationError) as caught:
            call(model=CHAT_MODEL, messages=HELLO)
        # With a body, the web edge refuses the key before reading it (portal/web.py): in Anthropic's shape too.
        assert caught.value.body["type"] == "error" and caught.value.body["request_id"].startswith("req_")
        assert caught.value.body["error"]["type"] == "authentication_error"


def test_the_key_is_accepted_as_x_api_key_and_as_a_bearer_token(gatehouse, world):
    by_header = httpx.post(gatehouse.url + "/v1/messages?beta=true", timeout=30, json={
        "model": CHAT_MODEL, "max_tokens": 5, "messages": HELLO},
        headers={"x-api-key": world.alice_key, "anthropic-version": "2023-06-01", "anthropic-beta": "x"})
    assert by_header.status_code == 200 and by_header.json()["type"] == "message"
    by_token = anthropic.Anthropic(base_url=gatehouse.url, auth_token=world.alice_key, max_retries=0)
    assert by_token.messages.create(model=CHAT_MODEL, max_tokens=5, messages=HELLO).content


def test_an_unknown_messages_route_is_a_404_in_anthropic_shape(gatehouse, world):
    response = httpx.post(gatehouse.url + "/v1/messages/batches", json={}, timeout=30,
                          headers={"x-api-key": world.alice_key})
    assert response.status_code == 404 and response.json()["error"]["type"] == "not_found_error"


def test_an_oversized_body_is_a_413_request_too_large(gatehouse, world):
    # Refused by the web edge from its Content-Length, before the body is read.
    response = httpx.post(gatehouse.url + "/v1/messages", content=b"x" * (1024 * 1024 + 1), timeout=30,
                          headers={"x-api-key": world.alice_key, "content-type": "application/json"})
    assert response.status_code == 413
    assert response.json()["error"]["type"] == "request_too_large"


@pytest.mark.parametrize("refusal,status,kind,headers", [
    # A full queue is Anthropic's "overloaded", which Claude Code waits out; the reservation is kept.
    (QueueFull("m", waiting=8, retry_after_ms=1500), 529, "overloaded_error",
     {"Retry-After": "2", "retry-after-ms": "1500"}),
    (LimitExceeded("key", "requests_per_minute", 10, retry_after_ms=20_000), 429, "rate_limit_error",
     {"Retry-After": "20"}),
])
def test_scheduler_refusals_keep_their_retry_headers(refusal, status, kind, headers):
    response = errors.error_response(errors.as_api_error(refusal))
    assert response.status_code == status and json.loads(response.content)["error"]["type"] == kind
    assert {name: response[name] for name in headers} == headers


THINKER = "thinker:7b"  # thinks unless told not to, and sees images


@pytest.fixture(scope="module")
def side_world(django_db_setup, django_db_blocker, gatehouse, world):
    """A world of its own: a simulator serving THINKER, and a real llama-server (with a tokenizer)."""
    config = sim_config([THINKER], tokens_per_second=0, reply_tokens=12)
    config["models"][0]["capabilities"] = ["completion", "tools", "thinking", "vision"]
    with LlamaServer(ctx_size=2048, parallel=1) as llama:
        with django_db_blocker.unblock():
            # Naming the model makes the stack delete its row when it stops.
            stack = Stack({"one": config}, openai_nodes={"llama": llama.url}, models={THINKER: {"concurrency": 4}})
        yield anthropic.Anthropic(base_url=stack.webs[0].url, api_key=stack.keys["ann"], max_retries=0)
        with django_db_blocker.unblock():
            stack.stop()
    # Its models were rows in the session's database: the shared server must have forgotten them before
    # the next module lists models (its catalogue snapshot is a couple of seconds old at most).
    listed = lambda: httpx.get(gatehouse.url + "/v1/models", timeout=10,  # noqa: E731
                               headers={"Authorization": f"Bearer {world.alice_key}"}).json()["data"]
    eventually(lambda: not {THINKER, DEFAULT_ALIAS} & {model["id"] for model in listed()},
               what="the side world's models gone from the shared server")


@pytest.fixture
def thinker(side_world) -> anthropic.Anthropic:
    return side_world


def test_thinking_comes_back_as_a_signed_thinking_block_before_the_text(thinker):
    reply = thinker.messages.create(model=THINKER, max_tokens=200, messages=HELLO,
                                    thinking={"type": "enabled", "budget_tokens": 2048})
    assert [block.type for block in reply.content] == ["thinking", "text"]
    assert reply.content[0].thinking and isinstance(reply.content[0].signature, str)
    off = thinker.messages.create(model=THINKER, max_tokens=200, messages=HELLO, thinking={"type": "disabled"})
    assert [block.type for block in off.content] == ["text"]


def test_streamed_thinking_is_assembled_by_the_sdk(thinker):
    with thinker.messages.stream(model=THINKER, max_tokens=200, messages=HELLO,
                                 thinking={"type": "enabled", "budget_tokens": 20000}) as stream:
        thoughts = "".join(event.thinking for event in stream if event.type == "thinking")
        final = stream.get_final_message()
    assert [block.type for block in final.content] == ["thinking", "text"]
    assert final.content[0].thinking == thoughts and final.content[0].signature
    # A prior turn's thinking goes back with the history, as Claude Code sends it, and is accepted.
    again = thinker.messages.create(model=THINKER, max_tokens=50, thinking={"type": "disabled"}, messages=[
        *HELLO, {"role": "assistant", "content": [block.model_dump() for block in final.content]},
        {"role": "user", "content": "And the mountains?"}])
    assert again.content[-1].type == "text"


def test_an_image_reaches_a_vision_model(thinker):
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PIXEL}}
    reply = thinker.messages.create(model=THINKER, max_tokens=50, thinking={"type": "disabled"}, messages=[
        {"role": "user", "content": [image, {"type": "text", "text": "What is this?"}]}])
    assert reply.content[0].type == "text" and reply.content[0].text


def test_count_tokens_on_a_llama_server_is_the_models_own_count(side_world):
    body = {"system": "Be brief.", "tools": [WEATHER],
            "messages": [{"role": "user", "content": "Hello there, how is the weather in Oslo today?"}]}
    # The model answers once, so it is ready on its server; its own count of the prompt comes with it.
    generated = side_world.messages.create(model=DEFAULT_ALIAS, max_tokens=1, **body).usage.input_tokens
    # (The estimate, characters / 4, would be 42 here.)
    assert side_world.messages.count_tokens(model=DEFAULT_ALIAS, **body).input_tokens == generated


def test_the_sdk_lists_the_models_the_key_may_use(gatehouse, world):
    bob = anthropic.Anthropic(base_url=gatehouse.url, api_key=world.bob_key, max_retries=0)
    assert [model.id for model in bob.models.list()] == [CHAT_MODEL]
    model = bob.models.retrieve(CHAT_MODEL)
    assert model.type == "model" and model.display_name == CHAT_MODEL and model.created_at.year >= 2000
    # Without the header, the same route answers OpenAI's clients as before.
    plain = httpx.get(gatehouse.url + "/v1/models", headers={"Authorization": f"Bearer {world.bob_key}"}).json()
    assert plain["object"] == "list" and plain["data"][0]["object"] == "model"
