"""Ollama's error texts and statuses (Ollama server/routes.go), mid-stream errors, and no tracebacks ever."""

from __future__ import annotations

import json

import httpx
import ollama
import pytest

from tests.sim.simkit import CHAT, CODER, EMBEDDER, THINKER, ndjson, sim_config
from tests.support.simulator import SimulatorProcess

pytestmark = pytest.mark.timeout(60)

TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object",
                                                                                  "properties": {}}}}]
HI = [{"role": "user", "content": "hi"}]
RUNNER_STOPPED = ("model runner has unexpectedly stopped, this may be due to resource limitations or an internal "
                  "error, check ollama server logs for details")

CASES = [
    # (method, path, body, status, error)
    ("POST", "/api/chat", b"", 400, "missing request body"),
    ("POST", "/api/generate", b"  \n", 400, "missing request body"),
    ("POST", "/api/embed", b"", 400, "missing request body"),
    ("POST", "/api/generate", b'{"model":', 400, "unexpected EOF"),
    ("POST", "/api/chat", b"{x}", 400, "invalid character 'x' looking for beginning of object key string"),
    ("POST", "/api/chat", b"[]", 400, "json: cannot unmarshal array into Go value of type api.ChatRequest"),
    ("POST", "/api/chat", {"messages": HI}, 400, "model is required"),
    ("POST", "/api/chat", {"model": "", "messages": HI}, 400, "model is required"),
    ("POST", "/api/generate", {"prompt": "x"}, 404, "model '' not found"),
    ("POST", "/api/generate", {"model": "nope", "prompt": "x"}, 404, "model 'nope' not found"),
    ("POST", "/api/chat", {"model": "nope", "messages": HI}, 404, "model 'nope' not found"),
    ("POST", "/api/embed", {"model": "nope", "input": "x"}, 404, 'model "nope" not found, try pulling it first'),
    ("POST", "/api/embeddings", {"model": "nope", "prompt": "x"}, 404,
     'model "nope" not found, try pulling it first'),
    ("POST", "/api/embeddings", {"prompt": "x"}, 400, "model is required"),
    ("POST", "/api/embed", {"input": "x"}, 404, "model '' not found"),
    ("POST", "/api/show", {"model": "nope"}, 404, "model 'nope:latest' not found"),  # DisplayShortest
    ("POST", "/api/show", {"model": "Org/Nope:Q4"}, 404, "model 'Org/Nope:Q4' not found"),
    # parseAndValidateModelRef: a name that cannot be a model name is a 400 on every route.
    ("POST", "/api/generate", {"model": "bad name!", "prompt": "x"}, 400, "invalid model name"),
    ("POST", "/api/chat", {"model": "a/b/c/d", "messages": HI}, 400, "invalid model name"),
    ("POST", "/api/embed", {"model": ":latest", "input": "x"}, 400, "invalid model name"),
    ("POST", "/api/embeddings", {"model": "-x", "prompt": "x"}, 400, "invalid model name"),
    ("POST", "/api/show", {"model": "bad name!"}, 400, "invalid model name"),
    ("POST", "/api/embed", {"input": 5}, 404, "model '' not found"),  # the name is checked before the input
    ("POST", "/api/chat", {"model": CODER, "messages": HI, "tools": TOOLS}, 400,
     "registry.ollama.ai/library/qwen2.5-coder:1.5b does not support tools"),
    ("POST", "/api/generate", {"model": CHAT, "prompt": "def f(", "suffix": "x"}, 400,
     "registry.ollama.ai/library/llama3.2:3b does not support insert"),
    ("POST", "/api/chat", {"model": EMBEDDER, "messages": HI}, 400, '"all-minilm:latest" does not support chat'),
    # Thinking is checked before the other capabilities.
    ("POST", "/api/chat", {"model": EMBEDDER, "messages": HI, "think": True}, 400,
     '"all-minilm:latest" does not support thinking'),
    ("POST", "/api/generate", {"model": EMBEDDER, "prompt": "x", "think": "high"}, 400,
     '"all-minilm:latest" does not support thinking'),
    ("POST", "/api/generate", {"model": CHAT, "prompt": "x", "suffix": "y", "think": True}, 400,
     '"llama3.2:3b" does not support thinking'),
    ("POST", "/api/generate", {"model": "all-minilm", "prompt": "x"}, 400, '"all-minilm" does not support generate'),
    ("POST", "/api/chat", {"model": CHAT, "messages": HI, "think": True}, 400,
     '"llama3.2:3b" does not support thinking'),
    ("POST", "/api/chat", {"model": THINKER, "messages": HI, "think": "sometimes"}, 400,
     'invalid think value: "sometimes" (must be "high", "medium", "low", true, or false)'),
    ("POST", "/api/chat", {"model": CHAT, "messages": [{"role": "user", "content": "x", "images": ["aGk="]}]}, 400,
     "registry.ollama.ai/library/llama3.2:3b does not support vision"),
    ("POST", "/api/generate", {"model": CHAT, "prompt": "x", "options": {"num_ctx": "big"}}, 500,
     'option "num_ctx" must be of type integer'),
    ("POST", "/api/chat", {"model": CHAT, "messages": HI, "options": {"temperature": "hot"}}, 500,
     'option "temperature" must be of type float32'),
    ("POST", "/api/chat", {"model": CHAT, "messages": HI, "options": {"stop": [1]}}, 500,
     'option "stop" must be of an array of strings'),
    ("POST", "/api/chat", {"model": CHAT, "messages": HI, "options": {"use_mmap": 1}}, 500,
     'option "use_mmap" must be of type boolean'),
    ("POST", "/api/embed", {"model": EMBEDDER, "input": "x", "options": {"num_ctx": [1]}}, 500,
     'option "num_ctx" must be of type integer'),
    ("POST", "/api/generate", {"model": CHAT, "prompt": "x", "top_logprobs": 21}, 400,
     "top_logprobs must be between 0 and 20"),
    ("POST", "/api/chat", {"model": CHAT, "messages": HI, "top_logprobs": -1}, 400,
     "top_logprobs must be between 0 and 20"),
    ("POST", "/api/generate", {"model": CHAT, "prompt": "x", "keep_alive": "5x"}, 400,
     'time: unknown unit "x" in duration "5x"'),
    ("POST", "/api/generate", {"model": CHAT, "prompt": "x", "keep_alive": "10"}, 400,
     'time: missing unit in duration "10"'),
    ("POST", "/api/chat", {"model": CHAT, "messages": HI, "keep_alive": "soon"}, 400,
     'time: invalid duration "soon"'),
    ("POST", "/api/chat", {"model": CHAT, "messages": HI, "keep_alive": True}, 400, "Unsupported type: 'bool'"),
    ("POST", "/api/embed", {"model": EMBEDDER, "input": "x", "keep_alive": [1]}, 400,
     "Unsupported type: '[]interface {}'"),
    ("POST", "/api/chat", {"model": CHAT, "messages": HI, "stream": "yes"}, 400,
     "json: cannot unmarshal string into Go struct field ChatRequest.stream of type bool"),
    ("POST", "/api/chat", {"model": CHAT, "messages": [{"role": "user", "content": ["a"]}]}, 400,
     "json: cannot unmarshal array into Go struct field ChatRequest.messages.content of type string"),
    ("POST", "/api/generate", {"model": CHAT, "prompt": 5}, 400,
     "json: cannot unmarshal number into Go struct field GenerateRequest.prompt of type string"),
    ("POST", "/api/generate", {"model": CHAT, "prompt": "x", "raw": True, "system": "s"}, 400,
     "raw mode does not support template, system, or context"),
    ("POST", "/api/embed", {"model": EMBEDDER, "input": 5}, 400, "invalid input type"),
    ("POST", "/api/embed", {"model": EMBEDDER, "input": ["a", 1]}, 400, "invalid input type"),
    ("POST", "/api/embed", {"model": EMBEDDER, "input": "word " * 600, "truncate": False}, 400,
     "the input length exceeds the context length"),
    ("POST", "/api/generate", {"model": CHAT, "prompt": "x", "format": "xml", "stream": False}, 500,
     'invalid format: "\\"xml\\""; expected "json" or a valid JSON Schema object'),
    ("DELETE", "/api/delete", {"model": "bad name!"}, 400, 'name "bad name!" is invalid'),
    ("DELETE", "/api/delete", {"model": "nope"}, 404, "model 'nope' not found"),
    ("POST", "/api/copy", {"source": CHAT, "destination": ""}, 400, 'destination "" is invalid'),
    ("POST", "/api/pull", {"model": ""}, 400, "invalid model name"),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "error"), CASES,
                         ids=[f"{c[1]}-{c[4][:40]}" for c in CASES])
