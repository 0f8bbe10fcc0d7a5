"""Bearer-key authentication on every API route."""

from __future__ import annotations

import re

import httpx
import openai
import pytest

from tests.conftest import CHAT_MODEL
from tests.support.openai_errors import assert_openai_error
from tests.support.processes import eventually

CHAT = {"model": CHAT_MODEL, "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer"},  # what `Bearer ` (empty key, as Continue sends) is on the wire
    {"Authorization": "Bearer undefined"},
    {"Authorization": "Bearer sk-gh-" + "a" * 48},
    {"Authorization": "Basic dXNlcjpwYXNz"},
])
def test_it_rejects_missing_or_wrong_keys_with_401(base_url, headers):
    for method, path, body in (("GET", "/models", None), ("POST", "/chat/completions", CHAT)):
        response = httpx.request(method, base_url + path, headers=headers, json=body)
        assert_openai_error(response, 401, "invalid_api_key")


def test_it_rejects_expired_and_revoked_keys(base_url, world):
    for key, words in ((world.expired_key, "expired"), (world.revoked_key, "revoked")):
        response = httpx.get(base_url + "/models", headers={"Authorization": f"Bearer {key}"})
        error = assert_openai_error(response, 401, "invalid_api_key")
        assert words in error["message"]


def test_it_raises_authentication_error_in_the_sdk(base_url):
    client = openai.OpenAI(base_url=base_url, api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as caught:
        client.chat.completions.create(**CHAT)
    assert caught.value.code == "invalid_api_key"
    assert caught.value.request_id.startswith("req_")


def test_a_model_the_key_may_not_use_looks_exactly_like_one_that_does_not_exist(base_url, world):
    """Issue 8 item 10: a different answer would tell the key holder that the model exists."""
    from tests.conftest import CODE_MODEL

    def answer(model: str) -> dict:
        response = httpx.post(base_url + "/chat/completions", headers={"Authorization": f"Bearer {world.bob_key}"},
                              json={**CHAT, "model": model})
        error = assert_openai_error(response, 404, "model_not_found")
        assert error["param"] == "model"
        return {**error, "message": error["message"].replace(model, "MODEL")}

    forbidden, missing = answer(CODE_MODEL), answer("no-such-model:7b")
    assert forbidden == missing
    assert "does not exist or you do not have access to it" in forbidden["message"]


def test_it_refuses_a_revoked_key_although_the_cache_would_still_trust_it(base_url, world, django_db_blocker):
    """The live server caches keys for 600 s: only the Redis broadcast can make it re-read this one."""
    from django.contrib.auth import get_user_model

    from apiaccess import lifecycle
    from apiaccess.models import KeyEvent

    with django_db_blocker.unblock():
        charlie = get_user_model().objects.get(username="charlie")
        key, plain = lifecycle.create_key(charlie, actor=charlie, via=KeyEvent.Via.PORTAL, name="soon revoked")
    headers = {"Authorization": f"Bearer {plain}"}
    assert httpx.get(base_url + "/models", headers=headers).status_code == 200  # now cached
    with django_db_blocker.unblock():
        assert lifecycle.revoke_key(key, actor=charlie, via=KeyEvent.Via.PORTAL)
    eventually(lambda: httpx.get(base_url + "/models", headers=headers).status_code == 401, interval=0.1,
               what="a revoked key kept working although its revocation was broadcast")


def test_it_points_people_without_a_key_at_their_account_settings_page(base_url, gatehouse):
    error = assert_openai_error(httpx.get(base_url + "/models"), 401, "invalid_api_key")
    assert f"{gatehouse.url}/settings/account/" in error["message"]


def test_it_records_when_a_key_was_last_used_without_writing_the_database(base_url, world, django_db_blocker):
    from apiaccess import last_used
    from apiaccess.models import ApiKey

    # A key of its own: no earlier use elsewhere in the session can be the one Redis shows.
    with django_db_blocker.unblock():
        key, plain = ApiKey.issue(world.users["alice"], name="last-used")
    assert key.last_used_at is None
    assert httpx.get(base_url + "/models", headers={"Authorization": f"Bearer {plain}"}).status_code == 200

    def recorded_in_redis():
        return last_used.latest([key.pk]).get(key.pk)

    seen = eventually(recorded_in_redis, what="the key's use never reached Redis")
    with django_db_blocker.unblock():
        assert ApiKey.objects.get(pk=key.pk).last_used_at is None, "the request itself wrote the database"
        last_used.flush()  # what Celery beat runs every KEY_LAST_USED_FLUSH_SECONDS
        assert ApiKey.objects.get(pk=key.pk).last_used_at == seen
        key.delete()  # alice's other tests count her keys


@pytest.fixture(scope="module")
def second_web_process(world, redis_server, static_root):
    """Another web process on the same database and Redis, as behind a load balancer."""
    from tests.conftest import live_server_env
    from tests.support.processes import DaphneServer

    server = DaphneServer(live_server_env(redis_server, static_root))
    yield server
    server.stop()


def test_a_revocation_reaches_every_web_process(gatehouse, second_web_process, world, django_db_blocker):
    from django.contrib.auth import get_user_model
    from django.test import Client

    from apiaccess import keys
    from apiaccess.models import ApiKey

    with django_db_blocker.unblock():
        charlie = get_user_model().objects.get(username="charlie")
        client = Client()
        client.force_login(charlie)
        page = client.post("/settings/account/", {"name": "two processes"}, follow=True).content.decode()
        plain = re.search(r"sk-gh-[A-Za-z0-9]{48}", page).group(0)
        key = ApiKey.objects.get(lookup=keys.lookup_of(plain))
    headers = {"Authorization": f"Bearer {plain}"}
    web_processes = (gatehouse.url, second_web_process.url)
    for url in web_processes:  # each process now holds the key in its cache (for 600 s)
        assert httpx.get(url + "/v1/models", headers=headers).status_code == 200
    with django_db_blocker.unblock():
        assert client.post(f"/settings/account/keys/{key.pk}/revoke/").status_code == 302
    for url in web_processes:
        eventually(lambda url=url: httpx.get(url + "/v1/models", headers=headers).status_code == 401,
                   interval=0.1, what=f"the revoked key still works on {url}")


def test_an_expired_key_is_refused_at_once_although_it_is_cached(base_url, world, django_db_blocker):
    from datetime import timedelta

    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from apiaccess import lifecycle

    with django_db_blocker.unblock():
        charlie = get_user_model().objects.get(username="charlie")
        _, plain = lifecycle.create_key(charlie, actor=charlie, via="portal", name="brief",
                                        expires_at=timezone.now() + timedelta(seconds=2))
    headers = {"Authorization": f"Bearer {plain}"}
    assert httpx.get(base_url + "/models", headers=headers).status_code == 200
    # The expiry is checked on every request against the clock, not when the cache entry ages out.
    error = eventually(lambda: (r := httpx.get(base_url + "/models", headers=headers)).status_code == 401 and r,
                       interval=0.2, what="an expired key kept working")
    assert "expired" in error.json()["error"]["message"]
