"""The models "on disk": names, digests and the metadata /api/tags, /api/show and /v1/models report.

Names follow Ollama's `[host/][namespace/]model[:tag]` with `registry.ollama.ai`, `library` and `latest`
as defaults, and match case-insensitively (`getExistingName`).
"""

from __future__ import annotations

import copy
import hashlib
import re
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from ollamasim.config import ModelConfig
from ollamasim.wire import ApiError, rfc3339nano_local

DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
DEFAULT_TAG = "latest"
INVALID_MODEL_NAME = "invalid model name"  # errtypes.InvalidModelNameErrMsg

_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}$")
_HOST = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,349}$")


@dataclass(frozen=True)
class Name:
    host: str
    namespace: str
    model: str
    tag: str

    @property
    def full(self) -> str:
        """name.String(): what capability errors print."""
        return f"{self.host}/{self.namespace}/{self.model}:{self.tag}"

    @property
    def short(self) -> str:
        """DisplayShortest: what /api/tags, /api/ps and /v1/models print."""
        if self.host.lower() == DEFAULT_HOST:
            if self.namespace.lower() == DEFAULT_NAMESPACE:
                return f"{self.model}:{self.tag}"
            return f"{self.namespace}/{self.model}:{self.tag}"
        return self.full

    @property
    def key(self) -> str:
        return self.full.lower()


def parse_name(text: str) -> Name | None:
    """model.ParseName + IsValid; None when the name is not valid (including empty)."""
    if not isinstance(text, str) or not text:
        return None
    text = text.split("@", 1)[0]
    parts = text.split("/")
    if len(parts) > 3:
        return None
    last = parts[-1]
    model, sep, tag = last.rpartition(":")
    if not sep:
        model, tag = last, DEFAULT_TAG
    host, namespace = DEFAULT_HOST, DEFAULT_NAMESPACE
    if len(parts) == 2:
        namespace = parts[0]
    elif len(parts) == 3:
        host, namespace = parts[0], parts[1]
    if not (_PART.match(model) and _PART.match(tag) and _PART.match(namespace) and _HOST.match(host)):
        return None
    return Name(host, namespace, model, tag)


def parse_model_ref(text: str) -> Name | None:
    """parseAndValidateModelRef (Ollama server/model_resolver.go), which every model route starts with.

    Surrounding spaces are ignored. An empty name gives None: each route answers that its own way.
    A name that is not valid is 400 "invalid model name" on every route.
    """
    text = text.strip() if isinstance(text, str) else ""
    if not text:
        return None
    name = parse_name(text)
    if name is None:
        raise ApiError(400, INVALID_MODEL_NAME)
    return name


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _parameter_count(parameter_size: str) -> int:
    match = re.match(r"^\s*([0-9.]+)\s*([KMBT]?)", parameter_size, re.IGNORECASE)
    if not match:
        return 0
    scale = {"": 1, "k": 10**3, "m": 10**6, "b": 10**9, "t": 10**12}[match.group(2).lower()]
    return int(float(match.group(1)) * scale)


@dataclass
class ModelEntry:
    """One installed model. `blob` names its weights: runners are keyed by it, as Ollama keys them by
    ModelPath, so a copy or a derived model shares (and can thrash) the same runner."""

    name: Name
    config: ModelConfig
    digest: str
    blob: str
    modified_at_ns: int
    faults: dict[str, Any] = field(default_factory=dict)  # runtime overrides from POST /sim/faults

    @property
    def capabilities(self) -> list[str]:
        return list(self.config.capabilities)

    def has(self, capability: str) -> bool:
        return capability in self.config.capabilities

    @property
    def embedding_only(self) -> bool:
        return self.has("embedding") and not self.has("completion")

    def setting(self, key: str) -> Any:
        """A per-model knob, with runtime fault overrides taking precedence over the config file."""
        if key in self.faults:
            return self.faults[key]
        return getattr(self.config, key)

    def details(self, lengths: bool = False) -> dict[str, Any]:
        """api.ModelDetails. `lengths`: the training context and embedding size, which /api/tags reads
        from the GGUF since v0.30.0 (server/model_list_cache.go); /api/show and /api/ps leave them out."""
        cfg = self.config
        details: dict[str, Any] = {
            "parent_model": "",
            "format": cfg.format,
            "family": cfg.family,
            "families": list(cfg.families) if cfg.families else [cfg.family],
            "parameter_size": cfg.parameter_size,
            "quantization_level": cfg.quantization_level,
        }
        if lengths:
            details["context_length"] = cfg.context_length
            details["embedding_length"] = cfg.embedding_length
        return details

    def tags_entry(self, lengths: bool) -> dict[str, Any]:
        return {
            "name": self.name.short,
            "model": self.name.short,
            "modified_at": rfc3339nano_local(self.modified_at_ns),
            "size": self.config.size,
            "digest": self.digest,
            "details": self.details(lengths),
            "capabilities": self.capabilities,
        }

    def show(self) -> dict[str, Any]:
        cfg = self.config
        arch = cfg.family.replace("-", "")
        info: dict[str, Any] = {
            "general.architecture": arch,
            "general.basename": self.name.model,
            "general.file_type": 15,
            "general.parameter_count": _parameter_count(cfg.parameter_size),
            "general.quantization_version": 2,
            f"{arch}.context_length": cfg.context_length,
            f"{arch}.embedding_length": cfg.embedding_length,
            "tokenizer.ggml.model": "gpt2",
        }
        params = "\n".join(_parameter_lines(cfg.parameters))
        template = cfg.template if cfg.template is not None else _default_template(self)
        response: dict[str, Any] = {}
        if cfg.license:
            response["license"] = cfg.license
        response["modelfile"] = _modelfile(self, template)
        if params:
            response["parameters"] = params
        response["template"] = template
        if cfg.system:
            response["system"] = cfg.system
        response["details"] = self.details()
        response["model_info"] = info
        response["capabilities"] = self.capabilities
        response["modified_at"] = rfc3339nano_local(self.modified_at_ns)
        return response


