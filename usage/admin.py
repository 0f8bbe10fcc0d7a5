from __future__ import annotations

from django.contrib import admin

from usage.models import UsageRecord


@admin.register(UsageRecord)
class UsageRecordAdmin(admin.ModelAdmin):
    list_display = ["at", "user", "key", "model", "node", "status", "reason", "prompt_tokens", "completion_tokens",
                    "queue_wait_ms", "ttft_ms", "duration_ms", "gpu_seconds", "streamed", "disconnected"]
    list_filter = ["reason", "streamed", "disconnected", "priority", "model", "at"]
    search_fields = ["user__username", "model", "node"]
    list_select_related = ["user", "key"]
    date_hierarchy = "at"

    # Records are facts about what happened: read them, never edit them by hand.
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
