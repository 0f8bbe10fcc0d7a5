"""The portal's Batches page, included at the root by portal/urls.py (the API's routes are batches/urls.py)."""

from django.urls import path

from batches import portal_views

urlpatterns = [
    path("batches/", portal_views.batches_page, name="batches"),
    path("batches/files/<str:file_id>/", portal_views.batch_file, name="batch-file"),
    path("batches/<str:batch_id>/cancel/", portal_views.batch_cancel, name="batch-cancel"),
]
