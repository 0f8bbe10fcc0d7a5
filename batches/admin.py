from django.contrib import admin

from batches.models import BatchFile
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
