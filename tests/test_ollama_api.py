"""Ollama's native API under /ollama, with the official `ollama` Python client against the live server and
the Ollama simulator: what Continue's, Cline's and Open WebUI's Ollama connections send."""

from __future__ import annotations

import json

import httpx
import ollama
import pytest

from tests.conftest import BROKEN_MODEL, CHAT_MODEL, CODE_MODEL, EMBED_MODEL, THINK_MODEL
from tests.support.processes import eventually
from tests.test_edge import post_head, raw_exchange

USER = [{"role": "user", "content": "Tell me about the sea."}]
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


def client_for(gatehouse, key: str) -> ollama.Client:
    return ollama.Client(host=f"{gatehouse.url}/ollama", headers={"Authorization": f"Bearer {key}"}, timeout=30)


@pytest.fixture
def client(gatehouse, world) -> ollama.Client:
    return client_for(gatehouse, world.alice_key)


def test_it_answers_the_probes_clients_send_first(gatehouse):
    for url in (f"{gatehouse.url}/ollama", f"{gatehouse.url}/ollama/"):
        response = httpx.get(url, timeout=10)
        assert response.status_code == 200 and response.text == "Ollama is running"
    version = httpx.get(f"{gatehouse.url}/ollama/api/version", timeout=10)  # Open WebUI's connection check
    assert version.status_code == 200 and version.json()["version"]


def test_it_chats_without_streaming(client):
    reply = client.chat(model=CHAT_MODEL, messages=USER, options={"num_predict": 5, "temperature": 0.2})
    assert reply.done and reply.done_reason == "length"
    assert reply.message.role == "assistant" and reply.message.content
    assert reply.eval_count == 5 and reply.prompt_eval_count > 0 and reply.total_duration > 0
    assert reply.model == CHAT_MODEL


def test_it_streams_a_chat_as_ndjson(client):
    parts = list(client.chat(model=CHAT_MODEL, messages=USER, stream=True))
    assert len(parts) > 2 and all(not p.done for p in parts[:-1])
    final = parts[-1]
    assert final.done and final.done_reason == "stop"
    assert final.eval_count > 0 and final.prompt_eval_count > 0 and final.total_duration > 0
    assert "".join(p.message.content for p in parts)


def test_it_calls_tools_and_takes_their_results(client):
    reply = client.chat(model=CHAT_MODEL, messages=[{"role": "user", "content": "Weather in Oslo?"}],
                        tools=[WEATHER_TOOL])
    (call,) = reply.message.tool_calls
    assert call.function.name == "get_weather" and isinstance(call.function.arguments, dict)
    history = [{"role": "user", "content": "Weather in Oslo?"}, reply.message,
               {"role": "tool", "tool_name": "get_weather", "content": "sunny, 21 C"}]
    assert client.chat(model=CHAT_MODEL, messages=history, tools=[WEATHER_TOOL]).message.content


def test_it_constrains_the_answer_to_json(client):
    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    for fmt in ("json", schema):
        reply = client.chat(model=CHAT_MODEL, messages=USER, format=fmt)
        assert isinstance(json.loads(reply.message.content), dict)


def test_think_turns_a_reasoning_models_trace_on_and_off(client):
    thought = client.chat(model=THINK_MODEL, messages=USER, think="high")
    assert thought.message.thinking and thought.message.content
    assert not client.chat(model=THINK_MODEL, messages=USER, think=False).message.thinking
    streamed = list(client.generate(model=THINK_MODEL, prompt="Why?", think=True, stream=True))
    assert any(p.thinking for p in streamed) and streamed[-1].done


def test_it_generates_with_a_system_prompt_and_streams(client):
    reply = client.generate(model=CHAT_MODEL, prompt="Why is the sky blue?", system="Be brief.",
                            options={"num_predict": 4})
    assert reply.done and reply.response and reply.eval_count == 4
    parts = list(client.generate(model=CHAT_MODEL, prompt="Hello", stream=True))
    assert parts[-1].done and "".join(p.response for p in parts)


def test_it_fills_in_the_middle_on_a_model_with_insert(client):
    reply = client.generate(model=CODE_MODEL, prompt="def add(a, b):\n    ", suffix="\n    return c",
                            options={"num_predict": 6})
    assert reply.response and reply.eval_count == 6
    raw = client.generate(model=CODE_MODEL, prompt="<fim_prefix>x = <fim_suffix><fim_middle>", raw=True,
                          options={"num_predict": 3})
    assert raw.response and raw.eval_count == 3


def test_it_refuses_fill_in_the_middle_where_the_model_cannot(client):
    with pytest.raises(ollama.ResponseError) as refused:
        client.generate(model=CHAT_MODEL, prompt="def f(", suffix="):")
    assert refused.value.status_code == 400 and "does not support insert" in refused.value.error


def test_it_embeds_with_both_endpoints(client):
    vectors = client.embed(model=EMBED_MODEL, input=["first", "second"]).embeddings
    assert len(vectors) == 2 and len(vectors[0]) == 384
    assert len(client.embed(model=EMBED_MODEL, input="one", dimensions=8).embeddings[0]) == 8
    assert len(client.embeddings(model=EMBED_MODEL, prompt="legacy").embedding) == 384


