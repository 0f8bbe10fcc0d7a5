"""Request parsing: what real clients send is accepted, bad bodies give one 400 naming the field."""

from __future__ import annotations

import json
from typing import Any

import pytest

from common.apierrors import ApiError
from inference.openai_api.schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    parse_body,
)
from tests.support.openai_errors import openai_error_problem

USER = [{"role": "user", "content": "hi"}]
PNG = "data:image/png;base64,iVBORw0KGgo="


def body(**fields: Any) -> bytes:
    return json.dumps(fields).encode()


def chat(**fields: Any) -> ChatCompletionRequest:
    fields.setdefault("model", "m")
    fields.setdefault("messages", USER)
    return parse_body(ChatCompletionRequest, body(**fields))


def bad(model_cls: type, raw: bytes) -> ApiError:
    with pytest.raises(ApiError) as info:
        parse_body(model_cls, raw)
    error = info.value
    assert error.status == 400
    assert error.type == "invalid_request_error"
    assert openai_error_problem(error.as_dict()) is None
    return error


def test_it_accepts_a_minimal_chat_request() -> None:
    req = chat()
    assert req.model == "m"
    assert req.messages[0].text == "hi"
    assert req.choice_count == 1
    assert not req.include_usage


def test_it_ignores_unknown_fields() -> None:
    req = chat(
        prediction={"type": "content", "content": "x"},
        store=True,
        metadata={"a": "b"},
        service_tier="auto",
        reasoning_effort="low",
        prompt_cache_key="k",
        safety_identifier="s",
        extra_field=1,
        stream_options={"include_usage": True, "include_obfuscation": False},
    )
    assert req.model == "m"
    assert not hasattr(req, "extra_field")


def test_it_treats_explicit_nulls_as_absent() -> None:
    req = chat(
        seed=None,
        logprobs=None,
        stop=None,
        max_tokens=None,
        n=None,
        temperature=None,
        user=None,
        top_p=None,
        tools=None,
        tool_choice=None,
        response_format=None,
        stream=None,
    )
    assert req.seed is None and req.temperature is None and req.max_output_tokens is None
    assert req.choice_count == 1
    assert req.stop_list == []


def test_it_accepts_langchain_legacy_completion_defaults() -> None:
    raw = body(
        model="m",
        prompt=["a", "b"],
        seed=None,
        logprobs=None,
        logit_bias={},
        n=1,
        temperature=0.7,
        max_tokens=256,
        top_p=1,
        frequency_penalty=0,
        presence_penalty=0,
    )
    req = parse_body(CompletionRequest, raw)
    assert req.prompt == ["a", "b"]
    assert req.logprobs is None


