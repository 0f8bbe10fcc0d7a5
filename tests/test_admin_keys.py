"""The admin: Add shows the new key once, a revoke action that is audited, useful lists, a read-only trail."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from apiaccess import keys
from apiaccess.models import ApiKey, KeyEvent
from tests.conftest import CHAT_MODEL

pytestmark = pytest.mark.django_db

KEY_RE = re.compile(r"sk-gh-[A-Za-z0-9]{48}")


@pytest.fixture
def staff(world, redis_server) -> Client:
    root = get_user_model().objects.create_superuser("root", password="pw")
    client = Client()
    client.force_login(root)
    return client


def test_the_add_page_creates_a_key_and_shows_it_once(staff, world):
    from inference.models import Model

    chat = Model.objects.get(public_id=CHAT_MODEL)
    response = staff.post("/admin/apiaccess/apikey/add/", {
        "user": world.users["charlie"].pk, "name": "given by staff", "expires_at_0": "", "expires_at_1": "",
        "allowed_models": [chat.pk], "priority": "interactive",
    })
    page = response.content.decode()
    assert response.status_code == 200, page
    plain = KEY_RE.search(page).group(0)
    assert "shown only this once" in page and "no-store" in response["Cache-Control"]
    key = ApiKey.objects.get(lookup=keys.lookup_of(plain))
    assert key.user.username == "charlie" and key.name == "given by staff"
    assert list(key.allowed_models.all()) == [chat]
    event = KeyEvent.objects.get(key=key)
    assert (event.action, event.via, event.actor_username, event.owner_username) == ("created", "admin", "root",
                                                                                    "charlie")
    change = staff.get(f"/admin/apiaccess/apikey/{key.pk}/change/").content.decode()
    assert plain not in change and key.masked in change and key.digest not in change


def test_the_revoke_action_revokes_and_audits(staff, world):
    targets = list(ApiKey.objects.filter(user__username="alice", revoked_at__isnull=True)[:2])
    response = staff.post("/admin/apiaccess/apikey/", {"action": "revoke_keys",
                                                        "_selected_action": [k.pk for k in targets]}, follow=True)
    assert b"Revoked" in response.content
    for key in targets:
        assert ApiKey.objects.get(pk=key.pk).revoked_at is not None
        assert KeyEvent.objects.filter(key=key, action="revoked", via="admin", actor_username="root").exists()


def test_the_key_list_has_columns_search_and_filters_but_no_secret(staff, world):
    page = staff.get("/admin/apiaccess/apikey/?q=alice").content.decode()
    for column in ("Name", "Masked", "User", "Status", "Created at", "Last used at", "Expires at", "Models"):
        assert column in page
    assert "By status" in page
    assert KEY_RE.search(page) is None
    for key in ApiKey.objects.all():
        assert key.digest not in page
    revoked = staff.get("/admin/apiaccess/apikey/?status=revoked").content.decode()
    assert all(k.masked in revoked for k in ApiKey.objects.filter(revoked_at__isnull=False))


def test_the_audit_trail_is_read_only(staff, world):
    event = KeyEvent.objects.create(action="created", via="command", key_label="k", owner_username="alice")
    assert staff.get("/admin/apiaccess/keyevent/").status_code == 200
    assert staff.get("/admin/apiaccess/keyevent/add/").status_code == 403
    assert staff.post(f"/admin/apiaccess/keyevent/{event.pk}/delete/", {"post": "yes"}).status_code == 403
    assert KeyEvent.objects.filter(pk=event.pk).exists()


def test_people_models_and_nodes_have_useful_lists(staff, world):
    users = staff.get("/admin/auth/user/").content.decode()
    assert "Active keys" in users and "alice" in users
    models = staff.get("/admin/inference/model/?q=llama").content.decode()
    assert CHAT_MODEL in models and "Healthy servers" in models
    nodes = staff.get("/admin/inference/node/").content.decode()
    assert "GPU memory" in nodes and "Models" in nodes


def test_only_staff_reach_the_admin(world):
    client = Client()
    client.force_login(world.users["bob"])
    assert client.get("/admin/apiaccess/apikey/").status_code == 302
