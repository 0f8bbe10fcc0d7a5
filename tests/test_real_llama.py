"""Real inference through Gatehouse: a real llama.cpp server (llama-server, SmolLM2-135M) as an
OpenAI-compatible node, beside the Ollama simulator as an Ollama node, with the real `openai` SDK as
the client. The model's text differs between llama.cpp builds, so these tests assert on structure,
status and counts, never on what the model says.

The chat server has fewer slots (2) than the burst sends, so the queue bound is checked where it
matters, at the server: its own queue (`llamacpp:requests_deferred`) must stay empty, because Gatehouse
never sends more than the server's slots.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest

from common.store import keys
from tests.support.llama import LlamaServer
from tests.support.processes import eventually
from tests.support.stack import Stack, sim_config

CHAT = "smollm2"
EMBED = "smollm2-embed"  # "embed" in its name: the catalogue takes it for an embedding model
SIM_MODEL = "simchat:latest"
SLOTS = 2
# SmolLM2's end-of-text and end-of-turn tokens, banned so a reply runs to max_tokens: a long stream to
# cancel, and counts that do not depend on when the model chooses to stop.
NO_EOS = {"0": -100, "2": -100}


@pytest.fixture(scope="module")
def stack(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock(), \
            LlamaServer(alias=CHAT, ctx_size=2048 * SLOTS, parallel=SLOTS) as chat, \
            LlamaServer(alias=EMBED, ctx_size=1024, parallel=1, embeddings=True) as embedder:
        with Stack({"sim": sim_config([SIM_MODEL])}, openai_nodes={"llama": chat.url, "llama-embed": embedder.url},
                   models={CHAT: {"max_queue": 16}}) as stack:
            stack.chat_server = chat
            yield stack


def metric(server: LlamaServer, name: str) -> float:
    return server.metrics()[f"llamacpp:{name}"]


def loaded(router: LlamaServer) -> set[str]:
    """The models a router-mode llama-server has in memory now (its /v1/models, asked directly)."""
    data = httpx.get(router.url + "/v1/models", timeout=5).json()["data"]
    return {m["id"] for m in data if m["status"]["value"] == "loaded"}


def test_the_catalogue_reads_the_servers_models_slots_and_context(stack):
    from inference.models import Model

    chat = Model.objects.get(ollama_name=CHAT)
    # llama-server's /props says 2 slots and /v1/models says 2048 tokens each: the queue bound and the
    # context every request is held to come from the server itself.
    assert (chat.kind, chat.concurrency, chat.context_length) == ("chat", SLOTS, 2048)
    assert Model.objects.get(ollama_name=EMBED).kind == "embedding"
    listed = {m.id for m in stack.client().models.list()}
    assert {CHAT, EMBED, SIM_MODEL} <= listed


def test_a_chat_completion_comes_back_whole_with_usage(stack):
    reply = stack.client().chat.completions.create(
        model=CHAT, messages=[{"role": "user", "content": "Say hello."}], max_tokens=12, logit_bias=NO_EOS)
    choice = reply.choices[0]
    assert (reply.object, reply.model, choice.message.role) == ("chat.completion", CHAT, "assistant")
    assert choice.message.content and choice.finish_reason == "length"
    assert reply.usage.completion_tokens == 12 and reply.usage.prompt_tokens > 0
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + 12


def test_a_streamed_chat_relays_chunks_then_one_usage_chunk(stack):
    chunks = list(stack.client().chat.completions.create(
        model=CHAT, messages=[{"role": "user", "content": "Count to five."}], max_tokens=10, logit_bias=NO_EOS,
        stream=True, stream_options={"include_usage": True}))
    deltas = [c for c in chunks if c.choices]
    assert deltas[0].choices[0].delta.role == "assistant"
    assert len({c.id for c in chunks}) == 1
    assert "".join(c.choices[0].delta.content or "" for c in deltas)
    assert deltas[-1].choices[0].finish_reason == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 10


def test_n_choices_are_separate_calls_each_with_its_own_answer(stack):
    reply = stack.client().chat.completions.create(
        model=CHAT, messages=[{"role": "user", "content": "A word."}], max_tokens=4, n=3, logit_bias=NO_EOS,
        temperature=1.0)
    assert [c.index for c in reply.choices] == [0, 1, 2]
    assert reply.usage.completion_tokens == 12  # 4 for each choice


def test_a_legacy_completion_and_its_stream(stack):
    client = stack.client()
    whole = client.completions.create(model=CHAT, prompt="Once upon a time", max_tokens=8, logit_bias=NO_EOS)
    assert whole.object == "text_completion" and whole.choices[0].text
    assert (whole.choices[0].finish_reason, whole.usage.completion_tokens) == ("length", 8)
    streamed = list(client.completions.create(model=CHAT, prompt="Once upon a time", max_tokens=8,
                                              logit_bias=NO_EOS, stream=True))
    assert "".join(c.choices[0].text for c in streamed if c.choices)
    assert streamed[-1].choices[0].finish_reason == "length"


def test_embeddings_from_the_embedding_server(stack):
    result = stack.client().embeddings.create(model=EMBED, input=["a cat", "a dog", ""])
    assert [d.index for d in result.data] == [0, 1, 2]
    assert {len(d.embedding) for d in result.data} == {576}  # SmolLM2-135M's hidden size
    assert result.usage.prompt_tokens > 0
    shortened = stack.client().embeddings.create(model=EMBED, input="a cat", dimensions=64)
    assert len(shortened.data[0].embedding) == 64


def test_a_prompt_longer_than_the_context_is_context_length_exceeded(stack):
    with pytest.raises(openai.BadRequestError) as info:
        stack.client(max_retries=0).chat.completions.create(
            model=CHAT, messages=[{"role": "user", "content": "word " * 3000}], max_tokens=4)
    error = info.value.body
    assert info.value.status_code == 400 and error["code"] == "context_length_exceeded"
    assert error["param"] == "messages"
    # Our wording with the server's numbers, not the server's own text.
    assert "maximum context length is 2048 tokens" in error["message"]
    assert "try increasing it" not in error["message"]
    assert stack.running(CHAT) == 0


def test_the_ollama_node_and_the_openai_node_serve_side_by_side(stack):
    client = stack.client()
    with ThreadPoolExecutor(4) as pool:
        replies = list(pool.map(
            lambda model: client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=5),
            [CHAT, SIM_MODEL, CHAT, SIM_MODEL]))
    assert [r.model for r in replies] == [CHAT, SIM_MODEL, CHAT, SIM_MODEL]
    assert all(r.choices[0].message.content for r in replies)


def test_a_burst_past_the_servers_slots_waits_in_gatehouse_not_in_the_server(stack):
    server = stack.chat_server
    busiest = {"processing": 0.0, "deferred": 0.0}
    done = threading.Event()

    def watch() -> None:  # the invariant, checked at the node for the whole burst
        while not done.is_set():
            busiest["processing"] = max(busiest["processing"], metric(server, "requests_processing"))
            busiest["deferred"] = max(busiest["deferred"], metric(server, "requests_deferred"))

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        client = stack.client(max_retries=0)
        with ThreadPoolExecutor(8) as pool:
            replies = list(pool.map(lambda i: client.chat.completions.create(
                model=CHAT, messages=[{"role": "user", "content": f"Story {i}."}], max_tokens=24,
                logit_bias=NO_EOS), range(8)))
    finally:
        done.set()
        watcher.join()
    assert all(r.usage.completion_tokens == 24 for r in replies)
    assert busiest["deferred"] == 0, "llama-server queued requests itself: Gatehouse sent more than its slots"
    assert 1 <= busiest["processing"] <= SLOTS
    assert stack.running(CHAT) == 0 and stack.waiting(CHAT) == 0


def test_a_client_that_leaves_stops_the_generation_and_frees_the_slot(stack):
    server = stack.chat_server
    stream = stack.client().chat.completions.create(
        model=CHAT, messages=[{"role": "user", "content": "Write a long story."}], max_tokens=1500,
        logit_bias=NO_EOS, stream=True)
    received = 0
    for chunk in stream:
        received += bool(chunk.choices and chunk.choices[0].delta.content)
        if received >= 5:
            break
    assert metric(server, "requests_processing") == 1
    left_at = time.monotonic()
    stream.close()
    # 1,500 tokens would take many seconds more: the server stops as soon as Gatehouse closes its call.
    eventually(lambda: metric(server, "requests_processing") == 0, what="llama-server stopped generating",
               timeout=5)
    eventually(lambda: stack.running(CHAT) == 0, what="the slot released", timeout=5)
    assert time.monotonic() - left_at < 5


# -- engines that need a setting of their own ------------------------------------------------------------


def test_a_router_mode_server_has_its_models_loaded_and_swapped_by_gatehouse(django_db_setup, django_db_blocker,
                                                                             tmp_path):
    with django_db_blocker.unblock(), LlamaServer(router_models=("smol-a", "smol-b"), ctx_size=2048 * SLOTS,
                                                  parallel=SLOTS) as router:
        assert loaded(router) == set()
        # Room for one of the two (each is guessed at its context x slots of KV cache): a swap each switch.
        with Stack({}, openai_nodes={"router": router.url}, budgets={"router": 700 << 20}) as stack:
            from inference.models import Model

            assert {(m.concurrency, m.context_length) for m in Model.objects.filter(ollama_name__startswith="smol-")} \
                == {(SLOTS, 2048)}
            client = stack.client()
            first = client.chat.completions.create(model="smol-a", messages=[{"role": "user", "content": "hi"}],
                                                   max_tokens=3)
            assert first.choices[0].message.content and loaded(router) == {"smol-a"}
            client.chat.completions.create(model="smol-b", messages=[{"role": "user", "content": "hi"}], max_tokens=3)
            # Gatehouse unloaded smol-a to make room before it loaded smol-b; the router's own LRU (4 models)
            # would have kept both.
            assert loaded(router) == {"smol-b"}
            assert stack.placement("smol-b") == {router.url: "ready"}
            eventually(lambda: stack.placement("smol-a") == {}, what="smol-a placement gone", timeout=5)


def test_a_node_that_wants_a_key_gets_it_from_a_secret_file_and_a_wrong_one_is_a_502(
        django_db_setup, django_db_blocker, tmp_path):
    secret = tmp_path / "llama-key"
    secret.write_text("s3cret-key\n")
    with django_db_blocker.unblock(), LlamaServer(alias="keyed", parallel=1, extra_args=["--api-key", "s3cret-key"]) \
            as keyed:
        with Stack({}, openai_nodes={"keyed": {"url": keyed.url, "api_key_file": str(secret)}}) as stack:
            reply = stack.client().chat.completions.create(
                model="keyed", messages=[{"role": "user", "content": "hi"}], max_tokens=3)
            assert reply.choices[0].message.content
            # A rotated secret is read again within the catalogue snapshot's couple of seconds, no restart.
            secret.write_text("the-wrong-key")
            refusals: list[openai.APIStatusError] = []

            def refused() -> bool:
                try:
                    stack.client(max_retries=0).chat.completions.create(
                        model="keyed", messages=[{"role": "user", "content": "hi"}], max_tokens=3)
                except openai.APIStatusError as exc:
                    refusals.append(exc)
                    return True
                return False

            eventually(refused, what="the wrong key refused", timeout=10)
            assert refusals[-1].status_code == 502
            # Our words, not the server's ("Invalid API Key"), and nothing held.
            assert "credentials" in refusals[-1].message and "Invalid API Key" not in refusals[-1].message
            assert stack.running("keyed") == 0


def test_a_killed_server_fails_over_to_the_other_one_serving_the_model(django_db_setup, django_db_blocker):
    """Failover is the same for every engine: a server that stops answering is taken out, and calls that
    had not started run on the other server that lists the model."""
    with django_db_blocker.unblock(), LlamaServer(alias="twin", parallel=SLOTS) as one, \
            LlamaServer(alias="twin", parallel=SLOTS) as two:
        with Stack({}, openai_nodes={"one": one.url, "two": two.url}) as stack:
            client = stack.client(max_retries=0)
            ask = lambda i: client.chat.completions.create(  # noqa: E731
                model="twin", messages=[{"role": "user", "content": f"Hi {i}"}], max_tokens=16, logit_bias=NO_EOS)
            assert all(r.usage.completion_tokens == 16 for r in map(ask, range(2)))
            one.kill()
            with ThreadPoolExecutor(6) as pool:
                replies = list(pool.map(ask, range(6)))
            assert all(r.usage.completion_tokens == 16 for r in replies)
            assert stack.kv.hexists(keys.NODES_DOWN, one.url)
            assert stack.running("twin") == 0