def test_it_accepts_parts_for_every_role_and_developer() -> None:
    parts = [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]
    req = chat(
        messages=[
            {"role": "developer", "content": parts},
            {"role": "system", "content": parts},
            {
                "role": "user",
                "content": [*parts, {"type": "image_url", "image_url": {"url": PNG, "detail": "low"}}],
            },
            {
                "role": "assistant",
                "content": [{"type": "text", "text": "a"}, {"type": "refusal", "refusal": "no"}],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": parts},
            {"role": "assistant", "content": " "},
        ]
    )
    assert [m.role for m in req.messages][:2] == ["developer", "system"]
    assert req.messages[0].text == "a\nb"
    assert req.messages[2].images == ["iVBORw0KGgo="]
    assert req.messages[3].text == "a\nno"
    assert req.messages[4].text == ""
    assert req.messages[5].text == "a\nb"


def test_it_accepts_a_bare_string_image_url() -> None:
    req = chat(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": PNG}]}])
    assert req.messages[0].images == ["iVBORw0KGgo="]


def test_it_accepts_stop_as_string_or_long_list() -> None:
    assert chat(stop="###").stop_list == ["###"]
    stops = ["</s>", "\n\n", "```", "<fim_prefix>", "<fim_suffix>", "<fim_middle>", "<|endoftext|>"]
    assert chat(stop=stops).stop_list == stops
    assert chat(stop=["", "x"]).stop_list == ["x"]


def test_it_prefers_max_completion_tokens() -> None:
    assert chat(max_tokens=5).max_output_tokens == 5
    assert chat(max_completion_tokens=7).max_output_tokens == 7
    assert chat(max_tokens=5, max_completion_tokens=7).max_output_tokens == 7


def test_it_reports_include_usage_only_when_streaming() -> None:
    assert chat(stream=True, stream_options={"include_usage": True}).include_usage
    assert not chat(stream=False, stream_options={"include_usage": True}).include_usage
    assert not chat(stream=True).include_usage


def test_it_accepts_all_prompt_and_input_shapes() -> None:
    for prompt in ("x", ["x", "y"], [1, 2], [[1, 2], [3]]):
        assert parse_body(CompletionRequest, body(model="m", prompt=prompt)).prompt == prompt
    for value in ("", "x", ["x", ""], [1, 2], [[1, 2], [3]]):
        assert parse_body(EmbeddingRequest, body(model="m", input=value)).input == value


@pytest.mark.parametrize(
    ("raw", "param"),
    [
        (b"", None),
        (b"{not json", None),
        (b"[1, 2]", None),
        (b'"text"', None),
        (b"\xff\xfe", None),
        (b"[" * 100_000, None),
    ],
)
def test_it_rejects_bodies_that_are_not_json_objects(raw: bytes, param: str | None) -> None:
    assert bad(ChatCompletionRequest, raw).param == param


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"model": "m"}, "messages"),
        ({"messages": USER}, "model"),
        ({"model": "", "messages": USER}, "model"),
        ({"model": 5, "messages": USER}, "model"),
        ({"model": "m", "messages": []}, "messages"),
        ({"model": "m", "messages": "hi"}, "messages"),
        ({"model": "m", "messages": [{"content": "x"}]}, "messages.0.role"),
        ({"model": "m", "messages": [{"role": "robot", "content": "x"}]}, "messages.0.role"),
        ({"model": "m", "messages": [{"role": "user"}]}, "messages.0.content"),
        ({"model": "m", "messages": [{"role": "user", "content": 5}]}, "messages.0.content"),
        (
            {"model": "m", "messages": [*USER, {"role": "user", "content": [{"type": "text"}]}]},
            "messages.1.content.0.text",
        ),
        (
            {
                "model": "m",
                "messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}],
            },
            "messages.0.content.0.type",
        ),
        (
            {"model": "m", "messages": [{"role": "user", "content": [{"type": "video"}]}]},
            "messages.0.content.0.type",
        ),
        (
            {
                "model": "m",
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
                        ],
                    }
                ],
            },
            "messages.0.content.0.image_url.url",
        ),
        ({"model": "m", "messages": [{"role": "tool", "content": "42"}]}, "messages.0.tool_call_id"),
        ({"model": "m", "messages": USER, "temperature": 2.5}, "temperature"),
        ({"model": "m", "messages": USER, "temperature": "hot"}, "temperature"),
        ({"model": "m", "messages": USER, "top_p": 1.5}, "top_p"),
        ({"model": "m", "messages": USER, "frequency_penalty": -3}, "frequency_penalty"),
        ({"model": "m", "messages": USER, "presence_penalty": 3}, "presence_penalty"),
        ({"model": "m", "messages": USER, "n": 0}, "n"),
        ({"model": "m", "messages": USER, "n": 129}, "n"),
        ({"model": "m", "messages": USER, "max_tokens": 0}, "max_tokens"),
        ({"model": "m", "messages": USER, "stop": 5}, "stop"),
        ({"model": "m", "messages": USER, "stop": ["a", 5]}, "stop.1"),
        ({"model": "m", "messages": USER, "logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ({"model": "m", "messages": USER, "top_logprobs": 2}, "top_logprobs"),
        ({"model": "m", "messages": USER, "response_format": {"type": "xml"}}, "response_format.type"),
        (
            {"model": "m", "messages": USER, "response_format": {"type": "json_schema"}},
            "response_format.json_schema",
        ),
        (
            {"model": "m", "messages": USER, "tools": [{"type": "function", "function": {}}]},
            "tools.0.function.name",
        ),
        ({"model": "m", "messages": USER, "tool_choice": "sometimes"}, "tool_choice"),
        ({"model": "m", "messages": USER, "tool_choice": "required"}, "tool_choice"),
        (
            {
                "model": "m",
                "messages": USER,
                "tool_choice": {"type": "function", "function": {"name": "nope"}},
                "tools": [{"type": "function", "function": {"name": "f"}}],
            },
            "tool_choice",
        ),
    ],
)
def test_it_names_the_offending_chat_field(fields: dict[str, Any], param: str) -> None:
    error = bad(ChatCompletionRequest, json.dumps(fields).encode())
    assert error.param == param
    assert param in error.message or "parameter" in error.message or "supported" in error.message


def test_it_rejects_nan_temperature() -> None:
    assert (
        bad(
            ChatCompletionRequest,
            b'{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":NaN}',
        ).param
        == "temperature"
    )


def test_it_words_missing_fields_like_openai() -> None:
    assert bad(ChatCompletionRequest, body(model="m")).message == "Missing required parameter: 'messages'."


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"model": "m"}, "prompt"),
        ({"model": "m", "prompt": None}, "prompt"),
        ({"model": "m", "prompt": []}, "prompt"),
        ({"model": "m", "prompt": [1, -2]}, "prompt.1"),
        ({"model": "m", "prompt": [[1], [2, "x"]]}, "prompt.1.1"),
        ({"model": "m", "prompt": "x", "logprobs": 6}, "logprobs"),
        ({"model": "m", "prompt": "x", "best_of": 1, "n": 2}, "best_of"),
        ({"model": "m", "prompt": "x", "best_of": 2, "n": 2, "stream": True}, "best_of"),
        ({"model": "m", "prompt": "x", "best_of": 21}, "best_of"),
        ({"model": "m", "prompt": "x", "echo": "loud"}, "echo"),
    ],
)
def test_it_names_the_offending_completion_field(fields: dict[str, Any], param: str) -> None:
    assert bad(CompletionRequest, json.dumps(fields).encode()).param == param


def test_it_accepts_best_of_equal_to_n() -> None:
    req = parse_body(CompletionRequest, body(model="m", prompt="x", best_of=2, n=2))
    assert req.choice_count == 2


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"model": "m"}, "input"),
        ({"model": "m", "input": None}, "input"),
        ({"model": "m", "input": []}, "input"),
        ({"model": "m", "input": ["x"] * 2049}, "input"),
        ({"model": "m", "input": [{"text": "x"}]}, "input.0"),
        ({"model": "m", "input": "x", "dimensions": 0}, "dimensions"),
        ({"model": "m", "input": "x", "encoding_format": "int8"}, "encoding_format"),
    ],
)
def test_it_names_the_offending_embedding_field(fields: dict[str, Any], param: str) -> None:
    assert bad(EmbeddingRequest, json.dumps(fields).encode()).param == param


def test_it_accepts_2048_embedding_inputs() -> None:
    assert len(parse_body(EmbeddingRequest, body(model="m", input=["x"] * 2048)).input) == 2048
