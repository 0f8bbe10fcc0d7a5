"""Snippets for chat apps: Open WebUI, through either of its connection kinds."""

from __future__ import annotations

from apiaccess.connect.shared import Client, ConnectModels, Snippet, site_of


def open_webui(base: str, key: str, models: ConnectModels) -> str:
    return (f"OpenAI API connection\n"
            f"URL: {base}\n"
            f"Key: {key}\n"
            f"\n"
            f"Ollama API connection\n"
            f"URL: {site_of(base)}/ollama\n"
            f"Key: {key}\n")


def clients(base: str, key: str, models: ConnectModels) -> tuple[Client, ...]:
    return (
        Client("open-webui", "Open WebUI", "A self-hosted chat app for a team, in the browser.", (
            Snippet("open-webui", "Open WebUI: connections", "text",
                    "Admin Panel › Settings › Connections: add either connection (or both) with these values.",
                    open_webui(base, key, models)),
        )),
    )
