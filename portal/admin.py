from __future__ import annotations

from django.contrib import admin

from common.readonly_admin import ReadOnlyModelAdmin
from portal.models import AuditEntry


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyModelAdmin):
    list_display = ["at", "actor_username", "action", "object_type", "object_repr", "changes"]
    list_filter = ["action", "object_type", "at"]
    search_fields = ["actor_username", "object_repr"]
    date_hierarchy = "at"
    readonly_fields = ["at", "actor", "actor_username", "action", "object_type", "object_id", "object_repr",
                       "changes"]