def test_it_answers_a_preload_without_generating(client):
    assert client.chat(model=CHAT_MODEL).done_reason == "load"
    assert client.embed(model=EMBED_MODEL, input=[]).embeddings == []
    assert client.embeddings(model=EMBED_MODEL, prompt="").embedding == []
    with pytest.raises(ollama.ResponseError) as missing:
        client.generate(model="nope:1b")
    assert missing.value.status_code == 404 and missing.value.error == "model 'nope:1b' not found"


def test_the_list_shows_only_the_models_the_key_may_use(gatehouse, world, client):
    everything = {m.model for m in client.list().models}
    assert {CHAT_MODEL, CODE_MODEL, EMBED_MODEL} <= everything
    (only,) = client_for(gatehouse, world.bob_key).list().models
    assert only.model == CHAT_MODEL and only.details.family == "llama" and only.size > 0 and only.digest


def test_show_reports_the_context_gatehouse_serves(client):
    shown = client.show(CHAT_MODEL)
    assert "tools" in shown.capabilities and shown.details.family == "llama"
    context = shown.modelinfo["llama.context_length"]
    assert 0 < context < 131072  # Gatehouse's num_ctx, not the model's training maximum


def test_a_model_the_key_may_not_use_is_not_found(gatehouse, world):
    bob = client_for(gatehouse, world.bob_key)
    for call in (lambda: bob.chat(model=CODE_MODEL, messages=USER), lambda: bob.show(CODE_MODEL),
                 lambda: bob.embed(model="nope:latest", input="x")):
        with pytest.raises(ollama.ResponseError) as missing:
            call()
        assert missing.value.status_code == 404 and missing.value.error.startswith("model '")


def test_a_missing_or_wrong_key_is_refused_in_ollamas_shape(gatehouse, world):
    for key in ("", "sk-wrong", world.revoked_key):
        stranger = client_for(gatehouse, key) if key else ollama.Client(host=f"{gatehouse.url}/ollama")
        for call in (stranger.list, lambda c=stranger: c.chat(model=CHAT_MODEL, messages=USER)):
            with pytest.raises(ollama.ResponseError) as refused:
                call()
            assert refused.value.status_code == 401 and refused.value.error and "{" not in refused.value.error


def test_model_management_is_refused(client):
    for call in (lambda: client.pull(CHAT_MODEL), lambda: client.delete(CHAT_MODEL),
                 lambda: client.copy(CHAT_MODEL, "mine"), lambda: client.push(CHAT_MODEL)):
        with pytest.raises(ollama.ResponseError) as refused:
            call()
        assert refused.value.status_code == 403 and "administrators" in refused.value.error


def test_bad_input_is_a_clear_400_and_unknown_paths_a_404(gatehouse, world, client):
    with pytest.raises(ollama.ResponseError) as bad:
        client.chat(model=CHAT_MODEL, messages=USER, options={"temperature": 9})
    assert bad.value.status_code == 400 and "temperature" in bad.value.error
    headers = {"Authorization": f"Bearer {world.alice_key}"}
    for body in (b"not json", b"[]", b'{"model": 3}'):
        response = httpx.post(f"{gatehouse.url}/ollama/api/chat", content=body, headers=headers, timeout=10)
        assert response.status_code == 400 and isinstance(response.json()["error"], str)
    response = httpx.get(f"{gatehouse.url}/ollama/api/nothing", headers=headers, timeout=10)
    assert response.status_code == 404 and isinstance(response.json()["error"], str)
    assert response.headers["x-request-id"].startswith("req_")


def test_a_client_num_ctx_never_reaches_the_node(client, simulator):
    served = client.show(CHAT_MODEL).modelinfo["llama.context_length"]
    client.chat(model=CHAT_MODEL, messages=USER, options={"num_ctx": 2048, "num_predict": 2}, keep_alive=0)
    loaded = {m["name"]: m for m in httpx.get(f"{simulator.url}/api/ps", timeout=10).json()["models"]}
    assert loaded[CHAT_MODEL]["context_length"] == served
    # ps shows it as Gatehouse serves it, once the swap actor has polled the node.
    running = eventually(lambda: [m for m in client.ps().models if m.model == CHAT_MODEL], what="ps lists it")
    assert running[0].context_length == served


def test_the_edge_refuses_an_unauthenticated_body_in_ollamas_shape(gatehouse):
    # Half a megabyte announced, nothing sent: the 401 can only come before the body is read.
    status, _, body = raw_exchange(gatehouse.port, post_head(512 * 1024, "sk-wrong", "/ollama/api/chat"))
    assert status == 401 and isinstance(json.loads(body)["error"], str)


def test_an_error_after_the_stream_started_is_a_last_line_the_client_raises(client):
    parts = []
    with pytest.raises(ollama.ResponseError) as failed:
        for part in client.chat(model=BROKEN_MODEL, messages=USER, stream=True):
            parts.append(part)
    assert parts and "request id req_" in failed.value.error  # our words, with the id to quote


