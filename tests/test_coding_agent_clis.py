"""The coding agents themselves, Codex CLI and Claude Code (the versions locked in tests/node), set up with
the Connect page's own snippets and run against the live server: each prints the answer Gatehouse served
(a usage record per request shows it went through the queue, its tokens counted), a revoked key makes it
fail with Gatehouse's words, and it reaches nothing but Gatehouse.

"Nothing but Gatehouse": every proxy variable points at a recording proxy on loopback (the server itself
is exempt through NO_PROXY), which must see no request. Both CLIs do go through it when they reach out:
without their offline settings it records where they would have gone.
"""

from __future__ import annotations

import os
import shlex
import signal
import socketserver
import subprocess
import threading
import tomllib
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from apiaccess import connect
from apiaccess.access import usable_models
from apiaccess.verification import REVOKED
from ollamasim.generation import count_tokens
from tests.conftest import CHAT_MODEL
from tests.support.node import NODE_DIR, node_with_packages
from tests.support.processes import eventually, group_members, kill_group
from tests.support.usage import usage_entries

BIN = NODE_DIR / "node_modules" / ".bin"
# Appended to the Connect page's config.toml, for the test only: these Codex features reach the internet
# on every run whatever the provider (analytics: ab.chatgpt.com; plugins: github.com, api.github.com and
# chatgpt.com), and without the last one a server that cannot be reached is waited for without end.
CODEX_OFFLINE = """
[analytics]
enabled = false

[features]
plugins = false
unbounded_connection_retries = false
"""
# The simulator calls a tool whenever the request offers some (Codex offers nine): name a harmless one,
# which Codex runs without a shell and whose result the simulator's answer then quotes.
CODEX_PROMPT = "Call get_goal, then say hello."
# Claude Code takes everything else from the Connect page's snippet (CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC
# is what keeps it offline); these only keep the test short.
CLAUDE_TEST_ENV = {"CLAUDE_CODE_MAX_OUTPUT_TOKENS": "300", "CLAUDE_CODE_MAX_RETRIES": "0"}
CLAUDE_ARGS = ["-p", "Say hello", "--tools", "", "--system-prompt", "Answer briefly."]  # no tools: one request


class RecordingProxy(socketserver.ThreadingTCPServer):
    """An HTTP proxy that forwards nothing: it records the target of each request (CONNECT host:port, or
    the absolute URL of a plain one) and refuses it."""

    daemon_threads = True

    def __init__(self) -> None:
        self.seen: list[str] = []
        super().__init__(("127.0.0.1", 0), self.Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"

    class Handler(socketserver.StreamRequestHandler):
        timeout = 5

        def handle(self) -> None:
            try:
                words = self.rfile.readline(8192).decode("latin-1").split()
            except OSError:  # connected, then sent nothing (or not HTTP) in time: still an attempt
                words = []
            self.server.seen.append(words[1] if len(words) > 1 else " ".join(words) or "(a connection)")
            try:
                self.wfile.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            except OSError:
                pass


@pytest.fixture
def proxy():
    server = RecordingProxy()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def clis() -> dict[str, Path]:
    node_with_packages()  # installs the locked packages when one is missing (make test has done it)
    return {name: BIN / name for name in ("codex", "claude")}


@dataclass
class Person:
    user: object
    key: str


@pytest.fixture
def person(django_db_blocker) -> Person:
    """Someone new with a key of their own, so their usage records are this test's requests alone."""
    from django.contrib.auth import get_user_model

    from apiaccess.models import ApiKey

    with django_db_blocker.unblock():
        user = get_user_model().objects.create_user(f"agent-{uuid.uuid4().hex[:10]}", password="pw")
        _, key = ApiKey.issue(user, name="terminal")
    return Person(user, key)


def page_snippets(person: Person, base_url: str, key: str, django_db_blocker) -> dict[str, str]:
    """The snippets the person is shown right after creating `key` (the Connect page's text with the key)."""
    with django_db_blocker.unblock():
        models = connect.pick_models(usable_models(person.user))
    return {snippet.slug: snippet.body for snippet in connect.snippets(models, base_url, key)}


def exports(snippet: str) -> tuple[dict[str, str], list[str]]:
    """The variables a shell snippet exports, and its other lines (the command it then runs)."""
    variables, commands = {}, []
    for line in snippet.splitlines():
        words = shlex.split(line)
        if words and words[0] == "export":
            name, value = words[1].split("=", 1)
            variables[name] = value
        elif words:
            commands.append(line)
    return variables, commands


def offline_env(home: Path, proxy: RecordingProxy) -> dict[str, str]:
    """A clean environment (nothing of the developer's: no keys, no config) with an empty home directory
    and every proxy variable, in both spellings, pointing at the recording proxy."""
    home.mkdir(exist_ok=True)
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "TMPDIR": os.environ.get("TMPDIR", "/tmp"),
           "LANG": "C.UTF-8"}
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY"):
        env[name] = env[name.lower()] = proxy.url
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return f"exit {self.returncode}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr[-4000:]}"


