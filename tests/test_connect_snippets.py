"""Every snippet the Connect page shows works: each is taken from the rendered page and run against the
live server (curl, the Python and JavaScript SDKs, LangChain), or, for Continue, parsed with Continue's
own schemas and then replayed as the requests Continue makes with that configuration.

The snippets come from the page right after a key is created (they carry the key); the Connect page's
placeholder versions must be the same text with the placeholder in the key's place.
"""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import sys

import httpx
import pytest
from django.test import Client, override_settings

from apiaccess.connect import PLACEHOLDER_KEY
from tests.conftest import CHAT_MODEL, CODE_MODEL, EMBED_MODEL
from tests.support.node import NODE_DIR, node_with_packages

SNIPPET_RE = re.compile(r'<code id="[^"]*" data-snippet="([a-z-]+)"[^>]*>(.*?)</code>', re.S)
KEY_RE = re.compile(r"sk-gh-[A-Za-z0-9]{48}")
# Any attempt to reach the internet fails at once through this dead proxy; the live server is exempt.
OFFLINE = {"HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9", "ALL_PROXY": "http://127.0.0.1:9",
           "NO_PROXY": "127.0.0.1,localhost", "HF_HUB_OFFLINE": "1"}


def snippets_in(page: str) -> dict[str, str]:
    return {slug: html.unescape(body) for slug, body in SNIPPET_RE.findall(page)}


@pytest.fixture(scope="module")
def shown(gatehouse, world, django_db_blocker, redis_server):
    """(placeholder snippets from /connect/, snippets shown with a new key, that key) for alice."""
    with django_db_blocker.unblock(), override_settings(SITE_URL=gatehouse.url):
        client = Client()
        client.force_login(world.users["alice"])
        placeholder = snippets_in(client.get("/connect/").content.decode())
        created = client.post("/settings/account/", {"name": "snippet check"}, follow=True).content.decode()
    plain = KEY_RE.search(created).group(0)
    return placeholder, snippets_in(created), plain


@pytest.fixture
def offline_env(tmp_path) -> dict[str, str]:
    # An empty tiktoken cache: a snippet that needed a tokenizer would have to download one, and cannot.
    return {**os.environ, **OFFLINE, "TIKTOKEN_CACHE_DIR": str(tmp_path / "tiktoken")}


def run(args: list[str], env: dict[str, str] | None = None, cwd=None, stdin: str | None = None) -> str:
    result = subprocess.run(args, capture_output=True, text=True, timeout=120, env=env, cwd=cwd, input=stdin)
    assert result.returncode == 0, f"{args[0]} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_the_page_shows_every_client(shown):
    placeholder, with_key, plain = shown
    assert set(placeholder) == set(with_key) == {"curl", "python", "javascript", "langchain", "continue-yaml",
                                                 "continue-json"}


def test_placeholder_snippets_are_the_same_text_with_the_placeholder_for_the_key(shown):
    placeholder, with_key, plain = shown
    for slug, text in placeholder.items():
        assert plain not in text and PLACEHOLDER_KEY in text
        assert text.replace(PLACEHOLDER_KEY, plain) == with_key[slug], slug


def test_the_curl_snippet_lists_models_and_chats(shown):
    output = run(["bash", "-e", "-c", shown[1]["curl"]])
    decoder, documents, at = json.JSONDecoder(), [], 0
    while at < len(output.strip()):
        document, end = decoder.raw_decode(output, at)
        documents.append(document)
        at = end + len(output[end:]) - len(output[end:].lstrip())
    models, chat = documents
    assert CHAT_MODEL in {m["id"] for m in models["data"]}
    assert chat["object"] == "chat.completion" and chat["choices"][0]["message"]["content"]


def test_the_python_snippet_runs(shown, offline_env):
    output = run([sys.executable, "-c", shown[1]["python"]], env=offline_env)
    lines = output.strip().splitlines()
    assert len(lines) >= 3 and lines[-1] == "2 vectors of 384 numbers", output


