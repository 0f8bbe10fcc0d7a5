import os
from functools import partial
from pathlib import Path
from urllib.parse import urlencode

from django import forms
from django.contrib import admin, messages
from django.db import models, transaction
from django.db.models import Count, Q
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from inference import catalogue
from inference.models import Model, Node, NodeModel, variant_name

AGENT_CONTEXT_SUGGESTION = 65536  # what Codex and Claude Code want; the add-a-variant link offers it


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


def api_key_status(node: Node) -> str:
    """Whether this process finds the node's API key, without ever showing the key: the admin is where a
    missing secret is noticed, and a page that echoed it would put it in browser caches and screenshots."""
    if node.api_key_env:
        if os.environ.get(node.api_key_env, "").strip():
            return f"set (from ${node.api_key_env})"
        return "named variable is empty"
    if node.api_key_file:
        try:
            if Path(node.api_key_file).read_text().strip():
                return "set (from file)"
        except OSError:
            return "not set (the file cannot be read)"
        return "not set (the file is empty)"
    return "not set"


@admin.register(Node)
class NodeAdmin(admin.ModelAdmin):
    list_display = ["url", "name", "kind", "enabled", "healthy", "version", "model_count", "gpu_memory",
                    "last_seen_at"]
    list_editable = ["enabled"]
    list_filter = ["kind", "enabled", "healthy", "version"]
    search_fields = ["url", "name", "last_error"]
    readonly_fields = ["api_key", "healthy", "version", "last_seen_at", "last_error", "created_at"]
    # A node URL typed without a scheme ("gpu1.lan") is a LAN address: GPU servers speak plain http.
    formfield_overrides = {models.URLField: {"assume_scheme": "http"}}
    fieldsets = [
        (None, {"fields": ["url", "name", "kind", "gpu_memory_bytes", "max_loaded_models", "enabled"]}),
        ("API key (OpenAI-compatible servers that want one)", {
            "description": "The key itself is never stored in the database or shown here: name the environment "
                           "variable or the file the web and worker processes read it from.",
            "fields": ["api_key_env", "api_key_file", "api_key"],
        }),
        ("As last seen", {"fields": ["healthy", "version", "last_seen_at", "last_error", "created_at"]}),
    ]
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

    @admin.display(description="API key")
    def api_key(self, obj):
        return api_key_status(obj)


class ModelForm(forms.ModelForm):
    """A variant's name on the nodes is made from its base's: staff name only the public id and context."""

    class Meta:
        model = Model
        fields = "__all__"  # the admin's fieldsets choose what is shown

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if "ollama_name" in self.fields:
            self.fields["ollama_name"].required = False
            self.fields["ollama_name"].help_text += ". Leave it empty for a variant: its name is made from its base's."

    def clean(self) -> dict:
        data = super().clean()
        base = data.get("variant_of")
        if base is None:
            if not data.get("ollama_name"):
                self.add_error("ollama_name", "Name the model on the nodes, or make it a variant of a model.")
            return data
        data["ollama_name"] = variant_name(base.ollama_name, data.get("context_length") or 0)
        clash = Model.objects.filter(ollama_name=data["ollama_name"]).exclude(pk=self.instance.pk).first()
        if clash is not None:
            self.add_error("context_length", f"{clash} already is {base} with this context length.")
        return data


@admin.register(Model)
class ModelAdmin(admin.ModelAdmin):
    form = ModelForm
    list_display = ["public_id", "ollama_name", "kind", size, "context_length", "context_overflow", "concurrency",
                    "max_queue", "pinned", "servers", "enabled"]
    list_editable = ["enabled"]
    list_filter = ["kind", "context_overflow", "pinned", "enabled", "family", "nodes"]
    search_fields = ["public_id", "ollama_name", "family"]
    readonly_fields = ["capabilities", "max_context_length", size, "family", "parameter_size",
                       "quantization", "created_at", "updated_at", "variants"]
    # size_bytes is left out: it is shown read-only as `size`.
    fieldsets = [
        (None, {"fields": ["public_id", "ollama_name", "kind", "enabled", "pinned"]}),
        ("Larger-context variants", {"fields": ["variant_of", "variants"]}),
        ("Serving", {"fields": ["context_length", "context_overflow", "concurrency", "max_queue"]}),
        ("Defaults when a request leaves them out", {
            "description": "Filled into a request that does not send the parameter; what a request sends always "
                           "wins. Empty means the server's own default.",
            "fields": ["default_temperature", "default_top_p", "default_max_tokens", "default_stop"],
        }),
        ("As the nodes report it", {"fields": ["capabilities", "max_context_length", size, "family",
                                               "parameter_size", "quantization", "created_at", "updated_at"]}),
    ]
    inlines = [NodeModelInline]

    def get_queryset(self, request):
        healthy = Q(nodes__enabled=True, nodes__healthy=True)
        return super().get_queryset(request).annotate(server_total=Count("nodes", filter=healthy, distinct=True))

    @admin.display(description="Healthy servers", ordering="server_total")
    def servers(self, obj):
        return obj.server_total

    @admin.display(description="Variants")
    def variants(self, obj):
        if obj.pk is None or obj.variant_of_id:
            return "-"
        existing = format_html_join(", ", '<a href="{}">{}</a> ({} tokens)', (
            (reverse("admin:inference_model_change", args=[v.pk]), v.public_id, f"{v.context_length:,}")
            for v in obj.variants.order_by("context_length")))
        query = urlencode({"variant_of": obj.pk, "context_length": AGENT_CONTEXT_SUGGESTION,
                           "public_id": f"{obj.public_id}-{AGENT_CONTEXT_SUGGESTION // 1024}k"})
        add = format_html('<a href="{}?{}">Add a variant with a larger context</a>',
                          reverse("admin:inference_model_add"), query)
        return format_html("{}{}{}", existing, " · " if existing else "", add)

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if obj.variant_of_id:
            # Made on the nodes once the row is committed, so staff see at once where it can run.
            transaction.on_commit(partial(self._create_on_nodes, request, obj))

    def _create_on_nodes(self, request, variant: Model) -> None:
        catalogue.sync_catalogue(wait=10)
        nodes = list(NodeModel.objects.filter(model=variant).values_list("node__url", flat=True))
        if nodes:
            messages.info(request, f"The variant runs as {variant.ollama_name} on {len(nodes)} node(s): "
                                   f"{', '.join(sorted(nodes))}.")
        else:
            messages.warning(request, f"No Ollama node has {variant.variant_of} yet, so the variant runs nowhere; "
                                      f"it is created as {variant.ollama_name} when a node has the base.")
