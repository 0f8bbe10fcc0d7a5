"""Reasoning models through the OpenAI routes: `reasoning_effort` turns thinking on, off or to a level
(Ollama's `think`), and the trace comes back under both names clients read, `reasoning_content`
(DeepSeek-style: Continue, LangChain) and `reasoning` (Ollama- and vLLM-style). Against the live server
and the simulator, whose qwen3 model thinks unless told not to, with the real `openai` SDK."""

from __future__ import annotations

import openai
import pytest

from inference.engines.ollama_translate import think_for
from tests.conftest import CHAT_MODEL, THINK_MODEL

HELLO = [{"role": "user", "content": "Why is the sky blue?"}]


@pytest.fixture
def client(base_url, world) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url, api_key=world.alice_key, max_retries=0)


@pytest.mark.parametrize("effort,think", [
    ("none", False), ("minimal", "low"), ("low", "low"), ("medium", "medium"), ("high", "high"),
    ("max", "high"), ("xhigh", "high"), ("ultra", "high"), (None, None),
])
def test_each_effort_becomes_ollamas_think(effort, think):
    assert think_for(effort) == think


def test_a_reasoning_model_returns_its_trace_under_both_names(client):
    reply = client.chat.completions.create(model=THINK_MODEL, messages=HELLO, reasoning_effort="high")
    extra = reply.choices[0].message.model_extra
    assert extra["reasoning"] and extra["reasoning_content"] == extra["reasoning"]
    assert reply.choices[0].message.content


def test_effort_none_turns_thinking_off(client):
    reply = client.chat.completions.create(model=THINK_MODEL, messages=HELLO, reasoning_effort="none")
    extra = reply.choices[0].message.model_extra or {}
    assert "reasoning" not in extra and "reasoning_content" not in extra
    assert reply.choices[0].message.content


def test_a_streamed_trace_arrives_before_the_answer(client):
    deltas = [c.choices[0].delta for c in client.chat.completions.create(
        model=THINK_MODEL, messages=HELLO, reasoning_effort="low", stream=True) if c.choices]
    thinking = [d for d in deltas if (d.model_extra or {}).get("reasoning")]
    answering = [i for i, d in enumerate(deltas) if d.content]
    assert thinking and all((d.model_extra or {})["reasoning_content"] == d.model_extra["reasoning"] for d in thinking)
    assert answering and deltas.index(thinking[0]) < answering[0]


def test_asking_a_model_that_cannot_reason_to_reason_is_a_400_naming_the_parameter(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=CHAT_MODEL, messages=HELLO, reasoning_effort="high")
    assert info.value.body["param"] == "reasoning_effort"
    assert "does not support reasoning" in info.value.body["message"]


def test_an_unknown_effort_is_a_400(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=THINK_MODEL, messages=HELLO, reasoning_effort="extreme")
    assert info.value.body["param"] == "reasoning_effort"
