"""Snippets for coding agents in the terminal: Codex CLI (OpenAI's Responses API), Claude Code
(Anthropic's Messages API), OpenCode and Aider (Chat Completions)."""

from __future__ import annotations

import json
import shlex

from apiaccess.connect.shared import (
    AGENT_CONTEXT,
    KEY_VARIABLE,
    Client,
    ConnectModels,
    Snippet,
    agent_fitness,
    export,
    q,
    site_of,
)

CLAUDE_CODE_NEEDS = (f"Claude Code needs a model that calls tools, with a large context "
                     f"({AGENT_CONTEXT:,} tokens or more).")
# OpenCode compacts a conversation before it reaches the context, leaving room for this much answer (at
# most a quarter of a small context, so the conversation keeps the rest).
OPENCODE_MAX_OUTPUT = 8192


def codex_config(base: str, models: ConnectModels) -> str:
    # Codex reads the key from the variable named in env_key, so the file holds no secret.
    text = (f"model = {q(models.agent)}\n"
            f"model_provider = \"gatehouse\"\n")
    if models.context_length(models.agent):
        text += f"model_context_window = {models.context_length(models.agent)}\n"
    text += (f"\n[model_providers.gatehouse]\n"
             f"name = \"Gatehouse\"\n"
             f"base_url = {q(base)}\n"
             f"env_key = \"{KEY_VARIABLE}\"\n"
             f"wire_api = \"responses\"\n")
    return text


def claude_code(base: str, key: str, models: ConnectModels) -> str:
    lines = [
        # The Anthropic SDK adds /v1/messages itself, so the base URL is the site's.
        export("ANTHROPIC_BASE_URL", site_of(base)),
        export("ANTHROPIC_AUTH_TOKEN", key),
        export("ANTHROPIC_MODEL", models.agent),
        # Claude Code sends quick side tasks (titles, summaries) to a small, fast model: ours too.
        export("ANTHROPIC_SMALL_FAST_MODEL", models.agent),
        export("ANTHROPIC_DEFAULT_HAIKU_MODEL", models.agent),
    ]
    if models.context_length(models.agent):
        # Claude Code knows the windows of Anthropic's models only: for any other id it assumes a huge one
        # (and says so at every start), so it would not compact a conversation before our context is full.
        lines.append(export("CLAUDE_CODE_MAX_CONTEXT_TOKENS", str(models.context_length(models.agent))))
    # Without it Claude Code also calls api.anthropic.com, wherever its base URL points.
    lines += [export("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1"), "claude"]
    return "\n".join(lines) + "\n"


def opencode_config(base: str, models: ConnectModels) -> str:
    entries = {}
    for model in models.chat_models:
        context = models.context_length(model)
        entries[model] = {"name": f"{model} (Gatehouse)", "tool_call": models.has_tools(model),
                          "limit": {"context": context, "output": min(OPENCODE_MAX_OUTPUT, context // 4)}}
    config = {
        "provider": {"gatehouse": {
            "npm": "@ai-sdk/openai-compatible",
            "name": "Gatehouse",
            "options": {"baseURL": base, "apiKey": "{env:" + KEY_VARIABLE + "}"},
            "models": entries,
        }},
        "model": f"gatehouse/{models.agent}",
    }
    return json.dumps(config, indent=2, ensure_ascii=False) + "\n"


def aider(base: str, key: str, models: ConnectModels) -> str:
    return "\n".join([export("OPENAI_API_BASE", base), export("OPENAI_API_KEY", key),
                      f"aider --model {shlex.quote('openai/' + models.agent)}"]) + "\n"


def clients(base: str, key: str, models: ConnectModels) -> tuple[Client, ...]:
    fitness = agent_fitness(models, models.agent)
    key_line = export(KEY_VARIABLE, key) + "\n"
    return (
        Client("codex", "Codex CLI", "OpenAI's coding agent for the terminal (npm install -g @openai/codex).", (
            Snippet("codex-config", "Codex CLI: config.toml", "toml",
                    "Save as ~/.codex/config.toml (or merge it into yours).", codex_config(base, models)),
            Snippet("codex-key", "Codex CLI: your key", "shell",
                    "Run in the shell you start codex from (or add it to your shell's profile).", key_line),
        ), warning=fitness),
        Client("claude-code", "Claude Code", "Anthropic's coding agent for the terminal, through Gatehouse's "
               "Anthropic-compatible API.", (
                   Snippet("claude-code", "Claude Code: environment", "shell",
                           "Paste into a terminal: it sets the variables and starts claude.",
                           claude_code(base, key, models)),
               ), warning=" ".join(filter(None, [CLAUDE_CODE_NEEDS, fitness or "The model below has both."]))),
        Client("opencode", "OpenCode", "An open-source coding agent for the terminal.", (
            Snippet("opencode", "OpenCode: opencode.json", "json",
                    "Save as ~/.config/opencode/opencode.json (or merge it into yours).",
                    opencode_config(base, models)),
            Snippet("opencode-key", "OpenCode: your key", "shell", "Run in the shell you start opencode from.",
                    key_line),
        ), warning=fitness),
        Client("aider", "Aider", "Pair programming in the terminal, committing as it goes (pip install aider-chat).", (
            Snippet("aider", "Aider: environment", "shell", "Paste into a terminal inside your git repository.",
                    aider(base, key, models)),
        )),
    )
