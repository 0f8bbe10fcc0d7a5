"""Home, sign-in/out, password change, sign-up, Connect and Models: a view test for each page and permission."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from inference.models import Model
from tests.conftest import CHAT_MODEL, CODE_MODEL, EMBED_MODEL

pytestmark = pytest.mark.django_db

PAGES = ["/connect/", "/models/", "/settings/account/", "/accounts/password/"]


def signed_in(world, name: str) -> Client:
    client = Client()
    client.force_login(world.users[name])
    return client


def test_it_tells_visitors_what_gatehouse_is_and_lists_no_models(world):
    page = Client().get("/").content.decode()
    assert "Sign in" in page and 'href="/accounts/login/"' in page
    for model in Model.objects.all():
        assert model.public_id not in page
    assert "Sign up" not in page, "sign-up is off by default"


@pytest.mark.parametrize("url", PAGES)
def test_every_page_needs_a_signed_in_person(world, url):
    response = Client().get(url)
    assert response.status_code == 302
    assert response["Location"] == f"/accounts/login/?next={url}"


def test_it_signs_in_with_a_password_and_out_with_a_post(world):
    client = Client(enforce_csrf_checks=True)
    login_page = client.get("/accounts/login/")
    assert b'<label for="id_username">' in login_page.content
    token = login_page.cookies["csrftoken"].value
    wrong = client.post("/accounts/login/", {"username": "alice", "password": "nope", "csrfmiddlewaretoken": token})
    assert wrong.status_code == 200 and b"Please enter a correct username and password" in wrong.content
    ok = client.post("/accounts/login/", {"username": "alice", "password": "pw-alice", "csrfmiddlewaretoken": token,
                                          "next": "/connect/"})
    assert ok.status_code == 302 and ok["Location"] == "/connect/"
    home = client.get("/").content.decode()
    assert "Welcome, alice" in home and 'action="/accounts/logout/"' in home
    assert client.get("/accounts/logout/").status_code == 405, "signing out takes a POST (CSRF-protected)"
    token = client.cookies["csrftoken"].value
    assert client.post("/accounts/logout/", {"csrfmiddlewaretoken": token}).status_code == 302
    assert client.get("/connect/").status_code == 302


def test_it_changes_the_password(world):
    dora = get_user_model().objects.create_user("dora", password="first-Passw0rd!")
    client = Client()
    client.force_login(dora)
    response = client.post("/accounts/password/", {"old_password": "first-Passw0rd!",
                                                   "new_password1": "second-Passw0rd!",
                                                   "new_password2": "second-Passw0rd!"})
    assert response.status_code == 302 and response["Location"] == "/accounts/password/done/"
    dora.refresh_from_db()
    assert dora.check_password("second-Passw0rd!")


def test_sign_up_is_closed_by_default(world):
    assert Client().get("/accounts/signup/").status_code == 404
    assert Client().post("/accounts/signup/", {"username": "eve"}).status_code == 404


def test_sign_up_when_open_creates_an_account_and_signs_it_in(world, settings):
    settings.SIGNUP_ENABLED = True
    client = Client()
    assert b"Sign up" in client.get("/").content
    response = client.post("/accounts/signup/", {"username": "erin", "email": "erin@example.org",
                                                "password1": "a-Long-passw0rd", "password2": "a-Long-passw0rd"})
    assert response.status_code == 302 and response["Location"] == "/settings/account/"
    assert get_user_model().objects.get(username="erin").email == "erin@example.org"
    assert client.get("/settings/account/").status_code == 200


def test_the_home_page_of_a_signed_in_person_links_every_page(world):
    page = signed_in(world, "bob").get("/").content.decode()
    for link in ('href="/settings/account/"', 'href="/connect/"', 'href="/models/"', 'href="/batches/"'):
        assert link in page
    assert "/v1" in page
    assert 'href="/admin/"' not in page, "the Admin link is for staff only"


def test_the_connect_page_shows_every_client_with_a_placeholder_key(world):
    page = signed_in(world, "bob").get("/connect/").content.decode()
    for slug in ("curl", "python", "javascript", "langchain", "continue-yaml", "continue-json", "cline", "zed",
                 "codex-config", "claude-code", "opencode", "aider", "open-webui"):
        assert f'data-snippet="{slug}"' in page
    for group in ("Editors", "Coding agents", "Chat apps", "SDKs and curl"):
        assert f">{group}</h2>" in page
    assert "YOUR_API_KEY" in page and "sk-gh-" not in page
    assert CHAT_MODEL in page and CODE_MODEL in page and EMBED_MODEL in page
    assert "check_embedding_ctx_length=False" in page


def test_the_models_page_lists_enabled_models_with_their_figures(world):
    hidden = Model.objects.create(public_id="retired:1b", ollama_name="retired:1b", enabled=False)
    page = signed_in(world, "charlie").get("/models/").content.decode()
    chat = Model.objects.get(public_id=CHAT_MODEL)
    assert CHAT_MODEL in page and EMBED_MODEL in page and hidden.public_id not in page
    assert f"{chat.context_length:,} tokens" in page
    assert f"{chat.concurrency} per server" in page
    for heading in ("Kind", "Context length", "Concurrency", "Loaded now", "Waiting", "Typical wait"):
        assert heading in page


def test_the_models_page_shows_what_the_scheduler_sees_now(world, base_url):
    """The live columns come from the scheduler's state in the suite's Redis, which the live server
    shares: after a request the model is loaded and nothing waits."""
    import httpx

    reply = httpx.post(base_url + "/chat/completions", headers={"Authorization": f"Bearer {world.alice_key}"},
                       json={"model": CHAT_MODEL, "max_tokens": 1, "messages": [{"role": "user", "content": "x"}]},
                       timeout=60)
    assert reply.status_code == 200
    page = signed_in(world, "alice").get("/models/").content.decode()
    row = page[page.index(f">{CHAT_MODEL}<"):]
    row = row[:row.index("</tr>")]
    assert 'data-label="Loaded now">yes, on 1 server' in row
    assert 'data-label="Waiting">0<' in row
    assert 'data-label="Typical wait">none<' in row


def test_the_models_page_is_not_the_api_route_without_v1(world):
    response = Client().get("/models")
    assert response.status_code == 404 and response["Content-Type"] == "application/json"
    assert "/v1" in response.json()["error"]["message"]


def test_the_live_dashboard_signs_in_on_the_portal_and_stays_staff_only(world):
    assert Client().get("/dashboard/")["Location"] == "/accounts/login/?next=/dashboard/"
    refused = signed_in(world, "bob").get("/dashboard/")
    assert refused.status_code == 403 and b"This page is for staff." in refused.content
    staff = get_user_model().objects.create_user("stella", password="pw", is_staff=True)
    client = Client()
    client.force_login(staff)
    assert client.get("/dashboard/").status_code == 200


def test_favicon_ico_is_answered_and_every_page_links_an_icon(world):
    icon = Client().get("/favicon.ico")
    assert icon.status_code == 200 and icon["Content-Type"] == "image/x-icon"
    assert icon.content[:4] == b"\x00\x00\x01\x00"
    page = Client().get("/").content.decode()
    assert 'rel="icon" href="/static/portal/favicon.ico"' in page
    assert 'rel="icon" href="/static/portal/favicon.svg" type="image/svg+xml"' in page


def test_the_admin_is_titled_gatehouse(world):
    staff = get_user_model().objects.create_superuser("root", password="pw")
    client = Client()
    client.force_login(staff)
    page = client.get("/admin/").content.decode()
    assert "<title>Site administration | Gatehouse admin</title>" in page
    assert ">Gatehouse</a>" in page and "Django administration" not in page
    assert 'href="/admin/"' in client.get("/").content.decode()


def test_pages_are_styled_by_files_served_here(world):
    page = signed_in(world, "alice").get("/connect/").content.decode()
    assert 'href="/static/portal/portal.css"' in page and 'src="/static/portal/portal.js"' in page
    assert "https://" not in page.split("<body>")[0], "no asset from another site"


def test_the_live_server_sets_secure_cookies_and_safe_headers(gatehouse):
    import httpx

    response = httpx.get(gatehouse.url + "/accounts/login/")
    assert response.status_code == 200
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("csrftoken=") and "Secure" in cookie and "SameSite=Lax" in cookie
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"
    css = httpx.get(gatehouse.url + "/static/portal/portal.css")
    assert css.status_code == 200 and "text/css" in css.headers["content-type"]
