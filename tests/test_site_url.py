"""With no SITE_URL, every URL the portal and the API hand out is the one the request came in on, so a
server on another port (WEB_PORT=8100) points at itself: the home page's API base URL, the Connect
page and its snippets, both Continue configurations, the snippets shown with a new key, the link in the
API's 401 message (from the view and from the web edge) and `make run`'s start-up lines. SITE_URL,
when set, still wins; behind a trusted proxy the forwarded scheme and host count, and only then.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading

import httpx
import pytest
import yaml
from django.core.management import call_command
from django.test import Client

from tests.support.browser import DESKTOP, screenshot
from tests.support.processes import REPO, STARTING, DaphneServer, RedisServer, eventually, free_port
from tests.test_portal_browser import sign_in

URL_RE = re.compile(r"https?://[^\s\"'<>`]+")


@pytest.fixture(scope="module")
def portless(world, redis_server, static_root):
    """A web process started with SITE_URL empty, on a random port."""
    from tests.conftest import live_server_env

    server = DaphneServer({**live_server_env(redis_server, static_root), "SITE_URL": ""})
    yield server
    server.stop()


def urls_in(text: str) -> set[str]:
    return set(URL_RE.findall(text))


def only_own(urls: set[str], own: str) -> None:
    assert urls, "no URL at all"
    strangers = {url for url in urls if url != own and not url.startswith(own + "/")}
    assert not strangers, f"URLs not on {own}: {strangers}"


def test_every_page_and_snippet_points_at_the_port_it_was_served_on(browser, portless, world):
    own = portless.url
    assert ":8000" not in own
    page = browser.new_context(viewport=DESKTOP).new_page()
    sign_in(page, own, "alice", "pw-alice")
    assert page.input_value("#api-base") == own + "/v1"
    screenshot(page, "site-url-home")

    page.goto(own + "/connect/")
    assert page.input_value("#api-base") == own + "/v1"
    snippets = {code.get_attribute("data-snippet"): code.inner_text() for code in page.locator("[data-snippet]").all()}
    assert {"curl", "python", "javascript", "langchain", "continue-yaml", "continue-json"} <= set(snippets)
    only_own(urls_in("\n".join(snippets.values())), own)
    assert own + "/ollama" in snippets["open-webui"] and own + "\n" in snippets["claude-code"]
    assert {m["apiBase"] for m in yaml.safe_load(snippets["continue-yaml"])["models"]} == {own + "/v1"}
    config = json.loads(snippets["continue-json"])
    assert {m["apiBase"] for m in (*config["models"], config["tabAutocompleteModel"],
                                   config["embeddingsProvider"])} == {own + "/v1"}
    screenshot(page, "site-url-connect")

    page.goto(own + "/settings/account/")
    page.get_by_label("Name").fill("port check")
    page.get_by_role("button", name="Create key").click()
    page.wait_for_selector("#new-key-value")
    plain = page.input_value("#new-key-value")
    page.get_by_text("Set up a client with this key").click()
    shown = {code.get_attribute("data-snippet"): code.inner_text() for code in page.locator("[data-snippet]").all()}
    assert set(shown) == set(snippets)
    # Configuration files name the variable holding the key; the line that sets it is next to them.
    for slug, text in shown.items():
        assert (plain in text) == (slug not in {"zed", "codex-config", "opencode"}), slug
    only_own(urls_in("\n".join(shown.values())), own)
    # And the base URL shown works: the curl snippet, as shown, lists the models.
    models = httpx.get(own + "/v1/models", headers={"Authorization": f"Bearer {plain}"})
    assert models.status_code == 200
    page.context.close()


def test_the_401_links_to_the_account_page_on_the_port_it_was_asked_on(portless):
    own = portless.url
    from_view = httpx.get(own + "/v1/models").json()["error"]["message"]
    assert f"{own}/settings/account/" in from_view
    # A request with a body is refused at the web edge, before Django sees it: the same link.
    from_edge = httpx.post(own + "/v1/chat/completions", json={"model": "x", "messages": []})
    assert from_edge.status_code == 401
    assert f"{own}/settings/account/" in from_edge.json()["error"]["message"]
    # Another allowed name for the same server: the link uses that name.
    by_name = httpx.get(own + "/v1/models", headers={"Host": f"localhost:{portless.port}"}).json()
    assert f"http://localhost:{portless.port}/settings/account/" in by_name["error"]["message"]


def test_a_name_not_allowed_is_never_handed_out(portless):
    # The view answers 400 for it; the edge, which answers first, leaves the link relative.
    response = httpx.post(portless.url + "/v1/chat/completions", json={"model": "x", "messages": []},
                          headers={"Host": "evil.example"})
    assert response.status_code == 401
    message = response.json()["error"]["message"]
    assert "evil.example" not in message and "page: /settings/account/" in message


def test_an_ipv6_allowed_host_is_answered_however_it_is_written(world, redis_server, static_root):
    from tests.conftest import live_server_env

    # "::1" as people write it in ALLOWED_HOSTS; Django matches "[::1]", as the Host header has it.
    server = DaphneServer({**live_server_env(redis_server, static_root), "SITE_URL": "",
                           "ALLOWED_HOSTS": "127.0.0.1,::1"})
    try:
        host = {"Host": f"[::1]:{server.port}"}
        assert httpx.get(server.url + "/accounts/login/", headers=host).status_code == 200
        refused = httpx.get(server.url + "/v1/models", headers=host)
        assert refused.status_code == 401, refused.text  # not 400 invalid_host
        assert f"http://[::1]:{server.port}/settings/account/" in refused.json()["error"]["message"]
        assert httpx.get(server.url + "/v1/models", headers={"Host": "evil.example"}).status_code == 400
    finally:
        server.stop()


@pytest.mark.django_db
def test_forwarded_headers_count_only_behind_a_trusted_proxy(world, settings):
    settings.SITE_URL = ""
    settings.ALLOWED_HOSTS = ["testserver", "gatehouse.example.org"]
    client = Client()
    client.force_login(world.users["bob"])
    forwarded = {"HTTP_X_FORWARDED_PROTO": "https", "HTTP_X_FORWARDED_HOST": "gatehouse.example.org"}
    assert 'value="http://testserver/v1"' in client.get("/", **forwarded).content.decode()
    # TRUST_PROXY_HEADERS=true sets these two (portal/settings.py).
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.USE_X_FORWARDED_HOST = True
    page = client.get("/connect/", **forwarded).content.decode()
    assert 'value="https://gatehouse.example.org/v1"' in page
    assert "https://gatehouse.example.org/v1/chat/completions" in page


@pytest.mark.django_db
def test_site_url_when_set_still_wins(world, settings):
    settings.SITE_URL = "https://public.example.org"
    client = Client()
    client.force_login(world.users["bob"])
    assert 'value="https://public.example.org/v1"' in client.get("/").content.decode()
    page = client.get("/connect/").content.decode()
    assert "https://public.example.org/v1/models" in page and "testserver" not in page


@pytest.mark.django_db
def test_the_first_run_message_names_web_host_and_port(world, settings, tmp_path, capsys):
    from django.contrib.auth import get_user_model

    settings.SITE_URL, settings.WEB_HOST, settings.WEB_PORT, settings.RUN_DIR = "", "127.0.0.1", 8100, tmp_path
    existing = get_user_model().objects.filter(is_superuser=True).exists()
    call_command("ensureadmin")
    printed = capsys.readouterr().out
    assert ("sign in at" if existing else "Sign in at") + " http://127.0.0.1:8100/admin/" in printed


# -- make run's web process: its banner, and [::1] ---------------------------------------------------

def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


class Lines:
    """Collects a process's output from a thread so the pipe never fills up."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.text = ""
        threading.Thread(target=self._read, args=(proc,), daemon=True).start()

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            self.text += line


