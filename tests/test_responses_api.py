"""POST /v1/responses (stateless), with the real OpenAI SDK against the live server and the simulator:
answers, conversations of items, a function tool round trip, structured output, the cut-off answer, both
ways to stream, what is refused, and the usage record it leaves like any chat request."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
import redis
from openai.types.responses import Response
from pydantic import BaseModel

from inference.engines.parts import Part, ToolCall
from inference.openai_api.responses_format import ResponseEvents, whole_response
from tests.conftest import BROKEN_MODEL, CHAT_MODEL, EMBED_MODEL
from tests.support.processes import eventually
from tests.support.usage import usage_entries

WEATHER = {"type": "function", "name": "get_weather", "description": "Weather for a city", "strict": True,
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                          "additionalProperties": False}}
TIME = {"type": "function", "name": "get_time",
        "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]}}


@pytest.fixture
def client(base_url, world) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url, api_key=world.alice_key, max_retries=0)


def post(base_url: str, key: str, body: dict) -> httpx.Response:
    return httpx.post(base_url + "/responses", headers={"Authorization": f"Bearer {key}"}, json=body, timeout=30)


def test_it_answers_a_string_input_with_a_response_object(base_url, world, client):
    raw = post(base_url, world.alice_key, {"model": CHAT_MODEL, "input": "Tell me about the sea.",
                                           "metadata": {"ticket": "42"}})
    assert raw.status_code == 200 and raw.headers["content-type"] == "application/json"
    body = raw.json()
    assert "output_text" not in body  # the SDKs' own convenience, not the wire format
    response = Response.model_validate(body)  # strict: every field the SDK's model requires is there
    assert response.id.startswith("resp_") and response.object == "response" and response.status == "completed"
    assert response.model == CHAT_MODEL and response.metadata == {"ticket": "42"} and response.store is False
    (message,) = response.output
    assert message.type == "message" and message.role == "assistant" and message.status == "completed"
    assert message.content[0].type == "output_text" and message.content[0].text
    usage = response.usage
    assert usage.input_tokens > 0 and usage.output_tokens > 0
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens

    again = client.responses.create(model=CHAT_MODEL, input="Tell me about the sea.")
    assert again.output_text and again.id != response.id


def test_it_takes_a_conversation_of_items_with_instructions(client):
    response = client.responses.create(model=CHAT_MODEL, instructions="Answer briefly.", temperature=0.2, top_p=0.9,
                                       user="someone", input=[
        {"role": "developer", "content": "Be kind."},
        {"role": "user", "content": [{"type": "input_text", "text": "Hello"}]},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Hi!"}]},
        {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "They want weather."}]},
        {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
        {"role": "user", "content": "And now?"},
    ])
    assert response.status == "completed" and response.output_text
    assert response.instructions == "Answer briefly." and response.temperature == 0.2 and response.user == "someone"

    # An image reaches the model as an image: this one cannot see, and says so.
    with pytest.raises(openai.BadRequestError, match="does not support image input"):
        client.responses.create(model=CHAT_MODEL, input=[{"role": "user", "content": [
            {"type": "input_text", "text": "What is this?"},
            {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo="}]}])


def test_it_completes_a_function_tool_round_trip(client):
    conversation: list = [{"role": "user", "content": "Weather in Rome? use get_weather"}]
    first = client.responses.create(model=CHAT_MODEL, input=conversation, tools=[WEATHER, TIME])
    calls = [item for item in first.output if item.type == "function_call"]
    assert [call.name for call in calls] == ["get_weather"]
    assert calls[0].call_id.startswith("call_") and isinstance(json.loads(calls[0].arguments)["city"], str)
    assert first.tools[0].name == "get_weather" and first.parallel_tool_calls is True

    conversation += [item.model_dump(exclude_none=True) for item in first.output]
    conversation.append({"type": "function_call_output", "call_id": calls[0].call_id, "output": "22 degrees"})
    second = client.responses.create(model=CHAT_MODEL, input=conversation, tools=[WEATHER, TIME])
    assert second.status == "completed" and second.output_text
    assert not [item for item in second.output if item.type == "function_call"]


def test_it_calls_only_the_function_tool_choice_names(client):
    response = client.responses.create(model=CHAT_MODEL, input="What time is it in Paris? use get_time",
                                       tools=[WEATHER, TIME], tool_choice={"type": "function", "name": "get_weather"})
    assert [item.name for item in response.output if item.type == "function_call"] == ["get_weather"]


class City(BaseModel):
    name: str
    population: int
    districts: list[str]


def test_it_returns_json_valid_for_a_text_format_schema(client):
    parsed = client.responses.parse(model=CHAT_MODEL, input="Describe a city.", text_format=City)
    assert isinstance(parsed.output_parsed, City)
    assert parsed.text.format.type == "json_schema"
    as_object = client.responses.create(model=CHAT_MODEL, input="A city, in JSON.", text={"format": {"type": "json_object"}})
    assert isinstance(json.loads(as_object.output_text), dict)


def test_it_reports_a_cut_off_answer_as_incomplete(client):
    response = client.responses.create(model=CHAT_MODEL, input="Tell me about the sea.", max_output_tokens=5)
    assert response.status == "incomplete" and response.incomplete_details.reason == "max_output_tokens"
    assert response.usage.output_tokens == 5 and response.max_output_tokens == 5
    assert response.output[0].status == "incomplete"


def test_the_sdk_stream_helper_reads_every_event_and_the_final_response(client):
    with client.responses.stream(model=CHAT_MODEL, input="Tell me about the sea.") as stream:
        events = list(stream)
        final = stream.get_final_response()
    types = [event.type for event in events]
    assert types[:5] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added", "response.output_text.delta"]
    assert types[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          "response.completed"]
    assert [event.sequence_number for event in events] == list(range(len(events)))
    deltas = "".join(event.delta for event in events if event.type == "response.output_text.delta")
    assert final.status == "completed" and final.output_text == deltas
    assert final.usage.output_tokens > 0 and final.id == events[0].response.id


def test_a_streamed_function_call_comes_as_its_own_events(base_url, world, client):
    stream = client.responses.create(model=CHAT_MODEL, input="Weather in Rome? use get_weather", tools=[WEATHER],
                                     stream=True)
    events = list(stream)
    types = [event.type for event in events]
    assert "response.function_call_arguments.delta" in types and types[-1] == "response.completed"
    done = next(event for event in events if event.type == "response.function_call_arguments.done")
    call = events[-1].response.output[-1]
    assert call.type == "function_call" and call.name == "get_weather" and call.arguments == done.arguments

    # On the wire every event names its type on an `event:` line, as the SDKs and Codex expect.
    with httpx.stream("POST", base_url + "/responses", headers={"Authorization": f"Bearer {world.alice_key}"},
                      json={"model": CHAT_MODEL, "input": "Hi", "stream": True, "max_output_tokens": 4},
                      timeout=30) as raw:
        blocks = [block for block in raw.read().decode().split("\n\n") if block and not block.startswith(":")]
    for block in blocks:
        event_line, data_line = block.split("\n")
        assert event_line == "event: " + json.loads(data_line.removeprefix("data: "))["type"]
    assert blocks[-1].startswith("event: response.incomplete\n")


def test_a_failure_in_the_middle_of_a_stream_is_an_error_then_response_failed(client, simulator):
    events = list(client.responses.create(model=BROKEN_MODEL, input="Tell me about the sea.", stream=True))
    types = [event.type for event in events]
    assert types[0] == "response.created" and types[-2:] == ["error", "response.failed"]
    failed = events[-1].response
    assert failed.status == "failed" and failed.error.message == events[-2].message
    assert "unexpectedly" not in failed.error.message  # in Gatehouse's words, not the node's


def test_hosted_tools_never_reach_a_model_and_do_not_lock_clients_out(client):
    # Codex sends a web_search and a namespace tool with every request: they are left out, the function
    # tools stay, and the answer comes back.
    tools = [{"type": "web_search"}, {"type": "namespace", "name": "mcp", "tools": []},
             {"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {}}}]
    response = client.responses.create(model=CHAT_MODEL, input="Hi", tools=tools)
    assert response.status == "completed"
    assert [tool.type for tool in response.tools] == ["function"]


@pytest.mark.parametrize("extra,param", [
    ({"previous_response_id": "resp_123"}, "previous_response_id"),
    ({"store": True}, "store"),
    ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input.0.type"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "https://example.org/a.png"}]}]},
     "input.0.content.0.image_url"),
    ({"reasoning": {"effort": "enormous"}}, "reasoning.effort"),
])
def test_it_refuses_what_it_cannot_do_with_a_clear_400(client, extra, param):
    body = {"model": CHAT_MODEL, "input": "Hi", **extra}
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(**body)
    error = refused.value.body
    assert refused.value.status_code == 400 and error["param"] == param and error["type"] == "invalid_request_error"
    if param in ("store", "previous_response_id"):
        assert "does not store responses" in error["message"]


def test_it_refuses_an_embedding_model(client):
    with pytest.raises(openai.BadRequestError, match="embedding model"):
        client.responses.create(model=EMBED_MODEL, input="Hi")


def test_a_response_is_recorded_like_a_chat_completion(base_url, world, redis_server, django_db_blocker):
    from django.contrib.auth import get_user_model

    from apiaccess.models import ApiKey

    with django_db_blocker.unblock():
        person = get_user_model().objects.create_user("responses-usage", password="pw")
        _, key = ApiKey.issue(person, name="codex")
    response = post(base_url, key, {"model": CHAT_MODEL, "input": "Hi", "stream": False}).json()
    store = redis.Redis.from_url(redis_server.url, decode_responses=True)

    def record():
        return next((fields for fields in usage_entries(store) if fields["user"] == str(person.pk)), None)

    fields = eventually(record, what="the usage record of the response")
    assert (fields["model"], fields["status"]) == (CHAT_MODEL, "200")
    assert int(fields["completion_tokens"]) == response["usage"]["output_tokens"]


def test_a_thinking_answer_starts_with_a_reasoning_item():
    # No model of the shared simulator thinks; the rendering of a thinking answer is checked on its own.
    answer = Part(text="Paris.", thinking="The capital of France.", tool_calls=(ToolCall("f", "{}"),), done=True,
                  finish_reason="stop", prompt_tokens=3, completion_tokens=4)
    echo = {"model": "m", "parallel_tool_calls": True, "tool_choice": "auto", "tools": []}
    whole = Response.model_validate(whole_response("resp_1", 1, echo, answer, True))
    assert [item.type for item in whole.output] == ["reasoning", "message", "function_call"]
    assert whole.output[0].summary[0].text == "The capital of France." and whole.output_text == "Paris."

    events = ResponseEvents("resp_1", 1, echo, parallel_tool_calls=True)
    wire = events.opening() + events.feed(0, Part(thinking="The capital")) + events.feed(0, Part(thinking=" of France."))
    wire += events.feed(0, Part(text="Paris.", done=True, finish_reason="stop")) + events.closing()
    payloads = [json.loads(block.split(b"\ndata: ")[1]) for block in wire]
    types = [payload["type"] for payload in payloads]
    assert types[2:5] == ["response.output_item.added", "response.reasoning_summary_part.added",
                          "response.reasoning_summary_text.delta"]
    assert "response.reasoning_summary_text.done" in types and types[-1] == "response.completed"
    final = Response.model_validate(payloads[-1]["response"])
    assert final.output[0].summary[0].text == "The capital of France." and final.output_text == "Paris."

    cut_off = ResponseEvents("resp_2", 1, echo, parallel_tool_calls=True)
    wire = cut_off.opening() + cut_off.feed(0, Part(thinking="Hm", done=True, finish_reason="length")) + cut_off.closing()
    final = Response.model_validate(json.loads(wire[-1].split(b"\ndata: ")[1])["response"])
    assert final.status == "incomplete" and [item.type for item in final.output] == ["reasoning", "message"]
