"""Per-model sampling defaults (Model.default_*), filled into a request that left them out.

An operator sets them when a model's own defaults do not suit the gateway's users: a cap on reply
length for a shared GPU, a stop sequence a template forgets, a lower temperature for a code model.
What a request sends always wins; only a parameter the request did not send (or sent as null, which
the schemas treat as absent) is filled. The request is copied, never changed in place: the parsed
body may be logged or retried with the client's own values.
"""

from __future__ import annotations

from typing import TypeVar

from inference.openai_api.schemas import ChatCompletionRequest, CompletionRequest
from inference.registry import ModelRoute

Body = TypeVar("Body")


def _max_tokens_missing(body: ChatCompletionRequest | CompletionRequest) -> bool:
    # Chat has two names for the cap (max_completion_tokens is the new one); either one is explicit.
    if isinstance(body, ChatCompletionRequest):
        return body.max_output_tokens is None
    return body.max_tokens is None


def default_updates(body: ChatCompletionRequest | CompletionRequest, route: ModelRoute) -> dict[str, object]:
    """The fields the model's defaults would fill in this request: those it left out and the model has."""
    updates: dict[str, object] = {}
    if body.temperature is None and route.default_temperature is not None:
        updates["temperature"] = route.default_temperature
    if body.top_p is None and route.default_top_p is not None:
        updates["top_p"] = route.default_top_p
    if _max_tokens_missing(body) and route.default_max_tokens is not None:
        updates["max_tokens"] = route.default_max_tokens
    # An explicit empty list counts as sent: the client asked for no stop sequences.
    if body.stop is None and route.default_stop:
        updates["stop"] = list(route.default_stop)
    return updates


def apply_model_defaults(body: Body, route: ModelRoute) -> Body:
    """The request with the model's defaults filled where it left them out; the same object when there is
    nothing to fill or the request has no sampling parameters (embeddings)."""
    if not isinstance(body, ChatCompletionRequest | CompletionRequest):
        return body
    updates = default_updates(body, route)
    if not updates:
        return body
    return body.model_copy(update=updates)
