"""/portal/api/keys: list, create and revoke your own keys with a session (CSRF enforced) or a bearer key."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from apiaccess import keys
from apiaccess.lifecycle import create_key
from apiaccess.models import ApiKey, KeyEvent
from tests.conftest import CHAT_MODEL, CODE_MODEL

pytestmark = pytest.mark.django_db

URL = "/portal/api/keys"


@pytest.fixture(autouse=True)
def _redis(redis_server):
    """Bearer calls record their last use in the suite's Redis."""


def with_key(plain: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {plain}"}


def session(world, name: str) -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(world.users[name])
    client.get("/settings/account/")  # sets the CSRF cookie, as the browser would have it
    return client


def assert_json_error(response, status: int) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert isinstance(error["message"], str) and error["message"]
    return error


def test_it_lists_own_keys_without_secrets(world):
    response = Client().get(URL, **with_key(world.alice_key))
    assert response.status_code == 200
    listed = response.json()["data"]
    assert {k["key_prefix"] for k in listed} == {k.masked for k in ApiKey.objects.filter(user__username="alice")}
    assert all("key" not in k and "digest" not in k for k in listed)
    assert set(listed[0]) == {"id", "name", "key_prefix", "status", "created_at", "last_used_at", "expires_at",
                              "revoked_at", "allowed_models"}
    assert re.search(r"sk-gh-[A-Za-z0-9]{48}", response.content.decode()) is None


def test_a_script_rotates_its_key_with_bearer_auth(world):
    alice = world.users["alice"]
    _, old = create_key(alice, actor=alice, via="portal", name="rotating")
    created = Client().post(URL, {"name": "rotated", "expires_in_days": 7}, content_type="application/json",
                            **with_key(old))
    assert created.status_code == 201, created.content
    body = created.json()
    new = body["key"]
    assert new.startswith("sk-") and keys.lookup_of(new) and body["status"] == "active" and body["expires_at"]
    old_id = ApiKey.objects.get(lookup=keys.lookup_of(old)).pk
    revoked = Client().delete(f"{URL}/{old_id}", **with_key(new))
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    assert_json_error(Client().get(URL, **with_key(old)), 401)
    events = KeyEvent.objects.filter(via="api", actor_username="alice").values_list("action", flat=True)
    assert {"created", "revoked"} <= set(events)
    assert "key" not in Client().get(f"{URL}/{body['id']}", **with_key(new)).json()


def test_session_auth_enforces_csrf(world):
    client = session(world, "bob")
    assert client.get(URL).status_code == 200
    error = assert_json_error(client.post(URL, {"name": "x"}, content_type="application/json"), 403)
    assert "CSRF" in error["message"]
    token = client.cookies["csrftoken"].value
    created = client.post(URL, {"name": "from the browser"}, content_type="application/json", HTTP_X_CSRFTOKEN=token)
    assert created.status_code == 201 and created.json()["key"].startswith("sk-gh-")


@pytest.mark.parametrize("intruder", ["bob", "charlie"])
def test_another_persons_key_id_is_404(world, intruder):
    target = ApiKey.objects.filter(user__username="alice", revoked_at__isnull=True).first()
    client = session(world, intruder)
    token = client.cookies["csrftoken"].value
    assert_json_error(client.get(f"{URL}/{target.pk}"), 404)
    assert_json_error(client.delete(f"{URL}/{target.pk}", HTTP_X_CSRFTOKEN=token), 404)
    assert_json_error(Client().delete(f"{URL}/{target.pk}", **with_key(world.bob_key)), 404)
    assert_json_error(Client().get(f"{URL}/987654321", **with_key(world.bob_key)), 404)
    assert ApiKey.objects.get(pk=target.pk).revoked_at is None


def test_a_model_limited_key_cannot_mint_a_broader_one(world):
    broader = Client().post(URL, {"name": "wider"}, content_type="application/json", **with_key(world.bob_key))
    assert "allowed_models" in assert_json_error(broader, 400)["fields"]
    other = Client().post(URL, {"name": "other", "allowed_models": [CODE_MODEL]}, content_type="application/json",
                          **with_key(world.bob_key))
    assert_json_error(other, 400)
    same = Client().post(URL, {"name": "same", "allowed_models": [CHAT_MODEL]}, content_type="application/json",
                         **with_key(world.bob_key))
    assert same.status_code == 201 and same.json()["allowed_models"] == [CHAT_MODEL]


@pytest.mark.parametrize("body, field", [
    ({}, "name"),
    ({"name": "x", "allowed_models": ["no-such-model"]}, "allowed_models"),
    ({"name": "x", "expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
    ({"name": "x", "expires_in_days": 0}, "expires_in_days"),
])
def test_bad_input_is_a_json_400_naming_the_field(world, body, field):
    error = assert_json_error(Client().post(URL, body, content_type="application/json", **with_key(world.alice_key)),
                              400)
    assert field in error["fields"] and error["message"].startswith(field)


def test_errors_are_json_everywhere_under_the_api(world):
    assert_json_error(Client().get(URL), 401)
    assert_json_error(Client().get(URL, HTTP_AUTHORIZATION="Bearer sk-gh-nonsense"), 401)
    assert_json_error(Client().get("/portal/api/nothing-here", **with_key(world.alice_key)), 404)
    assert_json_error(Client().put(URL, {}, content_type="application/json", **with_key(world.alice_key)), 405)
    assert_json_error(Client().post(URL, "{not json", content_type="application/json",
                                    **with_key(world.alice_key)), 400)
    assert_json_error(Client().get(URL, **with_key(world.revoked_key)), 401)
    assert_json_error(Client().get(URL, **with_key(world.expired_key)), 401)


def test_the_key_limit_is_a_json_403(world, settings):
    from apiaccess.lifecycle import active_keys

    settings.MAX_API_KEYS_PER_USER = active_keys(world.users["alice"]).count()
    error = assert_json_error(Client().post(URL, {"name": "over"}, content_type="application/json",
                                            **with_key(world.alice_key)), 403)
    assert error["code"] == "key_limit_reached"
