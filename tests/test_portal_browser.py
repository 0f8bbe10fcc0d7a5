"""A person's whole path in a real browser (Debian's headless Chromium) against the live server in
production mode: sign in, create a key, copy it from the page, call /v1/models with it (200), revoke
it, call again (401). axe-core checks every page on the way; screenshots of the keys, Connect and
Models pages at desktop and phone width go to test-artifacts/screenshots/."""

from __future__ import annotations

import tomllib

import httpx

from tests.support.browser import (
    DESKTOP,
    PHONE,
    screenshot,
    serious_accessibility_violations,
)
from tests.support.processes import eventually


def accessible(page) -> None:
    found = serious_accessibility_violations(page)
    assert not found, f"axe-core on {page.url}: {found}"


def sign_in(page, url: str, username: str, password: str) -> None:
    page.goto(url + "/")
    accessible(page)
    page.get_by_role("link", name="Sign in").first.click()
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    accessible(page)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_selector(f"text=Welcome, {username}")
    accessible(page)


def models_status(base: str, key: str) -> int:
    return httpx.get(base + "/v1/models", headers={"Authorization": f"Bearer {key}"}).status_code


def test_a_person_creates_copies_uses_and_revokes_a_key(browser, gatehouse, world):
    context = browser.new_context(viewport=DESKTOP)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=gatehouse.url)
    page = context.new_page()
    sign_in(page, gatehouse.url, "alice", "pw-alice")

    page.locator("details.user-menu summary").click()  # the user menu
    page.get_by_role("link", name="Settings › Account").click()
    page.wait_for_selector("h1:text('Account settings')")
    accessible(page)
    page.get_by_label("Name").fill("browser laptop")
    page.get_by_label("Expires").select_option(label="In 7 days")
    page.get_by_role("button", name="Create key").click()
    page.wait_for_selector("#new-key-value")
    accessible(page)
    page.get_by_role("button", name="Copy key").click()
    page.wait_for_selector("button.copied")
    key = page.evaluate("navigator.clipboard.readText()")
    assert key.startswith("sk-gh-") and key == page.input_value("#new-key-value")
    assert models_status(gatehouse.url, key) == 200

    page.get_by_text("Set up a client with this key").click()
    assert key in page.inner_text("[data-snippet='python']")

    page.goto(gatehouse.url + "/settings/account/")
    assert key not in page.content(), "the key is shown once"
    screenshot(page, "keys-desktop")
    row = page.locator("tr", has_text="browser laptop")
    row.get_by_role("link", name="Revoke").click()
    page.wait_for_selector("h1:text('Revoke')")
    accessible(page)
    page.get_by_role("button", name="Revoke key").click()
    page.wait_for_selector("text=It stops working within a few seconds")
    assert "Revoked" in page.locator("tr", has_text="browser laptop").inner_text()
    eventually(lambda: models_status(gatehouse.url, key) == 401, what="the revoked key still works", interval=0.1)

    for path, name in (("/connect/", "connect"), ("/models/", "models")):
        page.goto(gatehouse.url + path)
        accessible(page)
        screenshot(page, f"{name}-desktop")
    page.goto(gatehouse.url + "/accounts/password/")
    accessible(page)

    phone = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True, storage_state=context.storage_state())
    small = phone.new_page()
    for path, name in (("/settings/account/", "keys"), ("/connect/", "connect"), ("/models/", "models")):
        small.goto(gatehouse.url + path)
        accessible(small)
        overflow = small.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"{path} scrolls sideways on a phone by {overflow}px"
        screenshot(small, f"{name}-phone")
    phone.close()
    context.close()


def test_the_connect_page_groups_the_clients_and_copies_a_coding_agents_config(browser, gatehouse, world):
    context = browser.new_context(viewport=DESKTOP)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=gatehouse.url)
    page = context.new_page()
    sign_in(page, gatehouse.url, "alice", "pw-alice")
    page.goto(gatehouse.url + "/connect/")
    for group in ("Editors", "Coding agents", "Chat apps", "SDKs and curl"):
        assert page.get_by_role("heading", name=group, level=2).is_visible()
    agents = page.locator("section.client-group", has=page.get_by_role("heading", name="Coding agents", level=2))
    for client in ("Codex CLI", "Claude Code", "OpenCode", "Aider"):
        assert agents.get_by_role("heading", name=client, level=3).is_visible()
    assert "autocomplete" in page.locator("#continue .notice-warning").inner_text()

    page.get_by_role("navigation", name="Clients").get_by_role("link", name="Codex CLI").click()
    page.get_by_role("button", name="Copy the Codex CLI: config.toml snippet").click()
    page.wait_for_selector("button.copied")
    config = tomllib.loads(page.evaluate("navigator.clipboard.readText()"))
    assert config["model_providers"][config["model_provider"]]["base_url"] == gatehouse.url + "/v1"
    assert config["model_providers"][config["model_provider"]]["wire_api"] == "responses"
    context.close()


