"""A model's default sampling (Model.default_*) fills what a request leaves out, and never what it sends:
as a pure function over the parsed request, and end to end through a real gateway and simulator."""

from __future__ import annotations

import json

import pytest

from inference.openai_api.model_defaults import apply_model_defaults
from inference.openai_api.schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    parse_body,
)
from inference.registry import ModelRoute
from tests.support.stack import Stack, sim_config

HELLO = [{"role": "user", "content": "hello"}]


def route(**defaults) -> ModelRoute:
    return ModelRoute(public_id="m:latest", ollama_name="m:latest", kind="chat", capabilities=("completion",),
                      context_length=2048, concurrency=1, max_queue=1, created=0, node_urls=(), **defaults)


def chat(**body) -> ChatCompletionRequest:
    return parse_body(ChatCompletionRequest, json.dumps({"model": "m:latest", "messages": HELLO, **body}).encode())


ALL_DEFAULTS = {"default_temperature": 0.2, "default_top_p": 0.9, "default_max_tokens": 64,
                "default_stop": ("</s>", "###")}


def test_a_request_that_sends_nothing_gets_every_default():
    filled = apply_model_defaults(chat(), route(**ALL_DEFAULTS))
    assert (filled.temperature, filled.top_p, filled.max_output_tokens, filled.stop) == (0.2, 0.9, 64,
                                                                                          ["</s>", "###"])
    assert filled.stop_list == ["</s>", "###"]


def test_what_a_request_sends_always_wins():
    sent = chat(temperature=1.5, top_p=0.5, max_tokens=7, stop="END")
    filled = apply_model_defaults(sent, route(**ALL_DEFAULTS))
    assert (filled.temperature, filled.top_p, filled.max_output_tokens, filled.stop) == (1.5, 0.5, 7, "END")


def test_zero_is_a_value_the_request_sent():
    filled = apply_model_defaults(chat(temperature=0, top_p=0), route(**ALL_DEFAULTS))
    assert (filled.temperature, filled.top_p) == (0, 0)


def test_max_completion_tokens_counts_as_sending_a_cap():
    filled = apply_model_defaults(chat(max_completion_tokens=5), route(**ALL_DEFAULTS))
    assert filled.max_output_tokens == 5


def test_null_means_left_out_and_an_empty_stop_list_means_no_stops():
    filled = apply_model_defaults(chat(temperature=None, stop=[]), route(**ALL_DEFAULTS))
    assert filled.temperature == 0.2
    assert filled.stop == [] and filled.stop_list == []


def test_only_the_defaults_the_model_has_are_filled():
    filled = apply_model_defaults(chat(), route(default_max_tokens=3))
    assert filled.max_output_tokens == 3
    assert filled.temperature is None and filled.top_p is None and filled.stop is None


def test_the_parsed_request_is_copied_not_changed():
    sent = chat()
    filled = apply_model_defaults(sent, route(**ALL_DEFAULTS))
    assert filled is not sent
    assert sent.temperature is None and sent.max_tokens is None and sent.stop is None
    assert apply_model_defaults(sent, route()) is sent  # nothing to fill: no copy at all


def test_legacy_completions_get_the_defaults_too():
    body = parse_body(CompletionRequest, b'{"model": "m:latest", "prompt": "def add("}')
    filled = apply_model_defaults(body, route(default_max_tokens=3, default_stop=("\n\n",)))
    assert filled.max_tokens == 3 and filled.stop == ["\n\n"]


def test_embedding_requests_pass_through_untouched():
    body = parse_body(EmbeddingRequest, b'{"model": "m:latest", "input": "hi"}')
    assert apply_model_defaults(body, route(**ALL_DEFAULTS)) is body


# -- end to end -------------------------------------------------------------------------------------

CAPPED = "defaults-capped:latest"  # default_max_tokens 3; its natural replies are longer


@pytest.fixture(scope="module")
def stack(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        world = Stack({"gpu": sim_config([CAPPED], tokens_per_second=1000, reply_tokens=10)},
                      models={CAPPED: {"default_max_tokens": 3}})
    yield world
    with django_db_blocker.unblock():
        world.stop()


def test_the_models_default_cap_ends_a_reply_that_asked_for_none(stack):
    reply = stack.client().chat.completions.create(model=CAPPED, messages=HELLO)
    assert reply.usage.completion_tokens <= 3
    assert reply.choices[0].finish_reason == "length"


def test_a_cap_the_request_sends_wins_over_the_models(stack):
    reply = stack.client().chat.completions.create(model=CAPPED, messages=HELLO, max_tokens=6)
    assert reply.usage.completion_tokens == 6
    reply = stack.client().chat.completions.create(model=CAPPED, messages=HELLO, max_completion_tokens=50)
    assert reply.usage.completion_tokens > 6 and reply.choices[0].finish_reason == "stop"


def test_legacy_completions_use_the_models_cap_instead_of_16(stack):
    reply = stack.client().completions.create(model=CAPPED, prompt="def add(")
    assert reply.usage.completion_tokens <= 3 and reply.choices[0].finish_reason == "length"
