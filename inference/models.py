"""Inference nodes (Ollama or OpenAI-compatible servers) and the models they serve. Filled by the catalogue sync (inference/catalogue.py)."""

from __future__ import annotations

import re

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

MAX_STOP_SEQUENCES = 4  # OpenAI's limit on `stop`
ENV_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _default_concurrency() -> int:
    return settings.DEFAULT_MODEL_CONCURRENCY


def _default_max_queue() -> int:
    return settings.DEFAULT_MAX_QUEUE


def _default_context_length() -> int:
    return settings.DEFAULT_CONTEXT_LENGTH


# Names on Ollama nodes that carry this belong to Gatehouse: the catalogue creates them for variants and
# deletes the ones no variant names any more (inference/variants.py).
VARIANT_MARKER = "-gatehouse-ctx"


def variant_name(base_name: str, context_length: int) -> str:
    """The name a larger-context variant gets on the Ollama nodes: the base's name and tag, the marker, and
    the context, e.g. qwen2.5-coder:7b-gatehouse-ctx65536."""
    if ":" not in base_name.rpartition("/")[2]:
        base_name += ":latest"
    return f"{base_name}{VARIANT_MARKER}{context_length}"


class Node(models.Model):
    class Kind(models.TextChoices):
        OLLAMA = "ollama", "Ollama (native API; Gatehouse loads and unloads models)"
        OPENAI = "openai", "OpenAI-compatible server (llama-server, vLLM, SGLang, TGI, LM Studio, a provider)"

    url = models.URLField(
        unique=True,
        help_text="Base URL of the server, e.g. http://gpu1:11434 (Ollama) or http://gpu2:8080 (OpenAI-compatible; "
                  "without /v1)",
    )
    name = models.CharField(max_length=100, blank=True)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.OLLAMA)
    api_key_env = models.CharField(
        max_length=100, blank=True,
        help_text="OpenAI-compatible servers only: the environment variable that holds the server's API key",
    )
    api_key_file = models.CharField(
        max_length=500, blank=True,
        help_text="OpenAI-compatible servers only: a file (e.g. a mounted secret) that holds the server's API key",
    )
    gpu_memory_bytes = models.BigIntegerField(
        default=0,
        help_text="GPU memory budget in bytes. Gatehouse swaps models to stay within it; 0 = unknown (no swapping)",
    )
    max_loaded_models = models.PositiveSmallIntegerField(
        default=3,
        help_text="The most models the server holds at once: Ollama's OLLAMA_MAX_LOADED_MODELS (3 per GPU unless "
                  "set), llama-server's --models-max (4 unless set). Gatehouse keeps to it, so the server never "
                  "evicts a model on its own; 0 = no limit",
    )
    enabled = models.BooleanField(
        default=True, help_text="Untick to drain the node: it gets no new requests, and running ones finish"
    )
    healthy = models.BooleanField(default=False)
    version = models.CharField(max_length=40, blank=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["url"]

    def __str__(self) -> str:
        return self.name or self.url

    def clean(self) -> None:
        super().clean()
        errors = {}
        if self.api_key_env and not ENV_VAR_NAME.fullmatch(self.api_key_env):
            errors["api_key_env"] = "The name of an environment variable: letters, digits and _, e.g. GPU2_API_KEY."
        if self.api_key_env and self.api_key_file:
            # Only one would be read (the variable); naming both hides which key the server gets.
            errors["api_key_file"] = "Name the environment variable or the file, not both."
        if errors:
            raise ValidationError(errors)


class Model(models.Model):
    class Kind(models.TextChoices):
        CHAT = "chat", "Chat"
        COMPLETION = "completion", "Completion (code / fill-in-the-middle)"
        EMBEDDING = "embedding", "Embedding"

    class ContextOverflow(models.TextChoices):
        ERROR = "error", "Refuse it with context_length_exceeded, as OpenAI does"
        TRUNCATE = "truncate", "Cut the start of the conversation to fit, as Ollama does"

    public_id = models.CharField(max_length=200, unique=True, help_text="The id clients send as `model`")
    ollama_name = models.CharField(
        max_length=200, unique=True,
        help_text="The name on the nodes: Ollama's model name, or the id in an OpenAI-compatible server's /v1/models",
    )
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.CHAT)
    capabilities = models.JSONField(default=list, blank=True)
    context_length = models.PositiveIntegerField(
        default=_default_context_length,
        help_text="num_ctx sent with every request, so all callers share one and Ollama never reloads",
    )
    max_context_length = models.PositiveIntegerField(default=0, help_text="Training context reported by Ollama")
    concurrency = models.PositiveIntegerField(default=_default_concurrency, help_text="Requests in flight per node")
    max_queue = models.PositiveIntegerField(default=_default_max_queue, help_text="Requests allowed to wait")
    context_overflow = models.CharField(
        max_length=10, choices=ContextOverflow.choices, default=ContextOverflow.ERROR,
        help_text="What happens to a prompt longer than the context length",
    )
    variant_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="variants",
        limit_choices_to={"variant_of__isnull": True},
        help_text="Publish this as the same model with another context length (say 65536 for coding agents): "
                  "Gatehouse creates it on every Ollama node that has the base, and loads it as a model of its "
                  "own, with its own memory. Its name on the nodes and its kind follow the base.",
    )
    enabled = models.BooleanField(default=True)
    pinned = models.BooleanField(
        default=False,
        help_text="Loaded on its nodes at start and kept loaded (never evicted): a dedicated model",
    )
    # The same ranges the API accepts from a request (inference/openai_api/schemas.py), so a default is never a value
    # a client could not have sent itself.
    default_temperature = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(0), MaxValueValidator(2)],
        help_text="Used when a request sends no temperature (0 to 2); empty = the server's default",
    )
    default_top_p = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(0), MaxValueValidator(1)],
        help_text="Used when a request sends no top_p (0 to 1)",
    )
    default_max_tokens = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1)],
        help_text="Used when a request sends no max_tokens (nor max_completion_tokens)",
    )
    default_stop = models.JSONField(
        default=list, blank=True,
        help_text=f"Stop sequences used when a request sends none: a JSON list of at most {MAX_STOP_SEQUENCES} "
                  "strings, e.g. [\"</s>\"]",
    )
    size_bytes = models.BigIntegerField(default=0)
    family = models.CharField(max_length=100, blank=True)
    parameter_size = models.CharField(max_length=40, blank=True)
    quantization = models.CharField(max_length=40, blank=True)
    nodes = models.ManyToManyField(Node, through="NodeModel", related_name="models", blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["public_id"]

    def __str__(self) -> str:
        return self.public_id

    def clean(self) -> None:
        super().clean()
        if self.default_stop is None:  # the admin's field left empty: no stop sequences, as the default
            self.default_stop = []
        if problem := stop_sequences_problem(self.default_stop):
            raise ValidationError({"default_stop": problem})
        if self.variant_of_id:
            self._check_variant()

    def _check_variant(self) -> None:
        base = self.variant_of
        if base.variant_of_id or base.pk == self.pk or (self.pk and self.variants.exists()):
            raise ValidationError({"variant_of": "A variant's base must be a model of its own, not a variant, "
                                                 "and a model with variants cannot become one."})
        if self.context_length == base.context_length:
            raise ValidationError({"context_length": f"A variant needs a context length other than its base's "
                                                     f"({base.context_length:,} tokens)."})
        if base.max_context_length and self.context_length > base.max_context_length:
            raise ValidationError({"context_length": f"{base} was trained on {base.max_context_length:,} tokens "
                                                     f"of context: a variant cannot have more."})
        kinds = set(base.nodes.values_list("kind", flat=True))
        if kinds and Node.Kind.OLLAMA not in kinds:
            raise ValidationError({"variant_of": f"{base} is served only by OpenAI-compatible servers, whose "
                                                 f"context is set when the server starts; variants are made "
                                                 f"on Ollama nodes."})

    def save(self, *args, **kwargs) -> None:
        if self.variant_of_id:
            # The weights decide what the variant is; only the context (and the serving settings) are its own.
            base = self.variant_of
            self.ollama_name = variant_name(base.ollama_name, self.context_length)
            self.kind = base.kind
            if self._state.adding:
                for name in ("capabilities", "max_context_length", "size_bytes", "family", "parameter_size",
                             "quantization"):
                    setattr(self, name, getattr(base, name))
        super().save(*args, **kwargs)

    @staticmethod
    def kind_from_capabilities(capabilities: list[str]) -> str:
        caps = set(capabilities)
        if "embedding" in caps and "completion" not in caps:
            return Model.Kind.EMBEDDING
        if "insert" in caps:
            return Model.Kind.COMPLETION
        return Model.Kind.CHAT


def stop_sequences_problem(value: object) -> str:
    """Why a default_stop value is unusable, or "" when it is fine: a list of at most four non-empty strings,
    as OpenAI accepts `stop` (an empty string would end every reply before its first token)."""
    if not isinstance(value, list):
        return 'Enter a JSON list of strings, e.g. ["</s>"], or [] for none.'
    if len(value) > MAX_STOP_SEQUENCES:
        return f"At most {MAX_STOP_SEQUENCES} stop sequences (got {len(value)})."
    if not all(isinstance(item, str) and item for item in value):
        return "Every stop sequence must be a non-empty string."
    return ""


class NodeModel(models.Model):
    """A model present on a node (from its /api/tags)."""

    node = models.ForeignKey(Node, on_delete=models.CASCADE)
    model = models.ForeignKey(Model, on_delete=models.CASCADE)
    digest = models.CharField(max_length=80, blank=True)
    size_bytes = models.BigIntegerField(default=0)
    seen_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["node", "model"], name="unique_node_model")]

    def __str__(self) -> str:
        return f"{self.model} on {self.node}"
