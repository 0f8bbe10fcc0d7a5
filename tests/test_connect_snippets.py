"""Every snippet the Connect page shows works: each is taken from the rendered page and run against the
live server (curl, the Python and JavaScript SDKs, LangChain), or, for Continue, parsed with Continue's
own schemas and then replayed as the requests Continue makes with that configuration; the other clients'
snippets are parsed in their own format (TOML, JSON, the shell, the fields of a settings form) and must
name this site's URL, a model the person may use and the key or the variable holding it; what they
give a client is then used as that client would (the Responses API for Codex CLI, the Messages API for
Claude Code, the Ollama API for Cline and Open WebUI).

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
import tomllib

import anthropic
import httpx
import openai
import pytest
import yaml
from django.test import Client, override_settings

from apiaccess import connect
from apiaccess.connect import KEY_VARIABLE, PLACEHOLDER_KEY, pick_models
from inference.models import Model
from tests.conftest import CHAT_MODEL, CODE_MODEL, EMBED_MODEL
from tests.support.continue_paths import autocomplete_path
from tests.support.node import NODE_DIR, node_with_packages

EVERY_SNIPPET = {"continue-yaml", "continue-json", "cline", "cline-ollama", "zed", "zed-key", "codex-config",
                 "codex-key", "claude-code", "opencode", "opencode-key", "aider", "open-webui", "curl", "python",
                 "javascript", "langchain"}
# Configuration files name the environment variable holding the key, never the key itself.
WITHOUT_KEY = {"zed", "codex-config", "opencode"}

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
    assert set(placeholder) == set(with_key) == EVERY_SNIPPET


def test_placeholder_snippets_are_the_same_text_with_the_placeholder_for_the_key(shown):
    placeholder, with_key, plain = shown
    for slug, text in placeholder.items():
        assert plain not in text
        assert (PLACEHOLDER_KEY in text) == (slug not in WITHOUT_KEY), slug
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
        assert autocomplete_path(model) == "completions", "Continue would send this autocomplete to chat"
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


def catalogue_facts(django_db_blocker, model: str) -> tuple[list[str], int]:
    with django_db_blocker.unblock():
        found = Model.objects.get(public_id=model)
    return list(found.capabilities), found.context_length


def test_continue_config_yaml_tells_continue_what_each_model_can_do(shown, django_db_blocker):
    models = yaml.safe_load(shown[1]["continue-yaml"])["models"]
    chat, autocomplete = models[0], models[1]
    capabilities, context = catalogue_facts(django_db_blocker, CHAT_MODEL)
    assert "tools" in capabilities and chat["capabilities"] == ["tool_use"], "agent mode needs tool_use"
    assert chat["defaultCompletionOptions"]["contextLength"] == context
    assert autocomplete["defaultCompletionOptions"]["contextLength"] == catalogue_facts(django_db_blocker,
                                                                                        CODE_MODEL)[1]
    for model in (chat, autocomplete):
        assert model["useResponsesApi"] is False
        assert "useLegacyCompletionsEndpoint" not in model, "false would send autocomplete to chat"


def test_continue_config_json_passes_continues_schema_and_every_entry_works(continue_report, shown,
                                                                           django_db_blocker):
    assert continue_report["json"]["errors"] == []
    config = json.loads(shown[1]["continue-json"])
    for entry in (*config["models"], config["tabAutocompleteModel"]):
        assert entry["provider"] == "openai" and entry["apiKey"] == shown[2]
        assert entry["apiBase"].endswith("/v1") and entry["useResponsesApi"] is False
        assert entry["contextLength"] == catalogue_facts(django_db_blocker, entry["model"])[1]
        assert "useLegacyCompletionsEndpoint" not in entry
    assert config["models"][0]["capabilities"] == {"tools": True}
    assert continue_request(config["models"][0], "chat").status_code == 200
    autocomplete = continue_request(config["tabAutocompleteModel"], "autocomplete")
    assert autocomplete.status_code == 200 and "text_completion" in autocomplete.text
    assert continue_request(config["embeddingsProvider"], "embed").status_code == 200


def test_continue_gets_an_autocomplete_model_it_will_not_send_to_chat():
    def model(public_id: str, kind: str) -> Model:
        return Model(public_id=public_id, kind=kind, capabilities=["completion"], context_length=8192)

    picked = pick_models([model("gpt-oss:20b", "chat"), model("opencoder:8b", "completion"),
                          model("starcoder2:3b", "completion")])
    assert picked.chat == "gpt-oss:20b" and picked.code == "starcoder2:3b"
    only_chat_only = pick_models([model("gpt-oss:20b", "chat")])
    assert only_chat_only.code == "gpt-oss:20b", "no other model: shown, and the page warns"


# ---- coding agents, other editors and chat apps --------------------------------------------------------


def test_coding_agents_get_the_larger_context_variant_and_chat_clients_the_model_itself():
    base = Model(public_id="coder:7b", kind="chat", capabilities=["completion", "tools"], context_length=8192)
    variant = Model(public_id="coder:7b-64k", kind="chat", capabilities=["completion", "tools"],
                    context_length=65536, variant_of_id=1)
    picked = pick_models([variant, base])
    assert (picked.chat, picked.agent) == ("coder:7b", "coder:7b-64k")
    snippets = {s.slug: s.body for s in connect.snippets(picked, "https://gh.example/v1", "sk-gh-test")}
    assert 'model = "coder:7b-64k"' in snippets["codex-config"] and "model_context_window = 65536" in snippets["codex-config"]
    env, _ = shell_effects(snippets["claude-code"], "claude")
    assert env["ANTHROPIC_MODEL"] == "coder:7b-64k" and env["CLAUDE_CODE_MAX_CONTEXT_TOKENS"] == "65536"
    assert json.loads(snippets["opencode"])["model"] == "gatehouse/coder:7b-64k"
    assert form_fields(snippets["cline"])["Model ID"] == "coder:7b-64k"
    assert "model: \"coder:7b\"" in snippets["continue-yaml"]  # chat stays on the model itself
    groups = {c.slug: c for g in connect.client_groups(picked, "https://gh.example/v1") for c in g.clients}
    assert groups["codex"].warning == "" and "variant" not in groups["claude-code"].warning
    without = pick_models([base])
    assert without.agent == "coder:7b"
    warning = {c.slug: c for g in connect.client_groups(without, "https://gh.example/v1") for c in g.clients}["codex"].warning
    assert "8,192 tokens" in warning and "variant with a larger context" in warning



def shell_effects(snippet: str, command: str | None = None) -> tuple[dict[str, str], list[str]]:
    """Runs the snippet in bash, with `command` (the client it starts) stood in for by a function that
    reports its arguments; returns the environment the client would get, and those arguments."""
    stand_in = f'{command}() {{ for arg in "$@"; do echo "ARG $arg"; done; }}\n' if command else ""
    script = stand_in + snippet + 'env | sed "s/^/ENV /"\n'
    output = run(["bash", "-e", "-c", script], env={"PATH": os.environ["PATH"]})
    lines = output.splitlines()
    env = dict(line[4:].split("=", 1) for line in lines if line.startswith("ENV "))
    return env, [line[4:] for line in lines if line.startswith("ARG ")]


def form_fields(text: str) -> dict[str, str]:
    """The 'Field: value' lines of a snippet that tells what to type into a client's settings form."""
    return dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)