def test_it_answers_with_ollamas_status_and_error_text(http, method, path, body, status, error):
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = http.request(method, path, content=content)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    assert response.json() == {"error": error}


def test_it_ignores_unknown_options_and_fields(http):
    body = {"model": CHAT, "prompt": "x", "stream": False, "options": {"mirostat": 2, "num_predict": 2},
            "unknown_field": {"a": 1}}
    response = http.post("/api/generate", json=body)
    assert response.status_code == 200 and response.json()["eval_count"] == 2


def test_it_answers_unknown_routes_and_methods_like_gin(http):
    for method, path in (("GET", "/api/nothing"), ("GET", "/api/chat"), ("POST", "/api/tags"), ("HEAD", "/api/ps")):
        response = http.request(method, path)
        assert response.status_code == 404
        if method != "HEAD":
            assert response.text == "404 page not found"


def test_it_raises_clean_response_errors_in_the_official_client(sim):
    client = ollama.Client(host=sim.url)
    with pytest.raises(ollama.ResponseError) as caught:
        client.chat(model="nope", messages=HI)
    assert caught.value.status_code == 404 and caught.value.error == "model 'nope' not found"
    with pytest.raises(ollama.ResponseError) as caught:
        client.embed(model="nope", input="x")
    assert caught.value.error == 'model "nope" not found, try pulling it first'
    with pytest.raises(ollama.ResponseError) as caught:
        client.chat(model=CODER, messages=HI, tools=TOOLS)
    assert caught.value.status_code == 400


