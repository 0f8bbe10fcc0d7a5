"""The Files and Batch APIs, mounted beside inference's OpenAI routes under /v1/ and /api/ (portal/urls.py)."""

from django.urls import path

from batches import views

urlpatterns = [
    path("files", views.files_root),
    path("files/<str:file_id>", views.file_detail),
    path("files/<str:file_id>/content", views.file_content),
    path("batches", views.batches_root),
    path("batches/<str:batch_id>", views.batch_detail),
    path("batches/<str:batch_id>/cancel", views.batch_cancel),
]
