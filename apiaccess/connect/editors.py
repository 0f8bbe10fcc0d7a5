"""Snippets for editors: Continue (both of its configuration formats), Cline and Zed.

Continue's repository is read-only since June 2026 and its configuration is local files only, so what
its snippets get wrong stays wrong on every machine: tests/test_continue.py replays the paths Continue
takes with these configurations.
"""

from __future__ import annotations

import json

from apiaccess.connect.shared import KEY_VARIABLE, Client, ConnectModels, Snippet, export, q, site_of

# Continue's own names for the catalogue's capabilities (config.yaml's list, config.json's flags).
CONTINUE_CAPABILITIES = {"tools": ("tool_use", "tools"), "vision": ("image_input", "uploadImage")}
CONTINUE_CHAT_ONLY_WARNING = (
    "Continue treats every model whose id starts with \"gpt\" or \"o\" as chat-only and sends its "
    "autocomplete prompts to chat, where they come back as prose: do not use such a model for autocomplete."
)


def continues_chat_only(model: str) -> bool:
    """Continue's own test (isChatOnlyModel): such ids never get autocomplete from /v1/completions."""
    return model.startswith(("gpt", "o"))


def _yaml_capabilities(models: ConnectModels, model: str) -> list[str]:
    return [names[0] for capability, names in CONTINUE_CAPABILITIES.items() if capability in models.capabilities(model)]


def continue_yaml(base: str, key: str, models: ConnectModels) -> str:
    def entry(name: str, model: str, roles: str, *, completion_options: bool = True) -> str:
        text = (f"  - name: {q(name)}\n"
                f"    provider: openai\n"
                f"    model: {q(model)}\n"
                f"    apiBase: {q(base)}\n"
                f"    apiKey: {q(key)}\n"
                f"    roles: [{roles}]\n")
        if capabilities := _yaml_capabilities(models, model):
            # Continue cannot guess these for ids it does not know; agent mode needs tool_use.
            text += f"    capabilities: [{', '.join(capabilities)}]\n"
        if completion_options and models.context_length(model):
            text += f"    defaultCompletionOptions:\n      contextLength: {models.context_length(model)}\n"
        if completion_options:
            text += "    useResponsesApi: false\n"
        return text

    text = "name: Gatehouse\nversion: 1.0.0\nschema: v1\nmodels:\n"
    text += entry(f"Gatehouse {models.chat}", models.chat, "chat, edit, apply")
    text += ("  # Autocomplete goes to /v1/completions as long as useLegacyCompletionsEndpoint stays unset:\n"
             "  # set to false, it would send the fill-in-the-middle prompt to chat.\n")
    text += entry(f"Gatehouse {models.code} (autocomplete)", models.code, "autocomplete")
    if models.embedding:
        text += entry(f"Gatehouse {models.embedding} (embeddings)", models.embedding, "embed",
                      completion_options=False)
    return text


def continue_json(base: str, key: str, models: ConnectModels) -> str:
    def model_entry(title: str, model: str) -> dict:
        entry = {"title": title, "provider": "openai", "model": model, "apiBase": base, "apiKey": key}
        if models.context_length(model):
            entry["contextLength"] = models.context_length(model)
        flags = {names[1]: True for capability, names in CONTINUE_CAPABILITIES.items()
                 if capability in models.capabilities(model)}
        if flags:
            entry["capabilities"] = flags
        entry["useResponsesApi"] = False
        return entry

    config: dict = {
        "models": [model_entry(f"Gatehouse {models.chat}", models.chat)],
        "tabAutocompleteModel": model_entry(f"Gatehouse {models.code} (autocomplete)", models.code),
    }
    if models.embedding:
        config["embeddingsProvider"] = {"provider": "openai", "model": models.embedding, "apiBase": base,
                                        "apiKey": key}
    return json.dumps(config, indent=2, ensure_ascii=False) + "\n"


def cline_openai(base: str, key: str, models: ConnectModels) -> str:
    return (f"API Provider: OpenAI Compatible\n"
            f"Base URL: {base}\n"
            f"API Key: {key}\n"
            f"Model ID: {models.agent}\n"
            f"Context Window Size: {models.context_length(models.agent)}\n")


def cline_ollama(base: str, key: str, models: ConnectModels) -> str:
    return (f"API Provider: Ollama\n"
            f"Base URL: {site_of(base)}/ollama\n"
            f"API Key: {key}\n"
            f"Model: {models.agent}\n")


def zed_settings(base: str, models: ConnectModels) -> str:
    available = [{"name": model, "display_name": f"{model} (Gatehouse)",
                  "max_tokens": models.context_length(model),
                  "capabilities": {"tools": models.has_tools(model), "images": "vision" in models.capabilities(model),
                                   "parallel_tool_calls": False, "prompt_cache_key": False}}
                 for model in models.chat_models]
    # Zed keeps the key out of settings.json: it reads GATEHOUSE_API_KEY, named after the provider.
    settings = {"language_models": {"openai_compatible": {"Gatehouse": {"api_url": base,
                                                                        "available_models": available}}}}
    return json.dumps(settings, indent=2, ensure_ascii=False) + "\n"


def clients(base: str, key: str, models: ConnectModels) -> tuple[Client, ...]:
    continue_warning = CONTINUE_CHAT_ONLY_WARNING
    if continues_chat_only(models.code):
        continue_warning += f" The autocomplete model below, {models.code}, is one: pick another from the Models page."
    return (
        Client("continue", "Continue", "Chat, edits, an agent and autocomplete in VS Code and JetBrains.", (
            Snippet("continue-yaml", "Continue: config.yaml", "yaml",
                    "Save as ~/.continue/config.yaml (chat, autocomplete, embeddings).",
                    continue_yaml(base, key, models)),
            Snippet("continue-json", "Continue: config.json (older versions)", "json",
                    "Save as ~/.continue/config.json if your Continue still reads config.json.",
                    continue_json(base, key, models)),
        ), warning=continue_warning),
        Client("cline", "Cline", "An autonomous coding agent inside VS Code.", (
            Snippet("cline", "Cline: OpenAI Compatible provider", "text",
                    "In Cline's settings, fill in these fields.", cline_openai(base, key, models)),
            Snippet("cline-ollama", "Cline: Ollama provider (alternative)", "text",
                    "Or choose the Ollama provider and fill in these.", cline_ollama(base, key, models)),
        )),
        Client("zed", "Zed", "A fast editor with a built-in agent panel.", (
            Snippet("zed", "Zed: settings.json", "json",
                    "Merge into Zed's settings.json (zed: open settings).", zed_settings(base, models)),
            Snippet("zed-key", "Zed: your key", "shell",
                    "Run before starting Zed from this shell, or paste the key in Zed's LLM provider settings.",
                    export(KEY_VARIABLE, key) + "\n"),
        )),
    )
