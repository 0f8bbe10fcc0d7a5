"""`GET /v1/models` as Anthropic's SDKs and Claude Code (with CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY=1)
read it: asked with an `anthropic-version` header, the list is one page of Anthropic's model objects."""

from __future__ import annotations

from datetime import UTC, datetime

from inference.registry import ModelRoute


def model_info(route: ModelRoute) -> dict:
    created = datetime.fromtimestamp(route.created, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"type": "model", "id": route.public_id, "display_name": route.public_id, "created_at": created,
            "lifecycle": "active", "max_input_tokens": route.context_length or None}


def model_page(routes: list[ModelRoute]) -> dict:
    data = [model_info(route) for route in routes]
    return {"data": data, "has_more": False, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None}


def wants_anthropic_shape(request) -> bool:
    return bool(request.headers.get("anthropic-version"))
