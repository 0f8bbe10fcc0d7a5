"""The ready-to-paste snippets of the Connect page and of Settings > Account, filled with the person's
models and, right after a key is created, that key (stored keys cannot be shown again, so otherwise a
placeholder). In apiaccess rather than portal because the account page (apiaccess/views.py) shows them
with a new key, and apps do not import portal; portal's Connect page imports them from here.

Values are quoted with json.dumps, whose strings are also valid Python, JavaScript and YAML
double-quoted strings, and with shlex.quote for the shell, so an odd model id cannot break a snippet.
Every snippet is run against a live server, or parsed with the client's own schema, by
tests/test_connect_snippets.py.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterable
from dataclasses import dataclass
from textwrap import dedent

from common import siteurl
from inference.models import Model

PLACEHOLDER_KEY = "YOUR_API_KEY"


@dataclass(frozen=True)
class Snippet:
    slug: str  # also the element id, so the page can link to each client
    title: str
    language: str
    how: str  # one line: where to put it or how to run it
    body: str


@dataclass(frozen=True)
class ConnectModels:
    chat: str | None
    code: str | None  # for autocomplete; a chat model when no code model exists
    embedding: str | None


def api_base(request) -> str:
    """The API's base URL: SITE_URL's, or the one this page was requested on (common/siteurl.py)."""
    return siteurl.base_url(request) + "/v1"


def _preference(model: Model) -> tuple:
    # The most capable first (tool calling, then the longest context), so examples show a model worth using.
    return ("tools" not in (model.capabilities or ()), -model.context_length, model.public_id)


def pick_models(models: Iterable[Model]) -> ConnectModels:
    by_kind: dict[str, str] = {}
    for model in sorted(models, key=_preference):
        by_kind.setdefault(model.kind, model.public_id)
    chat = by_kind.get(Model.Kind.CHAT) or by_kind.get(Model.Kind.COMPLETION)
    return ConnectModels(chat=chat, code=by_kind.get(Model.Kind.COMPLETION) or chat,
                         embedding=by_kind.get(Model.Kind.EMBEDDING))


def q(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def curl(base: str, key: str, models: ConnectModels) -> str:
    body = json.dumps({"model": models.chat, "messages": [{"role": "user", "content": "Say hello"}]})
    return dedent(f"""\
        curl {shlex.quote(base + "/models")} \\
          -H "Authorization: Bearer {key}"

        curl {shlex.quote(base + "/chat/completions")} \\
          -H "Authorization: Bearer {key}" \\
          -H "Content-Type: application/json" \\
          -d {shlex.quote(body)}
        """)


def python_sdk(base: str, key: str, models: ConnectModels) -> str:
    text = dedent(f"""\
        from openai import OpenAI

        client = OpenAI(base_url={q(base)}, api_key={q(key)})

        reply = client.chat.completions.create(
            model={q(models.chat)},
            messages=[{{"role": "user", "content": "Say hello"}}],
        )
        print(reply.choices[0].message.content)

        stream = client.chat.completions.create(
            model={q(models.chat)},
            messages=[{{"role": "user", "content": "Count to five"}}],
            stream=True,
        )
        for chunk in stream:
            if chunk.choices:
                print(chunk.choices[0].delta.content or "", end="", flush=True)
        print()
        """)
    if models.embedding:
        text += dedent(f"""
            vectors = client.embeddings.create(model={q(models.embedding)}, input=["first text", "second text"])
            print(len(vectors.data), "vectors of", len(vectors.data[0].embedding), "numbers")
            """)
    return text


def javascript_sdk(base: str, key: str, models: ConnectModels) -> str:
    text = dedent(f"""\
        import OpenAI from "openai";

        const client = new OpenAI({{ baseURL: {q(base)}, apiKey: {q(key)} }});

        const reply = await client.chat.completions.create({{
          model: {q(models.chat)},
          messages: [{{ role: "user", content: "Say hello" }}],
        }});
        console.log(reply.choices[0].message.content);

        const stream = await client.chat.completions.create({{
          model: {q(models.chat)},
          messages: [{{ role: "user", content: "Count to five" }}],
          stream: true,
        }});
        for await (const chunk of stream) {{
          process.stdout.write(chunk.choices[0]?.delta?.content ?? "");
        }}
        console.log();
        """)
    if models.embedding:
        text += dedent(f"""
            const vectors = await client.embeddings.create({{
              model: {q(models.embedding)},
              input: ["first text", "second text"],
            }});
            console.log(vectors.data.length, "vectors of", vectors.data[0].embedding.length, "numbers");
            """)
    return text


def langchain(base: str, key: str, models: ConnectModels) -> str:
    imports = "ChatOpenAI, OpenAIEmbeddings" if models.embedding else "ChatOpenAI"
    text = dedent(f"""\
        from langchain_openai import {imports}

        llm = ChatOpenAI(base_url={q(base)}, api_key={q(key)}, model={q(models.chat)})
        print(llm.invoke("Say hello").content)
        """)
    if models.embedding:
        text += dedent(f"""
            embeddings = OpenAIEmbeddings(
                base_url={q(base)},
                api_key={q(key)},
                model={q(models.embedding)},
                # Send text as it is: without this line LangChain downloads a tokenizer (fails offline).
                check_embedding_ctx_length=False,
            )
            print(len(embeddings.embed_query("hello")), "numbers")
            """)
    return text


def continue_yaml(base: str, key: str, models: ConnectModels) -> str:
    def entry(name: str, model: str, roles: str) -> str:
        return (f"  - name: {q(name)}\n"
                f"    provider: openai\n"
                f"    model: {q(model)}\n"
                f"    apiBase: {q(base)}\n"
                f"    apiKey: {q(key)}\n"
                f"    roles: [{roles}]\n")

    text = "name: Gatehouse\nversion: 1.0.0\nschema: v1\nmodels:\n"
    text += entry(f"Gatehouse {models.chat}", models.chat, "chat, edit, apply")
    text += entry(f"Gatehouse {models.code} (autocomplete)", models.code, "autocomplete")
    if models.embedding:
        text += entry(f"Gatehouse {models.embedding} (embeddings)", models.embedding, "embed")
    return text


def continue_json(base: str, key: str, models: ConnectModels) -> str:
    def model_entry(title: str, model: str) -> dict:
        return {"title": title, "provider": "openai", "model": model, "apiBase": base, "apiKey": key,
                "useLegacyCompletionsEndpoint": False}

    config: dict = {
        "models": [model_entry(f"Gatehouse {models.chat}", models.chat)],
        "tabAutocompleteModel": model_entry(f"Gatehouse {models.code} (autocomplete)", models.code),
    }
    if models.embedding:
        config["embeddingsProvider"] = {"provider": "openai", "model": models.embedding, "apiBase": base,
                                        "apiKey": key}
    return json.dumps(config, indent=2, ensure_ascii=False) + "\n"


def snippets(models: ConnectModels, base: str, key: str | None = None) -> list[Snippet]:
    """Every snippet for these models and API base URL; with `key` (right after creating it) instead of
    the placeholder."""
    if models.chat is None:
        return []
    key = key or PLACEHOLDER_KEY
    return [
        Snippet("curl", "curl", "shell", "Paste into a terminal.", curl(base, key, models)),
        Snippet("python", "Python (OpenAI SDK)", "python",
                "pip install openai, then run it with python.", python_sdk(base, key, models)),
        Snippet("javascript", "JavaScript (OpenAI SDK)", "javascript",
                "npm install openai, save as hello.mjs, run node hello.mjs.", javascript_sdk(base, key, models)),
        Snippet("langchain", "LangChain", "python",
                "pip install langchain-openai, then run it with python.", langchain(base, key, models)),
        Snippet("continue-yaml", "Continue: config.yaml", "yaml",
                "Save as ~/.continue/config.yaml (chat, autocomplete, embeddings).", continue_yaml(base, key, models)),
        Snippet("continue-json", "Continue: config.json (older versions)", "json",
                "Save as ~/.continue/config.json if your Continue still reads config.json.",
                continue_json(base, key, models)),
    ]
