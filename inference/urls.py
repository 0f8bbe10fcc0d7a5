"""OpenAI-compatible routes, mounted under both /v1/ and /api/ (the base URL some portals publish)."""

from django.urls import path, re_path

from inference import views
from inference.api import api_not_found

urlpatterns = [
    path("models", views.list_models),
    # Ids may contain "/" (org/name): raw, or %2F which the server has already decoded to "/".
    path("models/<path:model_id>", views.retrieve_model),
    path("chat/completions", views.chat_completions),
    path("completions", views.completions),
    path("embeddings", views.embeddings),
    # Anything else under the API prefixes is a JSON 404. No match on a trailing "/", so Django's
    # APPEND_SLASH never redirects an API call (httpx would turn a redirected POST into a GET).
    re_path(r"^.*[^/]$", api_not_found),
]
