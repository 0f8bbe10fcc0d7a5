from django.contrib import admin

from batches.models import Batch, BatchFile, BatchLine
from common.readonly_admin import ReadOnlyModelAdmin


@admin.register(BatchFile)
class BatchFileAdmin(ReadOnlyModelAdmin):
    """Uploaded files are read here, never edited; staff may delete one (its stored object goes with it)."""

    list_display = ("public_id", "owner", "filename", "purpose", "bytes", "line_count", "created_at")
    list_filter = ("purpose",)
    search_fields = ("public_id", "filename", "owner__username")
    list_select_related = ("owner",)
    readonly_fields = ("public_id", "owner", "key", "purpose", "filename", "bytes", "line_count", "created_at",
                       "object_name")

    def has_delete_permission(self, request, obj=None):
        return admin.ModelAdmin.has_delete_permission(self, request, obj)


@admin.register(Batch)
class BatchAdmin(ReadOnlyModelAdmin):
    """Batches are read here; people cancel their own on the portal or through the API."""

    list_display = ("public_id", "owner", "endpoint", "status", "total_count", "completed_count", "failed_count",
                    "created_at")
    list_filter = ("status", "endpoint")
    search_fields = ("public_id", "owner__username", "input_file_public_id")
    list_select_related = ("owner",)
    readonly_fields = ("public_id", "owner", "key", "input_file_public_id", "endpoint", "completion_window", "status",
                       "metadata", "errors", "total_count", "completed_count", "failed_count", "input_tokens",
                       "output_tokens", "output_file", "error_file", "created_at", "expires_at", "in_progress_at",
                       "finalizing_at", "completed_at", "failed_at", "expired_at", "cancelling_at", "cancelled_at")
    exclude = ("input_file",)


@admin.register(BatchLine)
class BatchLineAdmin(ReadOnlyModelAdmin):
    list_display = ("batch", "index", "custom_id", "model", "status", "status_code", "finished_at")
    list_filter = ("status",)
    search_fields = ("batch__public_id", "custom_id")
    list_select_related = ("batch",)
    readonly_fields = ("batch", "index", "custom_id", "model", "body", "status", "status_code", "request_id", "result",
                       "finished_at")
