"""The ready-to-paste snippets of the Connect page and of Settings > Account, filled with the person's
models and, right after a key is created, that key (stored keys cannot be shown again, so otherwise a
placeholder). In apiaccess rather than portal because the account page (apiaccess/views.py) shows them
with a new key, and apps do not import portal; portal's Connect page imports them from here.

One module per client family (sdks, editors, agents, chat_apps); shared.py holds what they share.
Every snippet is run against a live server, or parsed in its own format, by
tests/test_connect_snippets.py.
"""

from __future__ import annotations

from collections.abc import Iterable

from apiaccess.connect import agents, chat_apps, editors, sdks
from apiaccess.connect.editors import continues_chat_only
from apiaccess.connect.shared import (
    KEY_VARIABLE,
    PLACEHOLDER_KEY,
    Client,
    ClientGroup,
    ConnectModels,
    ModelFacts,
    Snippet,
)
from common import siteurl
from inference.models import Model

__all__ = ["KEY_VARIABLE", "PLACEHOLDER_KEY", "Client", "ClientGroup", "ConnectModels", "ModelFacts", "Snippet",
           "api_base", "client_groups", "pick_models", "snippets"]


def api_base(request) -> str:
    """The API's base URL: SITE_URL's, or the one this page was requested on (common/siteurl.py)."""
    return siteurl.base_url(request) + "/v1"


def _preference(model: Model) -> tuple:
    # The most capable first (tool calling, then the longest context), so examples show a model worth using;
    # a larger-context variant after the models themselves, as it is meant for agents (ConnectModels.agent).
    return ("tools" not in (model.capabilities or ()), model.variant_of_id is not None, -model.context_length,
            model.public_id)


def pick_models(models: Iterable[Model]) -> ConnectModels:
    ranked = sorted(models, key=_preference)
    by_kind: dict[str, list[str]] = {}
    for model in ranked:
        by_kind.setdefault(model.kind, []).append(model.public_id)
    chat_models = tuple(by_kind.get(Model.Kind.CHAT) or by_kind.get(Model.Kind.COMPLETION) or ())
    chat = chat_models[0] if chat_models else None
    # Continue sends autocomplete for some ids to chat whatever the configuration says: prefer others.
    candidates = by_kind.get(Model.Kind.COMPLETION) or list(chat_models)
    code = next((m for m in candidates if not continues_chat_only(m)), candidates[0] if candidates else None)
    embedding = (by_kind.get(Model.Kind.EMBEDDING) or [None])[0]
    facts = {m.public_id: ModelFacts(tuple(m.capabilities or ()), m.context_length) for m in ranked}
    return ConnectModels(chat=chat, code=code, embedding=embedding, chat_models=chat_models, facts=facts)


def client_groups(models: ConnectModels, base: str, key: str | None = None) -> list[ClientGroup]:
    """Every client's snippets for these models and API base URL, grouped as the page shows them; with
    `key` (right after creating it) instead of the placeholder."""
    if models.chat is None:
        return []
    key = key or PLACEHOLDER_KEY
    return [
        ClientGroup("editors", "Editors", editors.clients(base, key, models)),
        ClientGroup("agents", "Coding agents", agents.clients(base, key, models)),
        ClientGroup("chat-apps", "Chat apps", chat_apps.clients(base, key, models)),
        ClientGroup("code", "SDKs and curl", sdks.clients(base, key, models)),
    ]


def snippets(models: ConnectModels, base: str, key: str | None = None) -> list[Snippet]:
    """Every snippet of every client, in the page's order."""
    return [snippet for group in client_groups(models, base, key) for client in group.clients
            for snippet in client.snippets]
