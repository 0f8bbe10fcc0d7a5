"""A prompt longer than the model's context (inference/openai_api/context_overflow.py): by default Gatehouse answers
OpenAI's 400 `context_length_exceeded` instead of letting the node cut the conversation; per model, an
admin can choose Ollama's cutting instead. End to end with the real openai SDK against the live server and
the simulator, which refuses or cuts as Ollama does."""

from __future__ import annotations

import json

import httpx
import ollama
import openai
import pytest

from inference.engines.ollama import request_error
from inference.openai_api.context_overflow import context_length_exceeded, request_fields
from inference.registry import ModelRoute
from tests.conftest import CHAT_MODEL
from tests.support.processes import eventually

CONTEXT = 8192  # DEFAULT_CONTEXT_LENGTH, what Gatehouse sends as num_ctx for the chat model
TOO_LONG = "word " * (CONTEXT + 500)  # one token per word in the simulator
LLAMA_SERVER_REFUSAL = ('{"error":{"code":400,"message":"request (8701 tokens) exceeds the available context size '
                        '(8192 tokens), try increasing it","type":"exceed_context_size_error",'
                        '"n_prompt_tokens":8701,"n_ctx":8192}}')


def route(policy: str) -> ModelRoute:
    return ModelRoute(public_id="m", ollama_name="m:latest", kind="chat", capabilities=("completion",),
                      context_length=CONTEXT, concurrency=4, max_queue=64, created=0, node_urls=(),
                      context_overflow=policy)


# -- the pieces --------------------------------------------------------------------------------------


def test_it_asks_the_node_to_refuse_rather_than_cut_unless_the_model_says_otherwise():
    assert request_fields(route("error")) == {"truncate": False, "shift": False}
    assert request_fields(route("truncate")) == {}


@pytest.mark.parametrize("node_text", [
    "the prompt is longer than the context length currently available to the model; shorten the prompt, "
    "adjust the context length in settings, or use a model with a longer context length",
    LLAMA_SERVER_REFUSAL,
    "the input length exceeds the context length",
])
def test_it_recognises_each_way_a_node_refuses_an_over_long_prompt(node_text):
    # As the client raises it: from the node's HTTP body, whose "error" is the refusal text.
    error = request_error(ollama.ResponseError(json.dumps({"error": node_text}), 400), "http://node", "m")
    assert (error.status, error.code) == (400, "context_length_exceeded")


def test_it_words_the_error_like_openai_with_the_nodes_numbers_when_it_has_them():
    counted = context_length_exceeded(route("error"), "messages", LLAMA_SERVER_REFUSAL)
    assert counted.message == ("This model's maximum context length is 8192 tokens. However, your messages "
                               "resulted in 8701 tokens. Please reduce the length of the messages.")
    uncounted = context_length_exceeded(route("error"), "prompt", "the prompt is longer than the context length")
    assert uncounted.message == ("This model's maximum context length is 8192 tokens, and your prompt does not "
                                 "fit in it. Please reduce the length of the prompt.")
    assert (uncounted.param, uncounted.type) == ("prompt", "invalid_request_error")


# -- end to end -----------------------------------------------------------------------------------------


def sdk(base_url: str, world) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url, api_key=world.alice_key, max_retries=0)


def assert_context_length_exceeded(caught: pytest.ExceptionInfo, param: str) -> None:
    error = caught.value
    assert error.status_code == 400
    assert error.code == "context_length_exceeded" and error.param == param and error.type == "invalid_request_error"
    assert f"maximum context length is {CONTEXT} tokens" in error.message


def test_it_refuses_an_over_long_chat_with_context_length_exceeded(base_url, world):
    client = sdk(base_url, world)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=CHAT_MODEL, messages=[{"role": "user", "content": TOO_LONG}])
    assert_context_length_exceeded(caught, "messages")
    with pytest.raises(openai.BadRequestError) as streamed:
        client.chat.completions.create(model=CHAT_MODEL, stream=True, messages=[
            {"role": "user", "content": TOO_LONG}, {"role": "assistant", "content": "ok"},
            {"role": "user", "content": "Short question?"}])  # Ollama would drop the long turn silently
    assert_context_length_exceeded(streamed, "messages")


def test_it_refuses_an_over_long_completion_prompt_with_param_prompt(base_url, world):
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(base_url, world).completions.create(model=CHAT_MODEL, prompt=TOO_LONG, max_tokens=2)
    assert_context_length_exceeded(caught, "prompt")


def test_it_stops_at_the_end_of_the_context_with_finish_reason_length(base_url, world):
    # Room for fewer tokens than the shortest natural reply: without context shift the node stops there.
    almost_full = "word " * (CONTEXT - 20)
    reply = sdk(base_url, world).chat.completions.create(
        model=CHAT_MODEL, messages=[{"role": "user", "content": almost_full}])
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage.prompt_tokens + reply.usage.completion_tokens == CONTEXT


def test_it_lets_ollama_cut_the_prompt_for_a_model_set_to_truncate(base_url, world, django_db_blocker):
    from inference.models import Model

    def chat() -> httpx.Response:
        return httpx.post(base_url + "/chat/completions", timeout=30, headers={"Authorization": f"Bearer {world.alice_key}"},
                          json={"model": CHAT_MODEL, "max_tokens": 2, "messages": [{"role": "user", "content": TOO_LONG}]})

    with django_db_blocker.unblock():
        Model.objects.filter(public_id=CHAT_MODEL).update(context_overflow=Model.ContextOverflow.TRUNCATE)
    try:
        # The live server refreshes its catalogue snapshot every couple of seconds.
        reply = eventually(lambda: (r := chat()).status_code == 200 and r, what="the model never switched to truncate",
                           interval=0.2)
        assert reply.json()["usage"]["prompt_tokens"] < CONTEXT  # the node cut the conversation to fit
    finally:
        with django_db_blocker.unblock():
            Model.objects.filter(public_id=CHAT_MODEL).update(context_overflow=Model.ContextOverflow.ERROR)
        eventually(lambda: chat().status_code == 400, what="the model never switched back to error", interval=0.2)


# -- the admin ------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_it_lets_an_admin_choose_per_model(client, django_user_model):
    from inference.models import Model

    model = Model.objects.create(public_id="admin-test", ollama_name="admin-test:latest")
    assert model.context_overflow == Model.ContextOverflow.ERROR  # OpenAI's behaviour unless changed
    client.force_login(django_user_model.objects.create_superuser("root", password="pw"))
    url = f"/admin/inference/model/{model.pk}/change/"
    page = client.get(url).content.decode()
    assert 'name="context_overflow"' in page and 'value="truncate"' in page
    form = {"public_id": model.public_id, "ollama_name": model.ollama_name, "kind": model.kind,
            "context_length": model.context_length, "concurrency": model.concurrency,
            "max_queue": model.max_queue, "enabled": "on", "context_overflow": "truncate",
            "nodemodel_set-TOTAL_FORMS": "0", "nodemodel_set-INITIAL_FORMS": "0"}
    response = client.post(url, form)
    assert response.status_code == 302, response.content.decode()[:2000]
    model.refresh_from_db()
    assert model.context_overflow == Model.ContextOverflow.TRUNCATE
