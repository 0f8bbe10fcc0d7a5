"""What every client family's snippets are made of: the models they are filled with, the page's
units (a client with one or more snippets) and the quoting that keeps an odd model id from breaking one.

Values are quoted with json.dumps, whose strings are also valid Python, JavaScript, TOML and YAML
double-quoted strings, and with shlex.quote for the shell.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field

PLACEHOLDER_KEY = "YOUR_API_KEY"
# The environment variable that clients reading their key from the environment are told to use: one
# name for all of them, so one export line serves Codex, OpenCode and Zed (which derives it from the
# provider's name "Gatehouse").
KEY_VARIABLE = "GATEHOUSE_API_KEY"
# Coding agents send long system prompts and many tools; below this context they fail in odd ways.
AGENT_CONTEXT = 65536


@dataclass(frozen=True)
class Snippet:
    slug: str  # also the element id, so the page can link to each one
    title: str
    language: str
    how: str  # one line: where to put it or how to run it
    body: str


@dataclass(frozen=True)
class Client:
    slug: str
    name: str
    about: str  # one line: what the client is
    snippets: tuple[Snippet, ...]
    warning: str = ""  # a trap the person must know about before using the snippets


@dataclass(frozen=True)
class ClientGroup:
    slug: str
    title: str
    clients: tuple[Client, ...]


@dataclass(frozen=True)
class ModelFacts:
    capabilities: tuple[str, ...] = ()
    context_length: int = 0


@dataclass(frozen=True)
class ConnectModels:
    chat: str | None
    code: str | None  # for autocomplete; a chat model when no code model exists
    embedding: str | None
    chat_models: tuple[str, ...] = ()  # every chat model the person may use, the most capable first
    facts: dict[str, ModelFacts] = field(default_factory=dict, compare=False)

    def capabilities(self, model: str) -> tuple[str, ...]:
        return self.facts.get(model, ModelFacts()).capabilities

    def context_length(self, model: str) -> int:
        return self.facts.get(model, ModelFacts()).context_length

    def has_tools(self, model: str) -> bool:
        return "tools" in self.capabilities(model)

    @property
    def agent(self) -> str | None:
        """The model coding agents get: the first that calls tools with a context of AGENT_CONTEXT or more
        (often a larger-context variant an operator published), else the chat model."""
        return next((m for m in self.chat_models if self.has_tools(m) and self.context_length(m) >= AGENT_CONTEXT),
                    self.chat)


def q(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def export(name: str, value: str) -> str:
    return f"export {name}={shlex.quote(value)}"


def site_of(base: str) -> str:
    """The site's own URL from the API's base URL (…/v1), for clients that add their own path."""
    return base.removesuffix("/v1")


def agent_fitness(models: ConnectModels, model: str) -> str:
    """What, if anything, makes `model` a poor choice for a coding agent, in the person's words."""
    problems = []
    if not models.has_tools(model):
        problems.append("does not call tools")
    if models.context_length(model) < AGENT_CONTEXT:
        problems.append(f"has a context of {models.context_length(model):,} tokens (agents want {AGENT_CONTEXT:,})")
    if not problems:
        return ""
    return (f"{model} " + " and ".join(problems) + ": pick a bigger model from the Models page if one is there, "
            "or ask the operators for a variant with a larger context.")
