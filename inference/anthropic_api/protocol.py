"""The Messages API as a front protocol for the pipeline (inference/pipeline.py): its schema, the
canonical chat request made from a body (inference/anthropic_api/translate.py), and the canonical parts
rendered as a `message` or its event stream (inference/anthropic_api/format.py, stream.py).

The queue, the rate limits, usage records and failover are the pipeline's, the same as for OpenAI's routes.
"""

from __future__ import annotations

from typing import Any

from inference.accounting.metering import prompt_estimates
from inference.anthropic_api.format import MessageEvents, message, new_message_id
from inference.anthropic_api.schemas import MessagesRequest
from inference.anthropic_api.stream import message_events
from inference.anthropic_api.translate import chat_request
from inference.engines.request import CHAT, GenerationRequest
from inference.openai_api import context_overflow
from inference.openai_api.model_defaults import apply_model_defaults
from inference.openai_api.openai_protocol import require_generative
from inference.pipeline import Relay
from inference.registry import ModelRoute
from inference.streaming import event_stream_response
from inference.web.api import json_response


class MessagesProtocol:
    schema = MessagesRequest

    def canonical(self, body: MessagesRequest, route: ModelRoute) -> GenerationRequest:
        require_generative(route)
        return GenerationRequest(CHAT, apply_model_defaults(chat_request(body, route), route), route)

    def errors(self, route: ModelRoute):
        return context_overflow.reported_as_openai(route, param="messages")

    def render(self, request: GenerationRequest, relay: Relay) -> Any:
        model = request.body.model
        if relay.stream is not None:
            events = MessageEvents(new_message_id(), model, input_estimate=sum(prompt_estimates(request)))
            return event_stream_response(message_events(relay.stream, events), relay.headers)
        (answer,) = relay.answers
        return json_response(message(new_message_id(), model, answer), headers=relay.headers)


MESSAGES_PROTOCOL = MessagesProtocol()
