"""POST /v1/chat/completions, non-streaming, with the real OpenAI SDK against a live server
(what the OpenAI SDKs check)."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from pydantic import BaseModel

from tests.conftest import CHAT_MODEL, EMBED_MODEL

USER = [{"role": "user", "content": "Tell me about the sea."}]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
            "required": ["city"],
        },
    },
}
TIME_TOOL = {"type": "function", "function": {"name": "get_time", "parameters": {
    "type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]}}}


@pytest.fixture
def client(base_url, world) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url, api_key=world.alice_key, max_retries=0)


def test_it_answers_a_minimal_request_in_the_openai_shape(base_url, world):
    response = httpx.post(base_url + "/chat/completions", headers={"Authorization": f"Bearer {world.alice_key}"},
                          json={"model": CHAT_MODEL, "messages": USER}, timeout=30)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-request-id"].startswith("req_")
    body = response.json()
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    assert isinstance(body["created"], int) and body["model"] == CHAT_MODEL
    choice = body["choices"][0]
    assert choice["index"] == 0 and choice["logprobs"] is None and choice["finish_reason"] in ("stop", "length")
    assert choice["message"]["role"] == "assistant" and choice["message"]["refusal"] is None
    assert isinstance(choice["message"]["content"], str) and choice["message"]["content"]
    usage = body["usage"]
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_it_gives_each_completion_a_unique_id(client):
    ids = {client.chat.completions.create(model=CHAT_MODEL, messages=USER, max_tokens=2).id for _ in range(3)}
    assert len(ids) == 3


def test_it_accepts_content_parts_and_the_developer_role(client):
    parts = lambda text: [{"type": "text", "text": text}]  # noqa: E731
    reply = client.chat.completions.create(model=CHAT_MODEL, messages=[
        {"role": "developer", "content": parts("Be brief.")},
        {"role": "system", "content": parts("Be kind.")},
        {"role": "user", "content": parts("Hello")},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": parts("sunny")},
        {"role": "assistant", "content": " "},
        {"role": "user", "content": "And now?"},
    ])
    assert reply.choices[0].message.content


def test_it_caps_output_with_max_tokens_and_max_completion_tokens(client):
    for cap in ({"max_tokens": 3}, {"max_completion_tokens": 3}):
        reply = client.chat.completions.create(model=CHAT_MODEL, messages=USER, **cap)
        assert reply.usage.completion_tokens == 3
        assert reply.choices[0].finish_reason == "length"


def test_it_is_deterministic_for_a_seed(client):
    first = client.chat.completions.create(model=CHAT_MODEL, messages=USER, seed=7, temperature=0.5)
    again = client.chat.completions.create(model=CHAT_MODEL, messages=USER, seed=7, temperature=0.5)
    assert first.choices[0].message.content == again.choices[0].message.content


@pytest.mark.parametrize("as_list", [False, True])
def test_it_stops_before_a_stop_sequence(client, as_list):
    full = client.chat.completions.create(model=CHAT_MODEL, messages=USER, seed=3, temperature=0)
    text = full.choices[0].message.content
    words = text.split()
    assert len(words) > 4, text
    stop_word = words[len(words) // 2]
    expected = text[: text.index(stop_word)]
    stops = [stop_word, "zzz-1", "zzz-2", "zzz-3", "zzz-4", "zzz-5", "zzz-6"] if as_list else stop_word
    cut = client.chat.completions.create(model=CHAT_MODEL, messages=USER, seed=3, temperature=0, stop=stops)
    assert cut.choices[0].message.content == expected
    assert stop_word not in cut.choices[0].message.content
    assert cut.choices[0].finish_reason == "stop"


def test_it_returns_n_choices(client):
    reply = client.chat.completions.create(model=CHAT_MODEL, messages=USER, n=3, seed=11, max_tokens=8,
                                           temperature=0.9, top_p=0.9, frequency_penalty=0.5,
                                           presence_penalty=-0.5, logit_bias={"50256": -100})
    assert [c.index for c in reply.choices] == [0, 1, 2]
    assert all(c.message.content for c in reply.choices)
    assert reply.usage.completion_tokens == 3 * 8


@pytest.mark.parametrize("tool_choice,expected", [
    ("required", "get_time"),
    ("auto", "get_time"),
    # Ollama has no tool_choice: Gatehouse must offer the named function only (inference/engines/ollama_translate.py),
    # so the model cannot call the one the user asked for.
    ({"type": "function", "function": {"name": "get_weather"}}, "get_weather"),
])
def test_it_returns_tool_calls(client, tool_choice, expected):
    # The simulator calls the tool the user names, so the function called shows which tools it was offered.
    reply = client.chat.completions.create(
        model=CHAT_MODEL, tools=[WEATHER_TOOL, TIME_TOOL], tool_choice=tool_choice,
        messages=[{"role": "user", "content": "What time is it in Paris? use get_time"}],
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls
    assert calls and len({c.id for c in calls}) == len(calls)
    for call in calls:
        assert call.id.startswith("call_") and call.type == "function"
        assert isinstance(json.loads(call.function.arguments), dict)
    assert [c.function.name for c in calls] == [expected]
    if expected == "get_weather":
        assert isinstance(json.loads(calls[0].function.arguments)["city"], str)


def test_it_sends_no_tools_when_tool_choice_is_none(client):
    reply = client.chat.completions.create(
        model=CHAT_MODEL, tools=[WEATHER_TOOL], tool_choice="none",
        messages=[{"role": "user", "content": "What is the weather in Paris? use get_weather"}],
    )
    assert reply.choices[0].message.tool_calls is None
    assert reply.choices[0].finish_reason in ("stop", "length")


def test_it_makes_at_most_one_call_without_parallel_tool_calls(client):
    reply = client.chat.completions.create(
        model=CHAT_MODEL, tools=[WEATHER_TOOL, TIME_TOOL], parallel_tool_calls=False,
        messages=[{"role": "user", "content": "use get_weather and get_time"}],
    )
    assert len(reply.choices[0].message.tool_calls) <= 1


def test_it_completes_a_tool_result_round_trip(client):
    messages = [{"role": "user", "content": "Weather in Rome? use get_weather"}]
    first = client.chat.completions.create(model=CHAT_MODEL, messages=messages, tools=[WEATHER_TOOL])
    call = first.choices[0].message.tool_calls[0]
    messages += [first.choices[0].message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": "22 degrees"}]
    second = client.chat.completions.create(model=CHAT_MODEL, messages=messages, tools=[WEATHER_TOOL])
    assert second.choices[0].finish_reason in ("stop", "length")
    assert second.choices[0].message.content


def test_it_returns_json_for_json_object(client):
    reply = client.chat.completions.create(model=CHAT_MODEL, messages=USER, response_format={"type": "json_object"})
    assert isinstance(json.loads(reply.choices[0].message.content), dict)


class City(BaseModel):
    name: str
    population: int
    coastal: bool
    districts: list[str]


def test_it_returns_json_valid_for_a_schema(client):
    schema = City.model_json_schema()
    reply = client.chat.completions.create(model=CHAT_MODEL, messages=USER, response_format={
        "type": "json_schema", "json_schema": {"name": "city", "schema": schema, "strict": True}})
    City.model_validate_json(reply.choices[0].message.content)


def test_it_works_with_the_sdk_parse_helper(client):
    parsed = client.chat.completions.parse(model=CHAT_MODEL, messages=USER, response_format=City)
    assert isinstance(parsed.choices[0].message.parsed, City)


def test_it_returns_logprobs(client):
    reply = client.chat.completions.create(model=CHAT_MODEL, messages=USER, logprobs=True, top_logprobs=2,
                                           max_tokens=5)
    content = reply.choices[0].logprobs.content
    assert len(content) == 5
    for token in content:
        assert isinstance(token.token, str) and token.logprob <= 0
        assert token.bytes is None or token.bytes == list(token.token.encode())
        assert len(token.top_logprobs) == 2


def test_it_ignores_unknown_fields_and_treats_null_as_absent(base_url, world):
    body = {"model": CHAT_MODEL, "messages": USER, "stream_options": {"include_usage": True}, "prediction": {},
            "store": False, "metadata": {"a": "b"}, "service_tier": "auto", "reasoning_effort": None,
            "prompt_cache_key": "x", "safety_identifier": "y", "extra_field": 1, "seed": None,
            "logprobs": None, "stop": None, "max_tokens": None, "n": None, "temperature": None, "user": None}
    response = httpx.post(base_url + "/chat/completions", json=body, timeout=30,
                          headers={"Authorization": f"Bearer {world.alice_key}", "X-Stainless-Lang": "python",
                                   "OpenAI-Organization": "org", "OpenAI-Project": "p", "api-key": "k"})
    assert response.status_code == 200, response.text
    assert len(response.json()["choices"]) == 1


def test_it_refuses_chat_on_an_embedding_model(client):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=EMBED_MODEL, messages=USER)
    assert caught.value.param == "model"


def test_it_answers_404_for_an_unknown_model(client):
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="nope:latest", messages=USER)
    assert caught.value.code == "model_not_found"


@pytest.mark.asyncio
async def test_it_works_with_the_async_sdk(base_url, world):
    client = openai.AsyncOpenAI(base_url=base_url, api_key=world.alice_key)
    reply = await client.chat.completions.create(model=CHAT_MODEL, messages=USER, max_tokens=4)
    assert reply.choices[0].message.content
    await client.close()
