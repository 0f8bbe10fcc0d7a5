"""OpenAI-compatible routes, mounted under both /v1/ and /api/ (the base URL some portals publish).

Anything else under those prefixes is a JSON 404 (inference/web/middleware.py). The API handler has no
CommonMiddleware, so APPEND_SLASH never redirects an API call (httpx would turn a POST into a GET).
"""

from django.urls import path

from inference import providers, views
from inference.anthropic_api import views as anthropic_views

urlpatterns = [
    path("models", views.list_models),
    # Ids may contain "/" (org/name): raw, or %2F which the server has already decoded to "/".
    path("models/<path:model_id>", views.retrieve_model),
    path("chat/completions", views.chat_completions),
    path("responses", views.responses),
    path("completions", views.completions),
    path("embeddings", views.embeddings),
    # Gatehouse's own: the servers behind the gateway (inference/providers.py). A node's name may hold "/".
    path("providers", providers.providers),
    path("providers/<path:provider_id>/models", providers.models_of_provider),
    # Anthropic's Messages API, for Claude Code and the anthropic SDKs (inference/anthropic_api/).
    path("messages", anthropic_views.messages),
    path("messages/count_tokens", anthropic_views.count_tokens),
]
