from django.contrib import admin
from django.db.models import Count, Q

from inference.models import Model, Node, NodeModel


def human_size(size: int) -> str:
    """Bytes as people read them, in powers of 1024 as GPU memory is sold: "2.0 GiB", "512.0 MiB"."""
    if size < 1024:
        return f"{size} bytes"
    value = float(size)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")


@admin.display(description="Size", ordering="size_bytes")
def size(obj) -> str:
    return human_size(obj.size_bytes) if obj.size_bytes else "unknown"


class NodeModelInline(admin.TabularInline):
    model = NodeModel
    extra = 0
    fields = readonly_fields = ["node", "model", "digest", size, "seen_at"]
    can_delete = False


def _set_enabled(queryset, enabled: bool) -> int:
    nodes = list(queryset)
    for node in nodes:
        node.enabled = enabled
        node.save(update_fields=["enabled"])
    return len(nodes)


@admin.register(Node)
class NodeAdmin(admin.ModelAdmin):
    list_display = ["url", "name", "enabled", "healthy", "version", "model_count", "gpu_memory", "last_seen_at"]
    list_editable = ["enabled"]
    list_filter = ["enabled", "healthy", "version"]
    search_fields = ["url", "name", "last_error"]
    readonly_fields = ["healthy", "version", "last_seen_at", "last_error", "created_at"]
    inlines = [NodeModelInline]
    actions = ["drain", "undrain"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(model_total=Count("models", distinct=True))

    # Saved one by one, not with queryset.update(), so the audit log (portal/audit.py) records each.
    @admin.action(description="Drain: no new requests; running ones finish")
    def drain(self, request, queryset):
        self.message_user(request, f"{_set_enabled(queryset, False)} node(s) draining.")

    @admin.action(description="Return to service")
    def undrain(self, request, queryset):
        self.message_user(request, f"{_set_enabled(queryset, True)} node(s) back in service.")

    @admin.display(description="Models", ordering="model_total")
    def model_count(self, obj):
        return obj.model_total

    @admin.display(description="GPU memory", ordering="gpu_memory_bytes")
    def gpu_memory(self, obj):
        return human_size(obj.gpu_memory_bytes) if obj.gpu_memory_bytes else "unknown"


@admin.register(Model)
class ModelAdmin(admin.ModelAdmin):
    list_display = ["public_id", "ollama_name", "kind", size, "context_length", "context_overflow", "concurrency",
                    "max_queue", "pinned", "servers", "enabled"]
    list_editable = ["enabled"]
    list_filter = ["kind", "context_overflow", "pinned", "enabled", "family", "nodes"]
    search_fields = ["public_id", "ollama_name", "family"]
    readonly_fields = ["capabilities", "max_context_length", size, "family", "parameter_size",
                       "quantization", "created_at", "updated_at"]
    exclude = ["size_bytes"]  # shown read-only as `size`
    inlines = [NodeModelInline]

    def get_queryset(self, request):
        healthy = Q(nodes__enabled=True, nodes__healthy=True)
        return super().get_queryset(request).annotate(server_total=Count("nodes", filter=healthy, distinct=True))

    @admin.display(description="Healthy servers", ordering="server_total")
    def servers(self, obj):
        return obj.server_total
