"""Output: determinism, num_predict, stop, tools, formats, FIM, logprobs, thinking and embeddings."""

from __future__ import annotations

import json
import math
from enum import StrEnum

import httpx
import ollama
import pytest
from pydantic import BaseModel, Field

from tests.sim.simkit import CHAT, CODER, EMBEDDER, THINKER, loaded_names, ndjson

pytestmark = pytest.mark.timeout(60)

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather for a city",
    "parameters": {"type": "object", "required": ["city"], "properties": {
        "city": {"type": "string", "description": "City name"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer", "minimum": 1, "maximum": 7}}}}}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {
    "type": "object", "properties": {"timezone": {"type": "string"}}, "required": ["timezone"]}}}


def chat(sim, **body) -> dict:
    response = httpx.post(sim.url + "/api/chat", json={"model": CHAT, "stream": False, **body}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def generate(sim, **body) -> dict:
    response = httpx.post(sim.url + "/api/generate", json={"model": CHAT, "stream": False, **body}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def norm(v: list[float]) -> float:
    return math.sqrt(sum(x * x for x in v))


def test_it_repeats_itself_for_the_same_seed_and_for_temperature_zero(sim):
    messages = [{"role": "user", "content": "Explain caching"}]
    seeded = [chat(sim, messages=messages, options={"seed": 7})["message"]["content"] for _ in range(2)]
    assert seeded[0] == seeded[1]
    assert chat(sim, messages=messages, options={"seed": 8})["message"]["content"] != seeded[0]
    greedy = [chat(sim, messages=messages, options={"temperature": 0})["message"]["content"] for _ in range(2)]
    assert greedy[0] == greedy[1]
    # The default temperature samples. One of the answers it can sample is a short fixed sentence, so two
    # of a few samples may be the same; five all the same would mean it does not sample at all.
    unseeded = {chat(sim, messages=messages, options={"num_predict": 20})["message"]["content"] for _ in range(5)}
    assert len(unseeded) >= 2


def test_it_honours_num_predict_with_done_reason_length(sim):
    data = generate(sim, prompt="write a lot", options={"num_predict": 7})
    assert data["eval_count"] == 7 and data["done_reason"] == "length"
    natural = generate(sim, prompt="short", options={"seed": 1})
    assert natural["done_reason"] == "stop" and natural["response"].endswith(".")


def test_it_stops_before_a_stop_sequence(sim):
    full = generate(sim, prompt="tell me", options={"seed": 3, "num_predict": 40})["response"]
    words = full.split()
    stop = " ".join(words[5:7])  # two words: the stop spans several tokens
    cut = generate(sim, prompt="tell me", options={"seed": 3, "num_predict": 40, "stop": [stop, "zzz"]})
    assert cut["done_reason"] == "stop"
    assert cut["response"] == full[: full.index(stop)]
    lines = ndjson(httpx.post(sim.url + "/api/generate", json={
        "model": CHAT, "prompt": "tell me", "options": {"seed": 3, "num_predict": 40, "stop": [stop]}}).text)
    assert "".join(line["response"] for line in lines) == cut["response"]
    assert lines[-1]["done_reason"] == "stop"


def test_it_calls_the_tool_the_user_names_with_arguments_valid_for_its_schema(sim):
    reply = ollama.Client(host=sim.url).chat(model=CHAT, tools=[TIME, WEATHER], messages=[
        {"role": "user", "content": "What is the weather in Tokyo for 3 days? Use get_weather."}])
    assert reply.message.content == ""
    call = reply.message.tool_calls[0]
    assert call.function.name == "get_weather"
    args = call.function.arguments  # an object on the native API
    assert args["city"] == "Tokyo" and args["unit"] in ("celsius", "fahrenheit") and args["days"] == 3
    assert reply.done_reason == "stop" and reply.eval_count > 0


def test_it_calls_the_first_tool_when_none_is_named_and_answers_a_tool_result_in_text(sim):
    first = chat(sim, tools=[TIME, WEATHER], messages=[{"role": "user", "content": "Hello"}])
    call = first["message"]["tool_calls"][0]
    assert call["function"]["name"] == "get_time" and isinstance(call["function"]["arguments"]["timezone"], str)
    assert call["id"].startswith("call_")
    answer = chat(sim, tools=[TIME, WEATHER], messages=[
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "", "tool_calls": [{"function": call["function"]}]},
        {"role": "tool", "content": "12:00 in UTC", "tool_name": "get_time"}])
    assert "tool_calls" not in answer["message"]
    assert answer["message"]["content"].startswith("The get_time tool returned 12:00 in UTC.")


def test_it_streams_a_tool_call_whole_in_one_chunk(sim):
    lines = ndjson(httpx.post(sim.url + "/api/chat", json={
        "model": CHAT, "tools": [WEATHER], "messages": [{"role": "user", "content": "weather in Paris"}]}).text)
    with_calls = [line for line in lines if line["message"].get("tool_calls")]
    assert len(with_calls) == 1 and with_calls[0]["done"] is False
    assert with_calls[0]["message"]["tool_calls"][0]["function"]["arguments"]["city"] == "Paris"
    assert lines[-1]["done"] is True


def test_it_answers_format_json_with_a_json_object_in_pieces(sim):
    lines = ndjson(httpx.post(sim.url + "/api/generate", json={
        "model": CHAT, "prompt": "Describe a cat as JSON", "format": "json"}).text)
    assert len(lines) > 5  # streamed token by token, not in one piece
    assert isinstance(json.loads("".join(line["response"] for line in lines)), dict)


class Colour(StrEnum):
    red = "red"
    green = "green"


class Pet(BaseModel):
    name: str
    age: int = Field(ge=0, le=30)
    weight: float
    vaccinated: bool
    colour: Colour
    tags: list[str] = Field(min_length=1)
    owner: str | None = None


class Household(BaseModel):
    address: str
    pets: list[Pet]


def test_it_answers_a_json_schema_format_with_a_valid_instance(sim):
    client = ollama.Client(host=sim.url)
    reply = client.chat(model=CHAT, messages=[{"role": "user", "content": "Tell me about Rex"}],
                        format=Household.model_json_schema(), options={"seed": 1})
    household = Household.model_validate_json(reply.message.content)
    assert household.pets and household.pets[0].tags
    # The same through generate, for many seeds: always valid.
    for seed in range(10):
        Pet.model_validate_json(client.generate(model=CHAT, prompt="a pet", format=Pet.model_json_schema(),
                                                options={"seed": seed}).response)


def test_it_fills_in_the_middle_for_insert_models(sim):
    data = generate(sim, model=CODER, prompt="def add(a, b):\n", suffix="\n    return result\n",
                    options={"num_predict": 12})
    # num_predict caps the reply; an unseeded natural reply may end sooner.
    assert 0 < data["eval_count"] <= 12 and data["response"].strip()


def test_it_returns_logprobs_in_the_clients_shape(sim):
    client = ollama.Client(host=sim.url)
    reply = client.generate(model=CHAT, prompt="x", logprobs=True, top_logprobs=3, options={"num_predict": 6})
    assert len(reply.logprobs) == 6
    assert "".join(entry.token for entry in reply.logprobs) == reply.response
    for entry in reply.logprobs:
        assert entry.logprob <= 0
        assert len(entry.top_logprobs) == 3
        assert entry.top_logprobs[0].token == entry.token
        assert all(alt.logprob <= entry.logprob for alt in entry.top_logprobs)
    parts = list(client.chat(model=CHAT, messages=[{"role": "user", "content": "x"}], stream=True, logprobs=True,
                             options={"num_predict": 4}))
    entries = [entry for part in parts for entry in part.logprobs or []]
    assert len(entries) == 4
    assert all(not entry.top_logprobs for entry in entries)  # none asked for


def test_it_thinks_on_thinking_models_unless_told_not_to(sim):
    client = ollama.Client(host=sim.url)
    messages = [{"role": "user", "content": "Is 7 prime?"}]
    thought = client.chat(model=THINKER, messages=messages, think=True, options={"seed": 1})
    assert thought.message.thinking and thought.message.content
    default = client.chat(model=THINKER, messages=messages, options={"seed": 1})
    assert default.message.thinking
    plain = client.chat(model=THINKER, messages=messages, think=False, options={"seed": 1})
    assert plain.message.thinking is None and plain.message.content
    streamed = list(client.generate(model=THINKER, prompt="hmm", think="low", stream=True,
                                    options={"num_predict": 3}))
    assert [bool(part.thinking) for part in streamed[:3]] == [True, True, True]
    assert streamed[-1].eval_count == 3  # thinking tokens count as output tokens


def test_it_embeds_normalised_vectors_where_similar_texts_are_closer(sim):
    client = ollama.Client(host=sim.url)
    texts = ["the cat sat on the mat", "a cat sat on a mat", "quarterly revenue grew by ten percent"]
    result = client.embed(model=EMBEDDER, input=texts)
    vectors = result.embeddings
    assert [len(v) for v in vectors] == [384, 384, 384]
    assert all(abs(norm(v) - 1) < 1e-6 for v in vectors)
    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2]) + 0.3
    assert client.embed(model=EMBEDDER, input=texts[0]).embeddings[0] == vectors[0]  # deterministic
    assert result.prompt_eval_count == sum(len(t.split()) for t in texts)
    short = client.embed(model=EMBEDDER, input=texts, dimensions=64).embeddings
    assert [len(v) for v in short] == [64] * 3 and all(abs(norm(v) - 1) < 1e-6 for v in short)
    assert cosine(short[0], short[1]) > cosine(short[0], short[2])
    # Generative models embed too (no capability check), at their own width.
    assert len(client.embed(model=CHAT, input="hello").embeddings[0]) == 3072