def test_codex_cli_gets_a_responses_provider_and_its_key_from_the_environment(shown, gatehouse):
    config = tomllib.loads(shown[1]["codex-config"])
    provider = config["model_providers"][config["model_provider"]]
    assert config["model"] == CHAT_MODEL and config["model_context_window"] > 0
    assert provider["base_url"] == gatehouse.url + "/v1" and provider["wire_api"] == "responses"
    assert provider["env_key"] == KEY_VARIABLE
    env, _ = shell_effects(shown[1]["codex-key"])
    assert env[KEY_VARIABLE] == shown[2]


def test_claude_code_gets_the_site_without_v1_the_key_a_model_and_its_context(shown, gatehouse, django_db_blocker):
    env, args = shell_effects(shown[1]["claude-code"], "claude")
    assert env["ANTHROPIC_BASE_URL"] == gatehouse.url, "the Anthropic SDK adds /v1/messages itself"
    assert env["ANTHROPIC_AUTH_TOKEN"] == shown[2]
    assert env["ANTHROPIC_MODEL"] == env["ANTHROPIC_SMALL_FAST_MODEL"] == CHAT_MODEL
    # Else Claude Code assumes an unknown model holds a million tokens and never compacts in time.
    assert env["CLAUDE_CODE_MAX_CONTEXT_TOKENS"] == str(catalogue_facts(django_db_blocker, CHAT_MODEL)[1])
    assert env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] == "1" and args == []


