"""What Gatehouse does to the Ollama node behind it, checked from the node's side with the official
`ollama` client and the simulator's stats: one num_ctx for everyone, tokens relayed as they come,
upstream work cancelled when the client leaves, and clear errors when a node is down."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import httpx
import ollama
import openai

from tests.conftest import CHAT_MODEL, CODE_MODEL, SLOW_MODEL
from tests.support.processes import eventually

USER = [{"role": "user", "content": "Tell me about mountains."}]


def test_it_pins_one_context_length_so_different_callers_never_reload_the_model(base_url, world, simulator):
    alice = openai.OpenAI(base_url=base_url, api_key=world.alice_key)
    bob = openai.OpenAI(base_url=base_url, api_key=world.bob_key)
    alice.chat.completions.create(model=CHAT_MODEL, messages=USER, max_tokens=2)
    loads_before = simulator.stats()["models"][CHAT_MODEL]["loads"]
    alice.chat.completions.create(model=CHAT_MODEL, messages=USER, max_tokens=3, temperature=0.1)
    bob.chat.completions.create(model=CHAT_MODEL, messages=USER, max_tokens=50, top_p=0.5, seed=4)
    alice.completions.create(model=CHAT_MODEL, prompt="Once", max_tokens=2)
    assert simulator.stats()["models"][CHAT_MODEL]["loads"] == loads_before, "a caller's options reloaded the model"
    running = {m.model: m for m in ollama.Client(host=simulator.url).ps().models}
    assert running[CHAT_MODEL].context_length == 8192  # DEFAULT_CONTEXT_LENGTH, sent as options.num_ctx
    # keep_alive (OLLAMA_KEEP_ALIVE=30m) is sent with every request, so Ollama's 5m default never applies.
    remaining = running[CHAT_MODEL].expires_at - datetime.now(UTC)
    assert remaining.total_seconds() > 25 * 60


def test_it_relays_tokens_as_they_are_generated(base_url, world):
    arrivals: list[float] = []
    start = time.monotonic()
    with httpx.stream("POST", base_url + "/chat/completions", timeout=30,
                      headers={"Authorization": f"Bearer {world.alice_key}"},
                      json={"model": SLOW_MODEL, "messages": USER, "max_tokens": 12, "stream": True}) as response:
        for line in response.iter_lines():
            if '"content":"' in line and '"content":""' not in line:
                arrivals.append(time.monotonic() - start)
    assert len(arrivals) == 12
    # At 20 tokens/s the 12 tokens take about 0.6 s to make; buffering would deliver them together.
    assert arrivals[-1] - arrivals[0] > 0.3, f"tokens arrived in a burst: {arrivals}"


def test_it_cancels_a_non_streaming_generation_when_the_client_gives_up(base_url, world, simulator):
    before = simulator.stats()["models"].get(SLOW_MODEL, {}).get("cancellations", 0)
    client = openai.OpenAI(base_url=base_url, api_key=world.alice_key, max_retries=0, timeout=0.5)
    try:
        client.chat.completions.create(model=SLOW_MODEL, messages=USER, max_tokens=1000)
    except openai.APITimeoutError:
        pass
    else:
        raise AssertionError("a 50 s generation finished within the 0.5 s timeout")
    eventually(lambda: simulator.stats()["models"][SLOW_MODEL]["cancellations"] > before
               and simulator.stats()["models"][SLOW_MODEL]["in_flight"] == 0,
               what="the upstream generation went on after the client left")


def test_it_keeps_serving_many_concurrent_streams(base_url, world):
    client = openai.OpenAI(base_url=base_url, api_key=world.alice_key)
    texts: list[str] = []

    def one(i: int) -> None:
        stream = client.chat.completions.create(model=CODE_MODEL, messages=USER, max_tokens=8, seed=i, stream=True)
        texts.append("".join(c.choices[0].delta.content or "" for c in stream))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(texts) == 16 and all(texts)


def test_it_answers_503_when_the_node_does_not_answer(base_url, world, django_db_blocker):
    from inference.models import Model, Node, NodeModel

    with django_db_blocker.unblock():
        dead = Node.objects.create(url="http://127.0.0.1:9", healthy=True)  # nothing listens on port 9
        ghost = Model.objects.create(public_id="ghost:latest", ollama_name="ghost:latest")
        NodeModel.objects.create(node=dead, model=ghost)
    try:
        client = openai.OpenAI(base_url=base_url, api_key=world.alice_key, max_retries=0)

        def failure():
            try:
                client.chat.completions.create(model="ghost:latest", messages=USER)
            except openai.NotFoundError:  # the server's catalogue snapshot is a moment old
                return None
            except openai.InternalServerError as error:
                return error
            raise AssertionError("a request to a dead node succeeded")

        error = eventually(failure, what="the server never saw the dead node's model", interval=0.2)
        assert error.status_code == 503
        assert "not reachable" in error.message
    finally:
        with django_db_blocker.unblock():
            ghost.delete()
            dead.delete()
        listed = lambda: {m.id for m in openai.OpenAI(base_url=base_url, api_key=world.alice_key).models.list()}  # noqa: E731
        eventually(lambda: "ghost:latest" not in listed(), what="the server kept listing a deleted model")