def test_it_returns_an_unnormalised_vector_from_the_legacy_endpoint(sim):
    client = ollama.Client(host=sim.url)
    legacy = client.embeddings(model=EMBEDDER, prompt="the cat sat on the mat").embedding
    modern = client.embed(model=EMBEDDER, input="the cat sat on the mat").embeddings[0]
    assert len(legacy) == 384 and abs(norm(legacy) - 1) > 0.5
    assert cosine([x / norm(legacy) for x in legacy], modern) > 0.999


def test_it_loads_the_model_for_empty_embedding_input(sim):
    assert httpx.post(sim.url + "/api/embed", json={"model": EMBEDDER, "input": []}).json() == {
        "model": EMBEDDER, "embeddings": []}
    assert loaded_names(sim) == [EMBEDDER]
    assert httpx.post(sim.url + "/api/embeddings", json={"model": "all-minilm", "prompt": ""}).json() == {
        "embedding": []}


def test_it_truncates_long_embedding_input_to_the_context_by_default(sim):
    data = httpx.post(sim.url + "/api/embed", json={"model": EMBEDDER, "input": "word " * 600}).json()
    assert data["prompt_eval_count"] == 512  # all-minilm's context


def test_it_decodes_at_the_configured_speed(sim):
    sim.set_faults(CHAT, tokens_per_second=200, time_to_first_token_ms=100)
    data = generate(sim, prompt="x", options={"num_predict": 40})
    assert data["eval_count"] >= 8
    assert data["eval_duration"] >= 0.9 * data["eval_count"] / 200 * 1e9
    assert data["prompt_eval_duration"] >= 0.09e9