def test_the_javascript_snippet_runs(shown):
    node = node_with_packages()
    output = run([node, "--input-type=module", "-e", shown[1]["javascript"]], cwd=NODE_DIR)
    assert output.strip().splitlines()[-1] == "2 vectors of 384 numbers", output


def test_the_langchain_snippet_runs_offline(shown, offline_env):
    output = run([sys.executable, "-c", shown[1]["langchain"]], env=offline_env)
    assert output.strip().splitlines()[-1] == "384 numbers", output


def test_without_its_offline_line_the_langchain_snippet_would_download_a_tokenizer(shown, offline_env):
    snippet = shown[1]["langchain"]
    line = "    check_embedding_ctx_length=False,\n"
    assert line in snippet
    result = subprocess.run([sys.executable, "-c", snippet.replace(line, "")], capture_output=True, text=True,
                            timeout=120, env=offline_env)
    assert result.returncode != 0
    assert "cl100k_base.tiktoken" in result.stderr and "ProxyError" in result.stderr, result.stderr[-2000:]


@pytest.fixture(scope="module")
def continue_report(shown) -> dict:
    job = json.dumps({"yaml": shown[1]["continue-yaml"], "json": shown[1]["continue-json"]})
    return json.loads(run([node_with_packages(), "continue_config.mjs"], cwd=NODE_DIR, stdin=job))


def continue_request(model: dict, role: str) -> httpx.Response:
    """What Continue sends for a model entry in this role (see tests/test_continue.py for the details)."""
    base, headers = model["apiBase"].rstrip("/") + "/", {"Authorization": f"Bearer {model['apiKey']}"}
    if role == "autocomplete":
        body = {"model": model["model"], "prompt": "<fim_prefix>def add(a, b):\n<fim_suffix>\n<fim_middle>",
                "max_tokens": 32, "temperature": 0.01, "stop": ["\n\n"], "stream": True}
        return httpx.post(base + "completions", json=body, headers=headers, timeout=60)
    if role == "embed":
        return httpx.post(base + "embeddings", json={"model": model["model"], "input": ["def add(a, b):"]},
                          headers=headers, timeout=60)
    body = {"model": model["model"], "messages": [{"role": "user", "content": "Say hello"}], "max_tokens": 32,
            "stream": True, "stream_options": {"include_usage": True}}
    return httpx.post(base + "chat/completions", json=body, headers=headers, timeout=60)


def test_continue_config_yaml_passes_continues_schema_and_every_role_works(continue_report, shown):
    report = continue_report["yaml"]
    assert report["errors"] == []
    models = report["config"]["models"]
    roles = {role: m for m in models for role in m["roles"]}
    assert {"chat", "autocomplete", "embed"} <= set(roles)
    assert (roles["chat"]["model"], roles["autocomplete"]["model"], roles["embed"]["model"]) == (
        CHAT_MODEL, CODE_MODEL, EMBED_MODEL)
    for model in models:
        assert model["provider"] == "openai" and model["apiBase"].endswith("/v1") and model["apiKey"] == shown[2]
    for role in ("chat", "autocomplete", "embed"):
        response = continue_request(roles[role], role)
        assert response.status_code == 200, (role, response.text)


def test_continue_config_json_passes_continues_schema_and_every_entry_works(continue_report, shown):
    assert continue_report["json"]["errors"] == []
    config = json.loads(shown[1]["continue-json"])
    for entry in (*config["models"], config["tabAutocompleteModel"]):
        assert entry["provider"] == "openai" and entry["apiKey"] == shown[2]
        assert entry["apiBase"].endswith("/v1") and entry["useLegacyCompletionsEndpoint"] is False
        # With the legacy endpoint off, Continue sends even autocomplete to chat/completions.
        assert continue_request(entry, "chat").status_code == 200
    assert continue_request(config["embeddingsProvider"], "embed").status_code == 200
