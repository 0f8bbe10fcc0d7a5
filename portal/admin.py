from __future__ import annotations

from django.contrib import admin

from portal.models import AuditEntry


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    list_display = ["at", "actor_username", "action", "object_type", "object_repr", "changes"]
    list_filter = ["action", "object_type", "at"]
    search_fields = ["actor_username", "object_repr"]
    date_hierarchy = "at"
    readonly_fields = ["at", "actor", "actor_username", "action", "object_type", "object_id", "object_repr",
                       "changes"]

    # An audit log is read, never written or pruned by hand.
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