@pytest.fixture(scope="module")
def runstack(tmp_path_factory):
    """`manage.py ensureadmin` and `manage.py runstack` (what `make run` runs) with WEB_PORT set and no
    SITE_URL, on a database, Redis and simulator of their own."""
    tmp = tmp_path_factory.mktemp("runstack")
    redis_server = RedisServer()
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in ("SITE_URL", "OLLAMA_NODES", "DATABASE_URL", "DEBUG", "SECRET_KEY", "ALLOWED_HOSTS")}
    env.update({"REDIS_URL": redis_server.url, "SQLITE_PATH": str(tmp / "db.sqlite3"), "RUN_DIR": str(tmp / "run"),
                "WEB_PORT": str(port), "SIMULATOR_PORT": str(free_port()), "PYTHONUNBUFFERED": "1",
                "LOG_LEVEL": "WARNING"})
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "--noinput", "-v", "0"], cwd=REPO, env=env, check=True, timeout=120)
    first_run = subprocess.run([*manage, "ensureadmin"], cwd=REPO, env=env, check=True, timeout=60,
                               capture_output=True, text=True).stdout
    proc = subprocess.Popen([*manage, "runstack"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    output = Lines(proc)
    try:
        eventually(lambda: "Gatehouse is running on" in output.text, timeout=120, what="runstack's banner",
                   proc=proc)
        yield port, first_run, output, tmp
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: runstack stops its children in order
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        pids = tmp / "run" / "stack.pids"
        for line in pids.read_text().splitlines() if pids.exists() else []:
            try:
                os.killpg(int(line.split()[1]), signal.SIGKILL)  # each child leads a session of its own
            except ProcessLookupError:
                pass
        redis_server.stop()


def test_make_runs_banner_and_first_run_message_name_its_port(runstack):
    port, first_run, output, _ = runstack
    own = f"http://127.0.0.1:{port}"
    assert f"Sign in at {own}/admin/" in first_run
    assert f"Gatehouse is running on {own}  (Ctrl-C stops it)" in output.text
    assert ":8000" not in first_run + output.text
    assert httpx.get(own + "/healthz", timeout=10).status_code == 200


@pytest.mark.skipif(not ipv6_loopback(), reason="this machine has no IPv6 loopback")
def test_make_run_answers_on_ipv6_loopback_too(runstack, browser):
    port, first_run, _, _ = runstack
    password = re.search(r"password: (\S+)", first_run).group(1)
    own = f"http://[::1]:{port}"
    eventually(lambda: httpx.get(own + "/healthz", timeout=5).status_code == 200, what="[::1] answers",
               ignore=STARTING, timeout=30)
    # The API's 401 link is on [::1] too, and a browser there signs in (forms, CSRF, session cookie).
    assert f"{own}/settings/account/" in httpx.get(own + "/v1/models").json()["error"]["message"]
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    sign_in(page, own, "admin", password)
    assert page.input_value("#api-base") == own + "/v1"
    context.close()