def test_the_user_menu_works_from_the_keyboard(browser, gatehouse, world):
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    sign_in(page, gatehouse.url, "bob", "pw-bob")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.locator("details.user-menu summary").focus()
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Settings › Account"
    page.keyboard.press("Enter")
    page.wait_for_selector("h1:text('Account settings')")
    context.close()


def test_reloading_after_create_key_makes_no_second_key_and_shows_the_key_once(browser, gatehouse, world,
                                                                                django_db_blocker, monkeypatch):
    from apiaccess.models import ApiKey

    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    sign_in(page, gatehouse.url, "bob", "pw-bob")
    page.goto(gatehouse.url + "/settings/account/")
    page.get_by_label("Name").fill("reload check")
    page.get_by_role("button", name="Create key").click()
    page.wait_for_selector("#new-key-value")
    plain = page.input_value("#new-key-value")
    assert page.url == gatehouse.url + "/settings/account/", "the form's POST was answered with a redirect"
    screenshot(page, "new-key-desktop")

    def rows() -> int:
        return page.locator("#key-table tbody tr", has_text="reload check").count()

    assert rows() == 1 and page.content().count(plain) >= 1
    for _ in range(2):
        page.reload()
        page.wait_for_selector("h1:text('Account settings')")
        assert rows() == 1, "a reload created a second key"
        assert plain not in page.content() and page.locator("#new-key-value").count() == 0, "the key is shown once"
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's loop runs in this thread
    with django_db_blocker.unblock():
        assert ApiKey.objects.filter(user__username="bob", name="reload check").count() == 1
    assert models_status(gatehouse.url, plain) == 200
    context.close()


def test_signed_out_visitors_of_staff_pages_sign_in_on_the_portal(browser, gatehouse, world, django_db_blocker,
                                                                   monkeypatch):
    from django.contrib.auth import get_user_model

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with django_db_blocker.unblock():
        if not get_user_model().objects.filter(username="olga").exists():
            get_user_model().objects.create_user("olga", password="pw-olga", is_staff=True)
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    page.goto(gatehouse.url + "/dashboard/")
    assert page.url == gatehouse.url + "/accounts/login/?next=/dashboard/"
    assert "Gatehouse admin" not in page.title() and page.locator("header.topbar").count() == 1
    accessible(page)
    page.get_by_label("Username").fill("olga")
    page.get_by_label("Password").fill("pw-olga")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(gatehouse.url + "/dashboard/")
    context.close()

    # Signed in but not staff: the portal says no, rather than sending them to sign in again.
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    sign_in(page, gatehouse.url, "charlie", "pw-charlie")
    response = page.goto(gatehouse.url + "/dashboard/")
    assert response.status == 403 and page.url == gatehouse.url + "/dashboard/"
    assert "This page is for staff." in page.inner_text("main")
    accessible(page)
    screenshot(page, "forbidden-desktop")
    context.close()


def test_every_page_has_an_icon_and_nothing_is_missing(browser, gatehouse, world):
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    failed = []
    page.on("response", lambda response: failed.append(response.url) if response.status >= 400 else None)
    sign_in(page, gatehouse.url, "alice", "pw-alice")
    for path in ("/connect/", "/models/", "/usage/", "/batches/", "/settings/account/", "/admin/login/"):
        page.goto(gatehouse.url + path)
    page.goto(gatehouse.url + "/")
    icons = page.eval_on_selector_all("link[rel=icon]", "links => links.map(l => l.href)")
    assert len(icons) == 2
    fetched = page.evaluate("""async urls => Promise.all(urls.map(async u => {
        const r = await fetch(u); return [r.status, r.headers.get('content-type'), (await r.arrayBuffer()).byteLength];
    }))""", [*icons, gatehouse.url + "/favicon.ico"])
    for status, content_type, size in fetched:
        assert status == 200 and content_type.startswith("image/") and size > 100, fetched
    assert fetched[-1][1] == "image/x-icon"
    assert not failed, f"missing: {failed}"
    ico = httpx.get(gatehouse.url + "/favicon.ico")
    assert ico.content[:4] == b"\x00\x00\x01\x00", "an ICO file"
    assert "max-age" in ico.headers["cache-control"]
    context.close()