@pytest.fixture
def one_request_a_minute_key(world, django_db_blocker) -> str:
    from django.contrib.auth import get_user_model

    from apiaccess.models import ApiKey

    with django_db_blocker.unblock():
        user, _ = get_user_model().objects.get_or_create(username="ollie")
        key, plain = ApiKey.issue(user, name="ollama")
        ApiKey.objects.filter(pk=key.pk).update(requests_per_minute=1)
    return plain


def test_a_rate_limit_is_a_429_with_retry_after(gatehouse, one_request_a_minute_key):
    headers = {"Authorization": f"Bearer {one_request_a_minute_key}"}
    body = {"model": CHAT_MODEL, "messages": USER, "stream": False, "options": {"num_predict": 1}}
    answers = [httpx.post(f"{gatehouse.url}/ollama/api/chat", json=body, headers=headers, timeout=30)
               for _ in range(2)]
    assert [a.status_code for a in answers] == [200, 429]
    assert int(answers[1].headers["Retry-After"]) > 0 and isinstance(answers[1].json()["error"], str)


def test_a_full_queue_is_ollamas_busy_503_with_retry_after():
    import asyncio

    from django.test import RequestFactory

    from inference.ollama_api.views import ollama_endpoint
    from inference.scheduler.scheduling_errors import QueueFull

    @ollama_endpoint("POST")
    async def refused(request):
        raise QueueFull(CHAT_MODEL, waiting=8, retry_after_ms=2500)  # what admission raises

    response = asyncio.run(refused(RequestFactory().post("/ollama/api/chat")))
    assert response.status_code == 503 and response["Retry-After"] == "3"
    assert json.loads(response.content)["error"].startswith("server busy, please try again.")


OPENAI_NODE_MODEL = "ollama-front-openai:1b"


@pytest.fixture(scope="module")
def openai_node_stack(django_db_setup, django_db_blocker, gatehouse, world):
    """A stack whose only node is an OpenAI-compatible server (a simulator's /v1, as Ollama serves it)."""
    from tests.support.simulator import SimulatorProcess
    from tests.support.stack import Stack, sim_config

    with SimulatorProcess(sim_config([OPENAI_NODE_MODEL], tokens_per_second=0)) as server:
        with django_db_blocker.unblock():
            stack = Stack({}, openai_nodes={"oa": server.url}, users=("ann",))
        yield stack
        with django_db_blocker.unblock():
            stack.stop()
    # Its model was a row in the session's database: the shared server must have forgotten it before another
    # module lists models (its catalogue snapshot is a couple of seconds old at most).
    alice = client_for(gatehouse, world.alice_key)
    eventually(lambda: OPENAI_NODE_MODEL not in [m.model for m in alice.list().models],
               what="the stack's model gone from the shared server")


def test_an_ollama_client_reaches_a_model_on_an_openai_compatible_node(openai_node_stack):
    stack = openai_node_stack
    client = ollama.Client(host=f"{stack.webs[0].url}/ollama", headers=stack.headers("ann"), timeout=30)
    reply = client.chat(model=OPENAI_NODE_MODEL, messages=USER, options={"num_predict": 3})
    assert reply.message.content and reply.done and reply.eval_count == 3
    parts = list(client.generate(model=OPENAI_NODE_MODEL, prompt="Hello", stream=True))
    assert parts[-1].done and "".join(p.response for p in parts)
    assert OPENAI_NODE_MODEL in [m.model for m in client.list().models]


@pytest.mark.parametrize("path,body", [
    ("chat", {"model": CHAT_MODEL, "messages": [{"role": "wizard", "content": "hi"}]}),
    ("chat", {"model": CHAT_MODEL, "messages": [{"role": "assistant", "content": "", "images": ["iVBOR"]}]}),
    ("chat", {"model": CHAT_MODEL, "messages": USER, "tools": [{"type": "nope"}]}),
    ("chat", {"model": CHAT_MODEL, "messages": USER, "options": "fast"}),
    ("chat", {"model": CHAT_MODEL, "messages": USER, "format": 42}),
    ("chat", {"model": CHAT_MODEL, "messages": USER, "think": "extreme"}),
    ("generate", {"model": EMBED_MODEL, "prompt": "hi"}),
    ("generate", {"model": CODE_MODEL, "prompt": "x", "raw": True, "images": ["iVBOR"]}),
    ("embed", {"model": EMBED_MODEL, "input": [1, 2]}),
    ("embed", {"model": EMBED_MODEL, "input": "x", "dimensions": 100000}),
    ("show", {}),
])
def test_bad_bodies_get_a_400_saying_what_is_wrong(gatehouse, world, path, body):
    response = httpx.post(f"{gatehouse.url}/ollama/api/{path}", json={"stream": False, **body},
                          headers={"Authorization": f"Bearer {world.alice_key}"}, timeout=30)
    assert response.status_code == 400, response.text
    assert set(response.json()) == {"error"} and response.json()["error"]