def _parameter_lines(parameters: dict[str, Any]) -> list[str]:
    lines = []
    for key, value in parameters.items():
        for item in value if isinstance(value, list) else [value]:
            shown = f'"{item}"' if isinstance(item, str) else str(item).lower() if isinstance(item, bool) else item
            lines.append(f"{key:<30} {shown}")
    return lines


def _default_template(entry: ModelEntry) -> str:
    if entry.embedding_only:
        return "{{ .Prompt }}"
    if entry.has("insert"):
        return ("{{- if .Suffix }}<|fim_prefix|>{{ .Prompt }}<|fim_suffix|>{{ .Suffix }}<|fim_middle|>\n"
                "{{- else }}{{ .Prompt }}{{ end }}")
    return ("{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n"
            "{{ .Content }}<|eot_id|>{{ end }}<|start_header_id|>assistant<|end_header_id|>\n\n")


def _modelfile(entry: ModelEntry, template: str) -> str:
    lines = [
        '# Modelfile generated by "ollama show"',
        "# To build a new Modelfile based on this, replace FROM with:",
        f"# FROM {entry.name.short}",
        "",
        f"FROM /root/.ollama/models/blobs/sha256-{entry.blob}",
        f'TEMPLATE """{template}"""',
    ]
    if entry.config.system:
        lines.append(f'SYSTEM """{entry.config.system}"""')
    for key, value in entry.config.parameters.items():
        for item in value if isinstance(value, list) else [value]:
            lines.append(f"PARAMETER {key} {item}")
    return "\n".join(lines) + "\n"


class Catalogue:
    """Installed models plus the ones `/api/pull` can fetch."""

    def __init__(self, models: list[ModelConfig], pullable: list[ModelConfig], start_ns: int) -> None:
        self._start_ns = start_ns
        self._models: dict[str, ModelEntry] = {}
        self._pullable: dict[str, ModelConfig] = {}
        for cfg in pullable:
            name = parse_name(cfg.name)
            if name is None:
                raise ValueError(f"invalid pullable model name {cfg.name!r}")
            self._pullable[name.key] = cfg
        for cfg in models:
            self.add(cfg)

    def _make_entry(self, cfg: ModelConfig, name: Name) -> ModelEntry:
        parent = parse_name(cfg.parent) if cfg.parent else None
        if parent is not None and parent.key in self._models:
            blob = self._models[parent.key].blob
        else:
            blob = _sha("blob:" + (parent or name).key)
        if cfg.modified_at:
            modified_ns = int(datetime.fromisoformat(cfg.modified_at).timestamp() * 1e9)
        else:
            # Stable per name and a few days before start-up, like a model pulled last week.
            modified_ns = self._start_ns - (int(_sha(name.key)[:6], 16) % (7 * 86400)) * 10**9
        return ModelEntry(name=name, config=cfg, digest=_sha("manifest:" + name.key), blob=blob,
                          modified_at_ns=modified_ns)

    def add(self, cfg: ModelConfig) -> ModelEntry:
        name = parse_name(cfg.name)
        if name is None:
            raise ValueError(f"invalid model name {cfg.name!r}")
        entry = self._make_entry(cfg, name)
        self._models[name.key] = entry
        return entry

    def get(self, name: Name | None) -> ModelEntry | None:
        return None if name is None else self._models.get(name.key)

    def lookup(self, text: str) -> ModelEntry | None:
        return self.get(parse_name(text))

    def entries(self) -> list[ModelEntry]:
        return list(self._models.values())

    def remove(self, name: Name) -> bool:
        return self._models.pop(name.key, None) is not None

    def copy(self, source: ModelEntry, destination: Name) -> ModelEntry:
        cfg = replace(copy.deepcopy(source.config), name=destination.full)
        entry = ModelEntry(name=destination, config=cfg, digest=source.digest, blob=source.blob,
                           modified_at_ns=source.modified_at_ns)
        self._models[destination.key] = entry
        return entry

    def derive(self, source: ModelEntry, destination: Name, changes: dict[str, Any]) -> ModelEntry:
        """/api/create FROM an installed model: a new manifest on the same weights, so the two share one
        runner (and evict each other), with the Modelfile's parameters, system prompt or template changed."""
        parameters = {**source.config.parameters, **changes.get("parameters", {})}
        cfg = replace(copy.deepcopy(source.config), name=destination.full, parent=source.name.full,
                      parameters=parameters, modified_at=datetime.now().astimezone().isoformat())
        for key in ("system", "template"):
            if key in changes:
                setattr(cfg, key, changes[key])
        return self.add(cfg)

    def pullable(self, name: Name) -> ModelConfig | None:
        """The config a pull of `name` installs: an installed model re-pulls as itself."""
        if name.key in self._models:
            return self._models[name.key].config
        cfg = self._pullable.get(name.key)
        return None if cfg is None else replace(copy.deepcopy(cfg), name=name.full)
