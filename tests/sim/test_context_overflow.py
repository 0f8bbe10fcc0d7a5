"""A prompt longer than the context: what Ollama cuts, and what it refuses with 400 (ollamasim/context.py).

Since v0.30.0: chat drops whole old messages to fit (unless truncate is off); a prompt still too long is
cut when the runner can shift its context and refused with Ollama's own text when it cannot; with
truncate off, llama-server refuses and Ollama passes its JSON body on as the error text.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import ollama
import pytest

from tests.sim.simkit import CHAT, clean, ndjson, sim_config
from tests.support.simulator import SimulatorProcess

pytestmark = pytest.mark.timeout(60)

PROMPT_TOO_LONG = ("the prompt is longer than the context length currently available to the model; shorten the "
                   "prompt, adjust the context length in settings, or use a model with a longer context length")
DEEPSEEK = "deepseek-v2:16b"  # deepseek2 cannot shift its context, so shift defaults to off
NUM_CTX = 256
LONG = "word " * 1000  # about a thousand tokens
SMALL = {"num_ctx": NUM_CTX, "num_predict": 4}


@pytest.fixture(scope="module")
def overflow_sim() -> Iterator[SimulatorProcess]:
    models = [*sim_config()["models"], {"name": DEEPSEEK, "family": "deepseek2", "size": 1_000_000_000,
                                        "capabilities": ["completion"], "context_length": 163840}]
    with SimulatorProcess(sim_config(models=models)) as sim:
        yield sim


@pytest.fixture
def http(overflow_sim: SimulatorProcess) -> Iterator[httpx.Client]:
    clean(overflow_sim)
    with httpx.Client(base_url=overflow_sim.url, timeout=30) as client:
        yield client


def chat(http: httpx.Client, messages: list[dict], **body) -> httpx.Response:
    return http.post("/api/chat", json={"model": CHAT, "messages": messages, "stream": False, "options": SMALL,
                                        **body})


def user(text: str) -> dict:
    return {"role": "user", "content": text}


def test_it_cuts_an_over_long_prompt_by_default(http):
    reply = chat(http, [user(LONG)])
    assert reply.status_code == 200
    # num_keep 4 plus BOS stay, and about half of the rest is freed: 256 - (256 - 5) // 2.
    assert reply.json()["prompt_eval_count"] == NUM_CTX - (NUM_CTX - 5) // 2


def test_it_drops_old_messages_to_fit_but_keeps_the_system_prompt_and_the_last_message(http):
    history = [{"role": "system", "content": "Be brief."}, user(LONG), {"role": "assistant", "content": "ok"},
               user("And now?")]
    for shift in (True, False):  # dropping whole messages needs no context shift
        reply = chat(http, history, shift=shift)
        assert reply.status_code == 200
        assert reply.json()["prompt_eval_count"] < 40  # the system prompt, the reply and the question


def test_it_refuses_a_prompt_that_does_not_fit_when_the_context_cannot_shift(http):
    refused = chat(http, [user(LONG)], shift=False)
    assert refused.status_code == 400
    assert refused.content == json.dumps({"error": PROMPT_TOO_LONG}, separators=(",", ":")).encode()
    assert refused.headers["content-type"] == "application/json; charset=utf-8"
    streamed = http.post("/api/generate", json={"model": CHAT, "prompt": LONG, "shift": False, "options": SMALL})
    assert streamed.status_code == 400 and streamed.json() == {"error": PROMPT_TOO_LONG}
    assert streamed.headers["content-type"] == "application/json"  # streamResponse's own header


def test_it_lets_llama_server_refuse_when_truncation_is_off(http):
    history = [user(LONG), {"role": "assistant", "content": "ok"}, user("And now?")]
    refused = chat(http, history, truncate=False)
    assert refused.status_code == 400
    inner = json.loads(refused.json()["error"])  # llama-server's body, as Ollama passes it on
    tokens = inner["error"]["n_prompt_tokens"]
    assert tokens > NUM_CTX
    assert inner == {"error": {
        "code": 400, "type": "exceed_context_size_error", "n_prompt_tokens": tokens, "n_ctx": NUM_CTX,
        "message": f"request ({tokens} tokens) exceeds the available context size ({NUM_CTX} tokens), "
                   "try increasing it"}}
    assert chat(http, [user("hi")], truncate=False).status_code == 200


def test_it_raises_a_response_error_in_the_official_client(overflow_sim, http):
    client = ollama.Client(host=overflow_sim.url)
    body = {"model": CHAT, "prompt": LONG, "stream": False, "shift": False, "options": SMALL}
    with pytest.raises(ollama.ResponseError) as caught:
        # generate() has no shift parameter; _request sends the body as given and maps errors as usual.
        client._request(ollama.GenerateResponse, "POST", "/api/generate", json=body, stream=False)
    assert caught.value.status_code == 400 and caught.value.error == PROMPT_TOO_LONG


def test_it_refuses_through_the_openai_layer_for_a_model_that_cannot_shift(http):
    response = http.post("/v1/chat/completions", json={"model": DEEPSEEK, "messages": [user(LONG * 40)]})
    assert response.status_code == 400
    assert response.json() == {"error": {"message": PROMPT_TOO_LONG, "type": "invalid_request_error",
                                         "param": None, "code": None}}


def test_it_stops_generating_at_the_end_of_the_context_without_shift(http):
    question = "word " * (NUM_CTX - 20)
    reply = chat(http, [user(question)], shift=False, options={"num_ctx": NUM_CTX}).json()
    assert reply["done_reason"] == "length"
    assert reply["prompt_eval_count"] + reply["eval_count"] == NUM_CTX
    # Natural replies are 8 to 24 tokens (simkit's response_tokens), random without a seed: leave less
    # room than the shortest, or a short reply ends with "stop" before the context is full.
    bare = "word " * (NUM_CTX - 16)  # 250 tokens with the template: room for 6
    lines = ndjson(http.post("/api/generate", json={"model": CHAT, "prompt": bare, "shift": False,
                                                    "options": {"num_ctx": NUM_CTX}}).text)
    assert lines[-1]["done_reason"] == "length"
    assert lines[-1]["prompt_eval_count"] + lines[-1]["eval_count"] == NUM_CTX


def test_it_follows_the_ollama_runner_before_0_30():
    with SimulatorProcess(sim_config({"version": "0.29.1"})) as older, httpx.Client(base_url=older.url) as http:
        refused = chat(http, [user(LONG)], truncate=False)
        cut = chat(http, [user(LONG)], shift=False)
    assert refused.status_code == 400
    assert refused.json() == {"error": "the input length exceeds the context length"}
    assert cut.status_code == 200 and cut.json()["prompt_eval_count"] == NUM_CTX
