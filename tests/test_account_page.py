"""Settings > Account: list, create (key shown once), revoke with confirmation; nobody touches another's keys."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from apiaccess import keys
from apiaccess.models import ApiKey, KeyEvent
from tests.conftest import CHAT_MODEL, EMBED_MODEL

pytestmark = pytest.mark.django_db

KEY_RE = re.compile(r"sk-gh-[A-Za-z0-9]{48}")


@pytest.fixture(autouse=True)
def _redis(redis_server):
    """The page reads fresh last-use times from the suite's Redis."""


def signed_in(world, name: str) -> Client:
    client = Client()
    client.force_login(world.users[name])
    return client


def create(client: Client, **fields) -> str:
    response = client.post("/settings/account/", {"name": "laptop", **fields}, follow=True)
    assert response.status_code == 200
    return response.content.decode()


def test_it_sends_visitors_to_sign_in(world):
    for url in ("/settings/account/", f"/settings/account/keys/{ApiKey.objects.first().pk}/revoke/"):
        response = Client().get(url)
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/?next=")


def test_it_lists_only_the_persons_own_keys_with_every_column(world):
    page = signed_in(world, "alice").get("/settings/account/").content.decode()
    for heading in ("Name", "Key", "Created", "Last used", "Expires", "Models", "Status"):
        assert f">{heading}</th>" in page
    alice_keys = ApiKey.objects.filter(user__username="alice")
    for key in alice_keys:
        assert key.masked in page
    for key in ApiKey.objects.exclude(user__username="alice"):
        assert key.masked not in page
    assert "Revoked" in page and "Expired" in page and "Active" in page
    assert KEY_RE.search(page) is None, "a listing must never carry a whole key"


def test_it_creates_a_key_and_shows_it_once_with_snippets_carrying_it(world):
    alice = signed_in(world, "alice")
    posted = alice.post("/settings/account/", {"name": "ci runner", "expires_in_days": "30",
                                              "allowed_models": [CHAT_MODEL]})
    # POST/redirect/GET: reloading the page that shows the key cannot post the form again.
    assert posted.status_code == 302 and posted["Location"] == "/settings/account/"
    assert KEY_RE.search(posted.content.decode() + str(posted.cookies)) is None
    response = alice.get("/settings/account/")
    page = response.content.decode()
    plain = KEY_RE.search(page).group(0)
    assert "no-store" in response["Cache-Control"]
    stored = ApiKey.objects.get(lookup=keys.lookup_of(plain))
    assert stored.user.username == "alice" and stored.name == "ci runner"
    assert keys.matches(plain, stored.digest) and plain not in (stored.digest, stored.lookup)
    assert [m.public_id for m in stored.allowed_models.all()] == [CHAT_MODEL]
    assert 29.9 < (stored.expires_at - stored.created_at).total_seconds() / 86400 <= 30
    assert 'data-copy="#new-key-value"' in page
    assert 'data-snippet="python"' in page and page.count(plain) > 3, "the snippets carry the new key"
    event = KeyEvent.objects.get(key=stored)
    assert (event.action, event.via, event.actor_username, event.owner_username) == ("created", "portal", "alice", "alice")
    # Shown once: the next visit has only the prefix.
    again = alice.get("/settings/account/").content.decode()
    assert plain not in again and stored.masked in again


def test_until_it_is_shown_the_new_key_is_neither_in_the_session_store_nor_in_the_cookie(world):
    from django.contrib.sessions.models import Session

    alice = signed_in(world, "alice")
    posted = alice.post("/settings/account/", {"name": "split"})
    cookie = posted.cookies["gatehouse_new_key"]
    assert cookie["httponly"] and cookie["path"] == "/settings/account/" and cookie["samesite"] == "Strict"
    assert 0 < int(cookie["max-age"]) <= 300
    stored = Session.objects.get(session_key=alice.session.session_key)
    held = stored.get_decoded()["gatehouse_new_key"]
    stored_key = ApiKey.objects.get(pk=held["id"])
    assert stored_key.name == "split"
    shown = alice.get("/settings/account/")
    plain = KEY_RE.search(shown.content.decode()).group(0)
    assert plain not in stored.session_data and plain not in str(stored.get_decoded())
    assert plain not in cookie.value and keys.lookup_of(plain) == stored_key.lookup
    assert shown.cookies["gatehouse_new_key"].value == "", "the cookie half is deleted once used"
    assert "gatehouse_new_key" not in Session.objects.get(session_key=alice.session.session_key).get_decoded()


