"""Ollama's native API, mounted at /ollama/ (the URL people paste as their Ollama server's).

Anything else under /ollama is a JSON 404 in Ollama's error shape (inference/web/middleware.py).
"""

from django.urls import path

from inference.ollama_api import views

urlpatterns = [
    path("", views.root),
    path("api/version", views.version),
    path("api/chat", views.chat),
    path("api/generate", views.generate),
    path("api/embed", views.embed),
    path("api/embeddings", views.embeddings),
    path("api/tags", views.tags),
    path("api/show", views.show),
    path("api/ps", views.ps),
    # Models are the administrators' to manage: these are refused with 403.
    path("api/pull", views.refused("pulling models")),
    path("api/push", views.refused("pushing models")),
    path("api/create", views.refused("creating models")),
    path("api/copy", views.refused("copying models")),
    path("api/delete", views.refused("deleting models")),
    path("api/blobs/<str:digest>", views.refused("uploading model files")),
]
