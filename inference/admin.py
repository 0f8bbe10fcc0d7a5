from django.contrib import admin

from inference.models import Model, Node, NodeModel


class NodeModelInline(admin.TabularInline):
    model = NodeModel
    extra = 0
    readonly_fields = ["node", "model", "digest", "size_bytes", "seen_at"]
    can_delete = False


@admin.register(Node)
class NodeAdmin(admin.ModelAdmin):
    list_display = ["url", "name", "enabled", "healthy", "version", "last_seen_at", "gpu_memory_bytes"]
    list_editable = ["enabled"]
    readonly_fields = ["healthy", "version", "last_seen_at", "last_error", "created_at"]
    inlines = [NodeModelInline]


@admin.register(Model)
class ModelAdmin(admin.ModelAdmin):
    list_display = ["public_id", "ollama_name", "kind", "context_length", "context_overflow", "concurrency",
                    "max_queue", "enabled"]
    list_editable = ["enabled"]
    list_filter = ["kind", "context_overflow", "enabled"]
    search_fields = ["public_id", "ollama_name"]
    readonly_fields = ["capabilities", "max_context_length", "size_bytes", "family", "parameter_size",
                       "quantization", "created_at", "updated_at"]
    inlines = [NodeModelInline]