def test_it_appends_an_error_line_mid_stream_and_keeps_200(http):
    body = {"model": CHAT, "messages": HI, "options": {"sim_fail_after_tokens": 3}}
    response = http.post("/api/chat", json=body)
    assert response.status_code == 200
    lines = ndjson(response.text)
    assert len(lines) == 4
    assert all(line["done"] is False for line in lines[:3])
    assert lines[3] == {"error": RUNNER_STOPPED}


def test_it_makes_the_official_client_raise_with_status_minus_one_mid_stream(sim):
    sim.set_faults(CHAT, fail_after_tokens=2, error_message="boom")
    parts = []
    with pytest.raises(ollama.ResponseError) as caught:
        for part in ollama.Client(host=sim.url).chat(model=CHAT, messages=HI, stream=True):
            parts.append(part)
    assert caught.value.status_code == -1 and caught.value.error == "boom"
    assert len(parts) == 2
    assert sim.model_stats(CHAT)["injected_faults"] == 1
    assert sim.model_stats(CHAT)["errors"] == 1


def test_it_turns_an_error_before_the_first_token_into_a_500(http):
    streaming = http.post("/api/generate", json={"model": CHAT, "prompt": "x", "options": {"sim_fail_after_tokens": 0}})
    assert streaming.status_code == 500
    assert streaming.json() == {"error": RUNNER_STOPPED}
    assert streaming.headers["content-type"] == "application/json"  # streamResponse set it, so no charset
    blocking = http.post("/api/chat", json={"model": CHAT, "messages": HI, "stream": False,
                                            "options": {"sim_fail_after_tokens": 5}})
    assert blocking.status_code == 500 and blocking.json() == {"error": RUNNER_STOPPED}


