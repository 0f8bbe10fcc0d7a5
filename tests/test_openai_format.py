"""Ollama -> canonical parts -> OpenAI responses, stream chunks and errors, checked as clients see them.

Where practical the bytes we produce are served to the real `openai` SDK (and LangChain) through a
mock transport, so the SDK's own SSE decoder, models and stream accumulators judge them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

import httpx2
import openai
import pytest
from ollama import ChatResponse, GenerateResponse, Message
from ollama._types import Logprob, TokenLogprob

from common.apierrors import ApiError
from inference.engines.node_errors import from_node
from inference.engines.ollama import part_from_native
from inference.engines.parts import Part
from inference.openai_api.openai_format import (
    SSE_DONE,
    SSE_KEEPALIVE,
    ChatChunker,
    CompletionChunker,
    chat_completion,
    new_chat_id,
    new_completion_id,
    new_tool_call_id,
    sse_error,
    sse_event,
    text_completion,
)
from tests.support.openai_errors import openai_error_problem

CREATED = 1_700_000_000


def part(
    content: str = "",
    *,
    done: bool = False,
    reason: str | None = None,
    calls: Iterable[tuple[str, dict]] = (),
    thinking: str | None = None,
    logprobs: list[Logprob] | None = None,
    prompt: int | None = None,
    completion: int | None = None,
) -> Part:
    tool_calls = [
        Message.ToolCall(function=Message.ToolCall.Function(name=n, arguments=a)) for n, a in calls
    ] or None
    return part_from_native(ChatResponse(
        model="llama3.2:3b",
        message=Message(role="assistant", content=content, thinking=thinking, tool_calls=tool_calls),
        done=done,
        done_reason=reason if done else None,
        logprobs=logprobs,
        prompt_eval_count=prompt if done else None,
        eval_count=completion if done else None,
    ))


def gen(
    response: str = "",
    *,
    done: bool = False,
    reason: str = "stop",
    logprobs: list[Logprob] | None = None,
    prompt: int = 0,
    completion: int = 0,
) -> Part:
    if not done:
        return part_from_native(GenerateResponse(model="m", response=response, done=False, logprobs=logprobs))
    return part_from_native(GenerateResponse(
        model="m",
        response=response,
        done=True,
        done_reason=reason,
        logprobs=logprobs,
        prompt_eval_count=prompt,
        eval_count=completion,
    ))


def lp(token: str, logprob: float, *alternatives: tuple[str, float]) -> Logprob:
    return Logprob(
        token=token, logprob=logprob, top_logprobs=[TokenLogprob(token=t, logprob=v) for t, v in alternatives]
    )


def sdk(
    body: bytes,
    content_type: str = "text/event-stream",
    status: int = 200,
    calls: list | None = None,
    headers: dict[str, str] | None = None,
) -> openai.OpenAI:
    """An OpenAI client whose every request is answered with `body`."""

    def handler(request: httpx2.Request) -> httpx2.Response:
        if calls is not None:
            calls.append(request)
        return httpx2.Response(
            status, headers={"content-type": content_type, **(headers or {})}, content=body
        )

    return openai.OpenAI(
        api_key="x",
        base_url="http://gatehouse.test/v1",
        max_retries=2,
        http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
    )


def stream_bytes(chunks: list[dict]) -> bytes:
    return b"".join(sse_event(c) for c in chunks) + SSE_DONE


def run_chat(chunker: ChatChunker, parts: list[tuple[int, Part]]) -> list[dict]:
    chunks: list[dict] = []
    for index, p in parts:
        chunks.extend(chunker.feed(index, p))
    return chunks + chunker.finish()


def chunker(**kwargs: Any) -> ChatChunker:
    return ChatChunker(completion_id="chatcmpl-1", created=CREATED, model="my-model", **kwargs)


MESSAGES = [{"role": "user", "content": "hi"}]


# -- ids ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "prefix"),
    [(new_chat_id, "chatcmpl-"), (new_completion_id, "cmpl-"), (new_tool_call_id, "call_")],
)
def test_it_makes_unique_prefixed_ids(make: Callable[[], str], prefix: str) -> None:
    ids = {make() for _ in range(2000)}
    assert len(ids) == 2000
    assert all(i.startswith(prefix) and len(i) > len(prefix) + 16 for i in ids)


# -- non-streaming chat -----------------------------------------------------------------------------


def test_it_builds_the_exact_chat_completion_shape() -> None:
    resp = part("Hi", done=True, reason="stop", prompt=9, completion=2)
    out = chat_completion(
        completion_id="chatcmpl-1", created=CREATED, model="my-model", choices=[resp], include_logprobs=False
    )
    assert out == {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": CREATED,
        "model": "my-model",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hi", "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11},
        "system_fingerprint": "fp_gatehouse",
    }
    parsed = sdk(json.dumps(out).encode(), "application/json").chat.completions.create(
        model="my-model", messages=MESSAGES
    )
    assert parsed.choices[0].message.content == "Hi"
    assert parsed.usage is not None and parsed.usage.total_tokens == 11


def test_it_reports_length_and_counts_missing_usage_as_zero() -> None:
    resp = part_from_native(ChatResponse(
        model="m", message=Message(role="assistant", content="abc"), done=True, done_reason="length"
    ))
    out = chat_completion(completion_id="c", created=1, model="m", choices=[resp], include_logprobs=False)
    assert out["choices"][0]["finish_reason"] == "length"
    assert out["usage"] == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}


def test_it_returns_tool_calls_with_string_arguments_and_unique_ids() -> None:
    resp = part(
        "",
        done=True,
        reason="stop",
        calls=[("get_weather", {"city": "Paris"}), ("get_time", {})],
        prompt=5,
        completion=7,
    )
    out = chat_completion(completion_id="c", created=1, model="m", choices=[resp], include_logprobs=False)
    choice = out["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    calls = choice["message"]["tool_calls"]
    assert [c["type"] for c in calls] == ["function", "function"]
    assert [json.loads(c["function"]["arguments"]) for c in calls] == [{"city": "Paris"}, {}]
    assert len({c["id"] for c in calls}) == 2 and all(c["id"].startswith("call_") for c in calls)

    parsed = sdk(json.dumps(out).encode(), "application/json").chat.completions.create(
        model="m", messages=MESSAGES
    )
    assert parsed.choices[0].message.tool_calls[0].function.name == "get_weather"

    single = chat_completion(
        completion_id="c",
        created=1,
        model="m",
        choices=[resp],
        include_logprobs=False,
        parallel_tool_calls=False,
    )
    assert len(single["choices"][0]["message"]["tool_calls"]) == 1


def test_it_numbers_n_choices_and_counts_the_prompt_once() -> None:
    choices = [
        part(t, done=True, reason="stop", prompt=10, completion=c) for t, c in (("a", 1), ("b", 2), ("c", 3))
    ]
    out = chat_completion(completion_id="c", created=1, model="m", choices=choices, include_logprobs=False)
    assert [c["index"] for c in out["choices"]] == [0, 1, 2]
    assert [c["message"]["content"] for c in out["choices"]] == ["a", "b", "c"]
    assert out["usage"] == {"prompt_tokens": 10, "completion_tokens": 6, "total_tokens": 16}


def test_it_formats_chat_logprobs() -> None:
    resp = part(
        "Hi!",
        done=True,
        reason="stop",
        logprobs=[lp("Hi", -0.01, ("Hi", -0.01), ("Hello", -4.6)), lp("!", -0.2, ("!", -0.2), (".", -1.8))],
    )
    out = chat_completion(completion_id="c", created=1, model="m", choices=[resp], include_logprobs=True)
    logprobs = out["choices"][0]["logprobs"]
    assert logprobs["refusal"] is None
    assert logprobs["content"][0] == {
        "token": "Hi",
        "logprob": -0.01,
        "bytes": [72, 105],
        "top_logprobs": [
            {"token": "Hi", "logprob": -0.01, "bytes": [72, 105]},
            {"token": "Hello", "logprob": -4.6, "bytes": list(b"Hello")},
        ],
    }
    parsed = sdk(json.dumps(out).encode(), "application/json").chat.completions.create(
        model="m", messages=MESSAGES
    )
    assert [len(t.top_logprobs) for t in parsed.choices[0].logprobs.content] == [2, 2]


# -- non-streaming legacy completions ---------------------------------------------------------------


def test_it_orders_text_choices_prompt_major_and_counts_each_prompt_once() -> None:
    choices = [
        gen(t, done=True, prompt=p, completion=1) for t, p in (("a0", 3), ("a1", 3), ("b0", 4), ("b1", 4))
    ]
    out = text_completion(
        completion_id="cmpl-1", created=1, model="m", prompts=["a", "b"], n=2, choices=choices
    )
    assert [(c["index"], c["text"]) for c in out["choices"]] == [(0, "a0"), (1, "a1"), (2, "b0"), (3, "b1")]
    assert out["usage"] == {"prompt_tokens": 7, "completion_tokens": 4, "total_tokens": 11}
    assert out["object"] == "text_completion" and out["choices"][0]["logprobs"] is None
    parsed = sdk(json.dumps(out).encode(), "application/json").completions.create(
        model="m", prompt=["a", "b"], n=2
    )
    assert [c.text for c in parsed.choices] == ["a0", "a1", "b0", "b1"]


def test_it_echoes_the_prompt_with_equal_length_logprob_lists() -> None:
    resp = gen(
        " world",
        done=True,
        reason="length",
        logprobs=[lp(" wor", -0.5, (" wor", -0.5), (" plan", -1.0)), lp("ld", -0.1, ("ld", -0.1))],
    )
    out = text_completion(
        completion_id="c", created=1, model="m", prompts=["hello"], n=1, choices=[resp], echo=True, logprobs=2
    )
    choice = out["choices"][0]
    assert choice["text"] == "hello world" and choice["finish_reason"] == "length"
    logprobs = choice["logprobs"]
    assert logprobs == {
        "tokens": ["hello", " wor", "ld"],
        "token_logprobs": [None, -0.5, -0.1],
        "top_logprobs": [None, {" wor": -0.5, " plan": -1.0}, {"ld": -0.1}],
        "text_offset": [0, 5, 9],
    }
    assert "".join(logprobs["tokens"]) == choice["text"]


# -- streaming chat -----------------------------------------------------------------------------------


def test_it_streams_text_in_the_canonical_chunk_sequence() -> None:
    chunks = run_chat(
        chunker(),
        [
            (0, part("Hel")),
            (0, part("")),
            (0, part("lo")),
            (0, part("", done=True, reason="stop", prompt=9, completion=2)),
        ],
    )
    base = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": "my-model",
        "system_fingerprint": "fp_gatehouse",
    }
    assert chunks == [
        {
            **base,
            "choices": [
                {
                    "index": 0,
                    "delta": {"role": "assistant", "content": "Hel"},
                    "logprobs": None,
                    "finish_reason": None,
                }
            ],
        },
        {
            **base,
            "choices": [{"index": 0, "delta": {"content": "lo"}, "logprobs": None, "finish_reason": None}],
        },
        {**base, "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}]},
    ]


def test_it_sends_a_role_chunk_even_when_the_first_part_is_empty() -> None:
    chunks = run_chat(chunker(), [(0, part("")), (0, part("x", done=True, reason="length"))])
    assert [c["choices"][0]["delta"] for c in chunks] == [
        {"role": "assistant", "content": ""},
        {"content": "x"},
        {},
    ]
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


def test_it_adds_one_usage_chunk_only_when_asked() -> None:
    parts = [(0, part("Hi")), (0, part("", done=True, reason="stop", prompt=9, completion=2))]
    plain = run_chat(chunker(), parts)
    assert all("usage" not in c and c["choices"] for c in plain)

    with_usage = run_chat(chunker(include_usage=True), parts)
    assert all(c["usage"] is None and c["choices"] for c in with_usage[:-1])
    assert with_usage[-1]["choices"] == []
    assert with_usage[-1]["usage"] == {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}

    stream = sdk(stream_bytes(with_usage)).chat.completions.create(
        model="m", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    received = list(stream)
    assert [c.usage is not None for c in received] == [False, False, True]


def test_it_streams_what_the_sdk_helper_accumulates_into_one_message() -> None:
    parts = [
        (0, part("The ")),
        (0, part("sky ")),
        (0, part("is blue.", done=True, reason="stop", prompt=3, completion=4)),
    ]
    body = stream_bytes(run_chat(chunker(include_usage=True), parts))
    ids = set()
    for chunk in sdk(body).chat.completions.create(model="m", messages=MESSAGES, stream=True):
        ids.add((chunk.id, chunk.created, chunk.model, chunk.object))
    assert ids == {("chatcmpl-1", CREATED, "my-model", "chat.completion.chunk")}
    with sdk(body).chat.completions.stream(model="m", messages=MESSAGES) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message.role == "assistant"  # not "assistantassistant"
    assert final.choices[0].message.content == "The sky is blue."
    assert final.choices[0].finish_reason == "stop"


def test_it_streams_tool_calls_as_openai_deltas() -> None:
    calls = [("get_weather", {"city": "Paris"}), ("get_time", {"tz": "CET"})]
    chunks = run_chat(chunker(), [(0, part("", calls=calls)), (0, part("", done=True, reason="stop"))])
    deltas = [c["choices"][0]["delta"] for c in chunks]
    first, second = deltas[0]["tool_calls"][0], deltas[2]["tool_calls"][0]
    assert deltas[0]["role"] == "assistant" and deltas[0]["content"] is None
    assert first["function"] == {"name": "get_weather", "arguments": ""} and first["type"] == "function"
    assert first["index"] == 0 and second["index"] == 1 and first["id"] != second["id"]
    assert deltas[1] == {"tool_calls": [{"index": 0, "function": {"arguments": '{"city":"Paris"}'}}]}
    assert deltas[3] == {"tool_calls": [{"index": 1, "function": {"arguments": '{"tz":"CET"}'}}]}
    assert all("index" in tc and "function" in tc for d in deltas for tc in d.get("tool_calls", []))
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert sum("role" in d for d in deltas) == 1

    with sdk(stream_bytes(chunks)).chat.completions.stream(model="m", messages=MESSAGES) as stream:
        final = stream.get_final_completion()
    tool_calls = final.choices[0].message.tool_calls
    assert [(t.function.name, json.loads(t.function.arguments)) for t in tool_calls] == [
        ("get_weather", {"city": "Paris"}),
        ("get_time", {"tz": "CET"}),
    ]


def test_it_streams_tool_calls_that_langchain_aggregates() -> None:
    langchain_openai = pytest.importorskip("langchain_openai")
    chunks = run_chat(
        chunker(include_usage=True),
        [
            (0, part("", calls=[("get_weather", {"city": "Paris"})])),
            (0, part("", done=True, reason="stop", prompt=4, completion=6)),
        ],
    )
    body = stream_bytes(chunks)

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    llm = langchain_openai.ChatOpenAI(
        model="m",
        api_key="x",
        base_url="http://gatehouse.test/v1",
        stream_usage=True,
        http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
    )
    total = None
    for piece in llm.stream("weather?"):
        total = piece if total is None else total + piece
    assert [(c["name"], c["args"]) for c in total.tool_calls] == [("get_weather", {"city": "Paris"})]
    assert total.usage_metadata["input_tokens"] == 4 and total.usage_metadata["output_tokens"] == 6


def test_it_keeps_only_the_first_tool_call_without_parallel_tool_calls() -> None:
    chunks = run_chat(
        chunker(parallel_tool_calls=False),
        [
            (0, part("", calls=[("a", {}), ("b", {})])),
            (0, part("", calls=[("c", {})])),
            (0, part("", done=True)),
        ],
    )
    names = [
        tc["function"].get("name") for c in chunks for tc in c["choices"][0]["delta"].get("tool_calls", [])
    ]
    assert [n for n in names if n] == ["a"]


def test_it_interleaves_n_choices_each_with_its_own_role_and_finish() -> None:
    parts = [
        (0, part("a")),
        (1, part("b")),
        (1, part("b2", done=True, reason="length", prompt=5, completion=2)),
        (0, part("a2", done=True, reason="stop", prompt=5, completion=2)),
    ]
    chunks = run_chat(chunker(n=2, include_usage=True), parts)
    for index in (0, 1):
        mine = [c["choices"][0] for c in chunks if c["choices"] and c["choices"][0]["index"] == index]
        assert sum("role" in c["delta"] for c in mine) == 1 and "role" in mine[0]["delta"]
        assert [c["finish_reason"] for c in mine if c["finish_reason"]] == [["stop", "length"][index]]
    assert chunks[-1]["usage"] == {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}
    texts = ["", ""]
    for chunk in sdk(stream_bytes(chunks)).chat.completions.create(
        model="m", messages=MESSAGES, n=2, stream=True
    ):
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
    assert texts == ["aa2", "bb2"]


def test_it_streams_logprobs_per_delta() -> None:
    parts = [
        (0, part("Hi", logprobs=[lp("Hi", -0.1, ("Hi", -0.1))])),
        (0, part("!", done=True, reason="stop", logprobs=[lp("!", -0.3, ("!", -0.3))])),
    ]
    chunks = run_chat(chunker(include_logprobs=True), parts)
    assert [c["choices"][0]["logprobs"]["content"][0]["token"] for c in chunks[:2]] == ["Hi", "!"]
    assert chunks[-1]["choices"][0]["logprobs"] is None
    with sdk(stream_bytes(chunks)).chat.completions.stream(
        model="m", messages=MESSAGES, logprobs=True
    ) as stream:
        final = stream.get_final_completion()
    assert [t.token for t in final.choices[0].logprobs.content] == ["Hi", "!"]


def test_it_streams_thinking_as_reasoning_content_and_reasoning() -> None:
    # Clients read one name or the other: DeepSeek-style `reasoning_content`, Ollama/vLLM-style `reasoning`.
    chunks = run_chat(chunker(), [(0, part("", thinking="hmm")), (0, part("ok", done=True))])
    assert chunks[0]["choices"][0]["delta"] == {
        "role": "assistant",
        "content": "",
        "reasoning_content": "hmm",
        "reasoning": "hmm",
    }


def test_a_whole_answer_carries_its_thinking_under_both_names() -> None:
    out = chat_completion(completion_id="c", created=1, model="m", include_logprobs=False,
                          choices=[part("ok", thinking="because", done=True, reason="stop")])
    message = out["choices"][0]["message"]
    assert (message["reasoning_content"], message["reasoning"], message["content"]) == ("because", "because", "ok")


def test_it_closes_unfinished_choices_on_finish() -> None:
    c = chunker(n=2)
    c.feed(0, part("x", done=True))
    assert not c.done
    tail = c.finish()
    assert [ch["choices"][0]["delta"] for ch in tail] == [{"role": "assistant", "content": ""}, {}]
    assert tail[-1]["choices"][0] == {"index": 1, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    assert c.done and c.feed(1, part("late")) == []


# -- streaming legacy completions ---------------------------------------------------------------------


def completion_chunker(**kwargs: Any) -> CompletionChunker:
    kwargs.setdefault("prompts", ["p"])
    return CompletionChunker(completion_id="cmpl-1", created=CREATED, model="m", **kwargs)


def run_completion(c: CompletionChunker, parts: list[tuple[int, Part]]) -> list[dict]:
    chunks: list[dict] = []
    for index, p in parts:
        chunks.extend(c.feed(index, p))
    return chunks + c.finish()


def test_it_streams_text_completion_chunks() -> None:
    chunks = run_completion(
        completion_chunker(include_usage=True),
        [(0, gen("def")), (0, gen("")), (0, gen(" f", done=True, reason="length", prompt=3, completion=2))],
    )
    assert all(c["object"] == "text_completion" and c["id"] == "cmpl-1" for c in chunks)
    assert [(c["choices"][0]["text"], c["choices"][0]["finish_reason"]) for c in chunks[:-1]] == [
        ("def", None),
        (" f", None),
        ("", "length"),
    ]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 5
    stream = sdk(stream_bytes(chunks)).completions.create(model="m", prompt="p", stream=True)
    assert "".join(c.choices[0].text for c in stream if c.choices) == "def f"


def test_it_streams_echo_and_logprobs_for_completions() -> None:
    chunks = run_completion(
        completion_chunker(prompts=["ab"], echo=True, logprobs=1),
        [(0, gen("c", logprobs=[lp("c", -0.5, ("c", -0.5))])), (0, gen("d", done=True))],
    )
    texts = [c["choices"][0]["text"] for c in chunks]
    assert texts == ["ab", "c", "d", ""]
    assert chunks[0]["choices"][0]["logprobs"]["token_logprobs"] == [None]
    assert chunks[1]["choices"][0]["logprobs"]["text_offset"] == [2]
    assert chunks[2]["choices"][0]["logprobs"]["tokens"] == []


def test_it_indexes_streamed_completions_prompt_major() -> None:
    c = completion_chunker(prompts=["a", "b"], n=2)
    chunks = run_completion(c, [(i, gen(str(i), done=True, prompt=1, completion=1)) for i in (3, 1, 0, 2)])
    assert sorted(ch["choices"][0]["index"] for ch in chunks if ch["choices"][0]["finish_reason"]) == [
        0,
        1,
        2,
        3,
    ]
    assert c.usage == {"prompt_tokens": 2, "completion_tokens": 4, "total_tokens": 6}


# -- SSE framing and errors ----------------------------------------------------------------------------


def test_it_frames_each_event_as_one_ascii_data_line() -> None:
    event = sse_event({"text": "line\nbreak \u2028 é 🎉"})
    assert event.startswith(b"data: ") and event.endswith(b"\n\n") and event.count(b"\n") == 2
    assert event.isascii()
    assert json.loads(event[6:]) == {"text": "line\nbreak \u2028 é 🎉"}
    assert SSE_DONE == b"data: [DONE]\n\n" and SSE_KEEPALIVE == b": keep-alive\n\n"


def test_it_keeps_alive_with_comments_the_sdk_ignores() -> None:
    chunks = run_chat(chunker(), [(0, part("a")), (0, part("b", done=True))])
    body = (
        SSE_KEEPALIVE
        + sse_event(chunks[0])
        + SSE_KEEPALIVE
        + b"".join(sse_event(c) for c in chunks[1:])
        + SSE_DONE
    )
    stream = sdk(body).chat.completions.create(model="m", messages=MESSAGES, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream) == "ab"


def test_it_raises_in_stream_errors_in_the_sdk() -> None:
    chunks = run_chat(chunker(), [(0, part("partial"))])
    body = b"".join(sse_event(c) for c in chunks) + sse_error("The model server failed: runner crashed")
    assert json.loads(sse_error("x")[6:]) == {
        "error": {"message": "x", "type": "server_error", "param": None, "code": None}
    }
    with pytest.raises(openai.APIError, match="runner crashed"):
        list(sdk(body).chat.completions.create(model="m", messages=MESSAGES, stream=True))
    assert json.loads(sse_error(ApiError.bad_gateway("boom"))[6:])["error"]["message"] == "boom"


# -- error mapping (Ollama -> OpenAI) -----------------------------------------------------------------


def test_it_shapes_every_error_with_all_four_keys() -> None:
    for error in (
        ApiError.invalid_request("bad", param="n"),
        ApiError.invalid_api_key(),
        ApiError.permission_denied("no"),
        ApiError.model_not_found("x"),
        ApiError.not_found("nope"),
        ApiError.method_not_allowed("get", "/v1/chat/completions", ["POST"]),
        ApiError.payload_too_large(1024),
        ApiError.backend_unavailable("busy", retry_after=3),
        ApiError.store_unavailable("no Redis"),
        ApiError.bad_gateway("down"),
    ):
        assert openai_error_problem(error.as_dict()) is None
    assert ApiError.invalid_api_key().status == 401 and ApiError.invalid_api_key().code == "invalid_api_key"
    assert ApiError.method_not_allowed("get", "/v1/models", ["POST", "GET"]).headers == {"Allow": "GET, POST"}
    assert ApiError.payload_too_large(1024).status == 413
    assert ApiError.backend_unavailable("busy", retry_after=3).headers == {"Retry-After": "3"}
    store = ApiError.store_unavailable("no Redis")
    assert (store.status, store.type, store.code, store.headers) == (503, "server_error", "service_unavailable",
                                                                     {"Retry-After": "2"})


@pytest.mark.parametrize(
    ("status", "text", "expected"),
    [
        (404, "model 'llama9' not found", (404, "model", "model_not_found", None)),
        (404, 'model "e5" not found, try pulling it first', (404, "model", "model_not_found", None)),
        (
            400,
            '"registry.ollama.ai/library/gemma:2b" does not support tools',
            (400, "tools", "unsupported_parameter", None),
        ),
        (
            400,
            "registry.ollama.ai/library/llama3.2:3b does not support insert",
            (400, "suffix", "unsupported_parameter", None),
        ),
        (400, '"all-minilm" does not support generate', (400, "model", "unsupported_parameter", None)),
        (400, "top_logprobs must be between 0 and 20", (400, "top_logprobs", None, None)),
        (503, "server busy, please try again.  maximum pending requests exceeded", (503, None, None, "2")),
        (-1, "server busy, please try again.  maximum pending requests exceeded", (503, None, None, "2")),
        (500, "model runner has unexpectedly stopped", (502, None, None, None)),
        (500, "model requires more system memory (9 GiB) than is available (4 GiB)", (502, None, None, None)),
        (401, "unauthorized", (502, None, None, None)),
    ],
)
def test_it_maps_ollama_errors(status: int, text: str, expected: tuple) -> None:
    error = from_node(status, text, "public-name")
    assert (error.status, error.param, error.code, error.headers.get("Retry-After")) == expected
    assert "registry.ollama.ai" not in error.message
    if error.status == 404:
        assert error.message == "The model `public-name` does not exist or you do not have access to it."
    if error.status >= 500:
        assert error.type == "server_error"


def test_it_tells_sdks_not_to_retry_permanent_upstream_failures() -> None:
    assert from_node(500, "model runner has unexpectedly stopped", "m").headers == {}
    error = from_node(
        500, "model requires more system memory (9 GiB) than is available (4 GiB)", "m"
    )
    assert error.headers == {"x-should-retry": "false"}
    calls: list = []
    client = sdk(
        json.dumps(error.as_dict()).encode(),
        "application/json",
        status=error.status,
        calls=calls,
        headers=error.headers,
    )
    with pytest.raises(openai.InternalServerError, match="more system memory"):
        client.chat.completions.create(model="m", messages=MESSAGES)
    assert len(calls) == 1