def test_opencode_gets_an_openai_compatible_provider_with_the_key_from_the_environment(shown, gatehouse):
    config = json.loads(shown[1]["opencode"])
    provider = config["provider"]["gatehouse"]
    assert provider["npm"] == "@ai-sdk/openai-compatible"
    assert provider["options"] == {"baseURL": gatehouse.url + "/v1", "apiKey": "{env:" + KEY_VARIABLE + "}"}
    assert config["model"] == f"gatehouse/{CHAT_MODEL}" and provider["models"][CHAT_MODEL]["limit"]["context"] > 0
    assert shell_effects(shown[1]["opencode-key"])[0][KEY_VARIABLE] == shown[2]


def test_aider_gets_the_base_url_the_key_and_an_openai_model(shown, gatehouse):
    env, args = shell_effects(shown[1]["aider"], "aider")
    assert env["OPENAI_API_BASE"] == gatehouse.url + "/v1" and env["OPENAI_API_KEY"] == shown[2]
    assert args == ["--model", f"openai/{CHAT_MODEL}"]


def test_zed_gets_an_openai_compatible_provider_whose_key_variable_the_page_sets(shown, gatehouse):
    providers = json.loads(shown[1]["zed"])["language_models"]["openai_compatible"]
    (name, provider), = providers.items()
    assert provider["api_url"] == gatehouse.url + "/v1"
    models = {model["name"]: model for model in provider["available_models"]}
    assert models[CHAT_MODEL]["max_tokens"] > 0 and models[CHAT_MODEL]["capabilities"]["tools"] is True
    # Zed reads an OpenAI-compatible provider's key from <NAME>_API_KEY.
    assert f"{name.upper()}_API_KEY" == KEY_VARIABLE
    assert shell_effects(shown[1]["zed-key"])[0][KEY_VARIABLE] == shown[2]


def test_cline_and_open_webui_get_the_openai_and_ollama_urls_and_the_key(shown, gatehouse):
    cline, cline_ollama = form_fields(shown[1]["cline"]), form_fields(shown[1]["cline-ollama"])
    assert (cline["Base URL"], cline["API Key"], cline["Model ID"]) == (gatehouse.url + "/v1", shown[2], CHAT_MODEL)
    assert (cline_ollama["Base URL"], cline_ollama["API Key"]) == (gatehouse.url + "/ollama", shown[2])
    openai_part, ollama_part = shown[1]["open-webui"].split("\n\n")
    assert form_fields(openai_part) == {"URL": gatehouse.url + "/v1", "Key": shown[2]}
    assert form_fields(ollama_part) == {"URL": gatehouse.url + "/ollama", "Key": shown[2]}


def test_the_openai_base_urls_handed_to_clients_list_the_chat_model_with_the_key(shown):
    bases = {form_fields(shown[1]["cline"])["Base URL"], shell_effects(shown[1]["aider"], "aider")[0]["OPENAI_API_BASE"],
             json.loads(shown[1]["zed"])["language_models"]["openai_compatible"]["Gatehouse"]["api_url"]}
    (base,) = bases
    listed = httpx.get(base + "/models", headers={"Authorization": f"Bearer {shown[2]}"}, timeout=30)
    assert listed.status_code == 200 and CHAT_MODEL in {model["id"] for model in listed.json()["data"]}


def test_codex_clis_provider_answers_on_the_responses_api(shown):
    config = tomllib.loads(shown[1]["codex-config"])
    provider = config["model_providers"][config["model_provider"]]
    key = shell_effects(shown[1]["codex-key"])[0][provider["env_key"]]
    client = openai.OpenAI(base_url=provider["base_url"], api_key=key, max_retries=0)
    assert client.responses.create(model=config["model"], input="Say hello", max_output_tokens=32).output_text


def test_claude_codes_environment_answers_on_the_messages_api(shown):
    env, _ = shell_effects(shown[1]["claude-code"], "claude")
    client = anthropic.Anthropic(base_url=env["ANTHROPIC_BASE_URL"], auth_token=env["ANTHROPIC_AUTH_TOKEN"],
                                 api_key=None, max_retries=0)
    reply = client.messages.create(model=env["ANTHROPIC_MODEL"], max_tokens=32,
                                   messages=[{"role": "user", "content": "Say hello"}])
    assert reply.content[0].text


def test_the_ollama_url_handed_to_cline_and_open_webui_lists_the_chat_model_with_the_key(shown):
    fields = form_fields(shown[1]["cline-ollama"])
    tags = httpx.get(fields["Base URL"] + "/api/tags", headers={"Authorization": f"Bearer {fields['API Key']}"},
                     timeout=30)
    assert tags.status_code == 200 and CHAT_MODEL in {model["name"] for model in tags.json()["models"]}