def test_it_fails_a_load_with_a_500_and_recovers(sim, http):
    sim.set_faults(CODER, load_error="llama runner process has terminated: exit status 2")
    failed = http.post("/api/generate", json={"model": CODER, "prompt": "x"})
    assert failed.status_code == 500
    assert failed.json() == {"error": "llama runner process has terminated: exit status 2"}
    assert sim.model_stats(CODER)["load_failures"] == 1
    sim.set_faults(CODER, load_error=None)
    assert http.post("/api/generate", json={"model": CODER, "prompt": "x", "stream": False}).status_code == 200


GARBAGE = [b"\x00\xff\xfe", b"null", b"42", b'"text"', b"{}", b'{"model": null}', b'{"model": 1}',
           b'{"model": {"a": []}}', b'{"messages": "x"}', b'{"messages": [1]}', b'{"messages": [{"role": 5}]}',
           b'{"input": {"a": 1}}', b'{"options": []}', b'{"options": {"num_ctx": null}}', b'{"context": ["a"]}',
           b'{"images": ["not base64 !"]}', b'{"tools": {"a": 1}}', b'{"format": 5}', b'{"think": 3}',
           b'{"messages":[{"role":"assistant","tool_calls":[{"function":{"arguments":"{}"}}]}]}', b"[" * 50]


@pytest.mark.parametrize("path", ["/api/chat", "/api/generate", "/api/embed", "/api/embeddings", "/api/show",
                                  "/api/pull", "/api/copy", "/v1/chat/completions", "/v1/completions",
                                  "/v1/embeddings"])
def test_it_never_answers_garbage_with_a_traceback(sim, path):
    with httpx.Client(base_url=sim.url, timeout=10) as client:
        for raw in GARBAGE:
            model_body = raw.replace(b"{", b'{"model": "llama3.2:3b", ', 1) if raw.startswith(b"{") and raw != b"{}" else raw
            for body in {raw, model_body}:
                response = client.post(path, content=body)
                assert response.status_code in (200, 400, 404, 500), (path, body, response.text)
                if response.status_code != 200:
                    error = response.json()["error"]
                    message = error["message"] if isinstance(error, dict) else error
                    assert message and "Traceback" not in message and "internal simulator error" not in message, (
                        path, body, message)
    assert "Traceback" not in sim.output()


def test_it_times_out_a_stalled_load_after_the_load_timeout():
    with SimulatorProcess(sim_config({"load_timeout": "300ms"})) as sim:
        sim.set_faults(CHAT, load_stalls=True)
        response = httpx.post(sim.url + "/api/generate", json={"model": CHAT, "prompt": "x"}, timeout=30)
        stats = sim.model_stats(CHAT)
    assert response.status_code == 500
    assert response.json()["error"].startswith("timed out waiting for llama-server to start - ")
    assert stats["load_failures"] == 1 and stats["loads"] == 0


def test_clear_without_a_model_clears_every_fault(sim, http):
    sim.set_faults(CHAT, fail_after_tokens=0, error_message="boom")
    sim.set_faults(CODER, load_error="no")
    assert len(http.get("/sim/faults").json()) == 2
    response = http.post("/sim/faults", json={"clear": True})
    assert response.status_code == 200 and response.json() == {}
    assert http.get("/sim/faults").json() == {}
    reply = http.post("/api/generate", json={"model": CHAT, "prompt": "x", "stream": False,
                                             "options": {"num_predict": 1}})
    assert reply.status_code == 200 and reply.json()["eval_count"] == 1