def test_the_session_half_alone_shows_nothing(world):
    """Another browser on the same session (the cookie half missing) or a stale cookie: no key, no error."""
    alice = signed_in(world, "alice")
    alice.post("/settings/account/", {"name": "no cookie"})
    del alice.cookies["gatehouse_new_key"]
    page = alice.get("/settings/account/")
    assert page.status_code == 200 and KEY_RE.search(page.content.decode()) is None
    assert ApiKey.objects.filter(user__username="alice", name="no cookie").count() == 1


def test_it_shows_form_errors_and_offers_only_usable_models(world):
    page = signed_in(world, "bob").post("/settings/account/", {"name": "", "allowed_models": ["no-such-model"]})
    text = page.content.decode()
    assert page.status_code == 200 and KEY_RE.search(text) is None
    assert "This field is required." in text and "Select a valid choice" in text
    assert f'value="{EMBED_MODEL}"' in text


def test_it_enforces_the_per_person_key_limit(world, settings):
    charlie = signed_in(world, "charlie")
    from apiaccess.lifecycle import active_keys

    settings.MAX_API_KEYS_PER_USER = active_keys(world.users["charlie"]).count() + 1
    assert KEY_RE.search(create(charlie))
    page = create(charlie, name="one too many")
    assert KEY_RE.search(page) is None
    assert "the most allowed" in page
    assert not ApiKey.objects.filter(user__username="charlie", name="one too many").exists()


def test_it_asks_before_revoking_and_revokes_on_post(world):
    alice = signed_in(world, "alice")
    plain = KEY_RE.search(create(alice, name="to revoke")).group(0)
    key = ApiKey.objects.get(lookup=keys.lookup_of(plain))
    confirm = alice.get(f"/settings/account/keys/{key.pk}/revoke/")
    assert confirm.status_code == 200 and b"Revoke key" in confirm.content
    assert ApiKey.objects.get(pk=key.pk).revoked_at is None, "a GET must not revoke"
    done = alice.post(f"/settings/account/keys/{key.pk}/revoke/", follow=True)
    assert done.redirect_chain[-1][0] == "/settings/account/"
    assert b"Revoked" in done.content
    assert ApiKey.objects.get(pk=key.pk).revoked_at is not None
    assert KeyEvent.objects.filter(key=key, action="revoked", actor_username="alice").count() == 1
    # Revoking twice writes nothing more.
    alice.post(f"/settings/account/keys/{key.pk}/revoke/")
    assert KeyEvent.objects.filter(key=key, action="revoked").count() == 1


@pytest.mark.parametrize("intruder", ["bob", "charlie"])
def test_nobody_sees_or_revokes_another_persons_key(world, intruder):
    target = ApiKey.objects.filter(user__username="alice", revoked_at__isnull=True).first()
    client = signed_in(world, intruder)
    for method in (client.get, client.post):
        assert method(f"/settings/account/keys/{target.pk}/revoke/").status_code == 404
    assert ApiKey.objects.get(pk=target.pk).revoked_at is None
    assert target.masked not in client.get("/settings/account/").content.decode()


@pytest.mark.parametrize("guess", [0, 999_999, -1])
def test_guessed_key_ids_are_404(world, guess):
    client = signed_in(world, "bob")
    url = f"/settings/account/keys/{guess}/revoke/"
    expected = 404
    assert client.get(url).status_code == expected
    assert client.post(url).status_code == expected


def test_every_form_on_the_page_carries_a_csrf_token(world):
    client = Client(enforce_csrf_checks=True)
    client.force_login(world.users["alice"])
    page = client.get("/settings/account/").content.decode()
    assert page.count('name="csrfmiddlewaretoken"') == page.count("<form")
    assert client.post("/settings/account/", {"name": "no token"}).status_code == 403
    key = ApiKey.objects.filter(user__username="alice", revoked_at__isnull=True).first()
    assert client.post(f"/settings/account/keys/{key.pk}/revoke/").status_code == 403
    assert ApiKey.objects.get(pk=key.pk).revoked_at is None
