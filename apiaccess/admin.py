from django.contrib import admin

from apiaccess.models import ApiKey


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["masked", "name", "user", "created_at", "last_used_at", "expires_at", "revoked_at"]
    list_filter = ["revoked_at"]
    search_fields = ["name", "lookup", "user__username"]
    readonly_fields = ["lookup", "created_at", "last_used_at"]
    filter_horizontal = ["allowed_models"]

    def has_add_permission(self, request):
        # A key's plain text must be shown to its owner once; the admin has nowhere to do that safely.
        return False