def run_cli(argv: list, env: dict[str, str], cwd: Path) -> Run:
    """Run a CLI to its end, with nothing on stdin (given an open pipe, Codex waits for more input), in a
    process group of its own that is killed afterwards with whatever it left behind."""
    proc = subprocess.Popen([str(arg) for arg in argv], env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        kill_group(proc.pid, signal.SIGKILL)
        proc.wait()
        eventually(lambda: not group_members(proc.pid), what="the CLI's processes to end")
    return Run(proc.returncode, stdout, stderr)


def usage_records(redis_server, person: Person, count: int) -> list[dict[str, str]]:
    """The person's usage records in the order written, once there are `count` of them."""
    with redis.Redis.from_url(redis_server.url, decode_responses=True) as store:
        def mine() -> list[dict[str, str]]:
            return [fields for fields in usage_entries(store) if fields["user"] == str(person.user.pk)]

        eventually(lambda: len(mine()) >= count, what=f"{count} usage records")
        return mine()


def assert_served(record: dict[str, str]) -> None:
    """Answered through the queue by the simulator, streamed, with the tokens counted."""
    assert (record["model"], record["status"], record["reason"], record["streamed"]) == (CHAT_MODEL, "200", "ok", "1")
    assert record["node"] and int(record["prompt_tokens"]) > 0 and int(record["completion_tokens"]) > 0


# ---- Codex CLI ------------------------------------------------------------------------------------------


def codex(clis, snippets: dict[str, str], home: Path, proxy: RecordingProxy, *, offline: bool = True) -> Run:
    """`codex exec` with the page's config.toml saved where it says (~/.codex/config.toml) and its key line
    in the environment; retries off, so that a failure is reported at once."""
    (home / ".codex").mkdir(parents=True)
    (home / ".codex" / "config.toml").write_text(snippets["codex-config"] + (CODEX_OFFLINE if offline else ""))
    provider = tomllib.loads(snippets["codex-config"])["model_provider"]
    env = offline_env(home, proxy) | exports(snippets["codex-key"])[0]
    work = home / "project"
    work.mkdir()
    return run_cli([clis["codex"], "exec", "--skip-git-repo-check",
                    "-c", f"model_providers.{provider}.request_max_retries=0",
                    "-c", f"model_providers.{provider}.stream_max_retries=0", CODEX_PROMPT], env, work)


def test_codex_cli_runs_a_tool_and_prints_the_answer_gatehouse_served(clis, gatehouse, base_url, person, proxy,
                                                                     tmp_path, django_db_blocker, redis_server):
    snippets = page_snippets(person, base_url, person.key, django_db_blocker)
    run = codex(clis, snippets, tmp_path / "home", proxy)
    assert run.returncode == 0, run
    answer = run.stdout.strip()
    # The model asked for get_goal, Codex ran it and sent its result back, and the answer quotes it.
    assert answer.startswith('The get_goal tool returned {"goal":null'), run

    call, reply = usage_records(redis_server, person, 2)
    for record in (call, reply):
        assert_served(record)
        assert int(record["prompt_tokens"]) > 2000, "Codex's instructions and nine tools"
    assert int(reply["prompt_tokens"]) > int(call["prompt_tokens"]), "the reply's request holds the call and its result"
    assert int(reply["completion_tokens"]) == count_tokens(answer), "the whole answer, as served"
    assert proxy.seen == [], f"Codex CLI tried to reach {proxy.seen}"


def test_codex_cli_with_a_revoked_key_fails_with_gatehouses_words(clis, gatehouse, base_url, world, person, proxy,
                                                                 tmp_path, django_db_blocker):
    snippets = page_snippets(person, base_url, world.revoked_key, django_db_blocker)
    run = codex(clis, snippets, tmp_path / "home", proxy)
    assert run.returncode != 0 and run.stdout == "", run
    assert f"401 Unauthorized: {REVOKED}" in run.stderr, run
    assert proxy.seen == [], f"Codex CLI tried to reach {proxy.seen}"


def test_without_the_offline_settings_codex_cli_would_reach_chatgpt_and_github(clis, gatehouse, base_url, person,
                                                                               proxy, tmp_path, django_db_blocker):
    snippets = page_snippets(person, base_url, person.key, django_db_blocker)
    run = codex(clis, snippets, tmp_path / "home", proxy, offline=False)
    assert run.returncode == 0, run  # the answer does not need them: only the proxy notices
    hosts = {target.rsplit(":", 1)[0] for target in proxy.seen}
    assert hosts and hosts <= {"ab.chatgpt.com", "chatgpt.com", "github.com", "api.github.com"}, proxy.seen


# ---- Claude Code ----------------------------------------------------------------------------------------


def claude(clis, snippet: str, home: Path, proxy: RecordingProxy, *, drop: str | None = None) -> Run:
    """claude as the page's snippet starts it (its variables, then `claude`), in print mode."""
    variables, commands = exports(snippet)
    assert commands == ["claude"], snippet
    if drop is not None:
        del variables[drop]
    env = offline_env(home, proxy) | variables | CLAUDE_TEST_ENV
    return run_cli([clis["claude"], *CLAUDE_ARGS], env, home)


def test_claude_code_prints_the_answer_gatehouse_served(clis, gatehouse, base_url, person, proxy, tmp_path,
                                                       django_db_blocker, redis_server):
    snippets = page_snippets(person, base_url, person.key, django_db_blocker)
    run = claude(clis, snippets["claude-code"], tmp_path / "home", proxy)
    assert run.returncode == 0, run
    answer = run.stdout.strip()
    (record,) = usage_records(redis_server, person, 1)
    assert_served(record)
    assert answer and int(record["completion_tokens"]) == count_tokens(answer), run
    # The snippet gives the model's context: without it Claude Code warns that it does not know the model.
    assert "doesn't recognize the model" not in run.stderr, run
    assert proxy.seen == [], f"Claude Code tried to reach {proxy.seen}"


def test_claude_code_with_a_revoked_key_shows_gatehouses_401(clis, gatehouse, base_url, world, person, proxy,
                                                            tmp_path, django_db_blocker):
    snippets = page_snippets(person, base_url, world.revoked_key, django_db_blocker)
    run = claude(clis, snippets["claude-code"], tmp_path / "home", proxy)
    assert run.returncode == 1, run
    assert f"API Error: 401 {REVOKED}" in run.stdout, run
    assert proxy.seen == [], f"Claude Code tried to reach {proxy.seen}"


def test_without_the_snippets_nonessential_traffic_line_claude_code_would_reach_anthropic(
        clis, gatehouse, base_url, person, proxy, tmp_path, django_db_blocker):
    snippets = page_snippets(person, base_url, person.key, django_db_blocker)
    run = claude(clis, snippets["claude-code"], tmp_path / "home", proxy, drop="CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC")
    assert run.returncode == 0, run
    assert proxy.seen and set(proxy.seen) == {"api.anthropic.com:443"}, proxy.seen
