"""Which path Continue (its final release; the repository is read-only since June 2026) posts a model's
requests to, decided as Continue decides it for `provider: openai`, so a test can check that a
configuration the Connect page hands out leads where it should."""

from __future__ import annotations

# core/llm/index.ts::supportsCompletions: hosts Continue knows to lack /completions, Jan's port among them.
NO_COMPLETIONS_HOSTS = ("api.groq.com", "api.mistral.ai", ":1337", "integrate.api.nvidia.com")


def supports_completions(entry: dict) -> bool:
    if any(host in (entry.get("apiBase") or "") for host in NO_COMPLETIONS_HOSTS):
        return False
    # Only an explicit false turns it off; unset means the legacy endpoint is there.
    return entry.get("useLegacyCompletionsEndpoint") is not False


def chat_only(model: str) -> bool:
    """core/llm/llms/OpenAI.ts::isChatOnlyModel."""
    return model.startswith(("gpt", "o"))


def autocomplete_path(entry: dict) -> str:
    """Where Continue sends an autocomplete model's fill-in-the-middle prompt: the raw prompt to
    /completions, or wrapped as a user message to /chat/completions, which answers it with prose."""
    if supports_completions(entry) and not chat_only(entry["model"]):
        return "completions"
    return "chat/completions"
