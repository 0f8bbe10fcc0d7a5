"""Bearer-key authentication on every API route."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.conftest import CHAT_MODEL
from tests.support.processes import eventually

CHAT = {"model": CHAT_MODEL, "messages": [{"role": "user", "content": "hi"}]}


def assert_openai_error(response: httpx.Response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers.get("x-request-id", "").startswith("req_")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    if code is not None:
        assert error["code"] == code
    return error


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


def test_it_gives_403_when_the_key_may_not_use_the_model(base_url, world):
    from tests.conftest import CODE_MODEL

    response = httpx.post(base_url + "/chat/completions", headers={"Authorization": f"Bearer {world.bob_key}"},
                          json={**CHAT, "model": CODE_MODEL})
    assert_openai_error(response, 403)


def test_it_takes_a_revocation_into_account_within_the_cache_window(base_url, world, django_db_blocker):
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from apiaccess.models import ApiKey

    with django_db_blocker.unblock():
        key, plain = ApiKey.issue(get_user_model().objects.get(username="charlie"))
    headers = {"Authorization": f"Bearer {plain}"}
    assert httpx.get(base_url + "/models", headers=headers).status_code == 200
    with django_db_blocker.unblock():
        ApiKey.objects.filter(pk=key.pk).update(revoked_at=timezone.now())
    # API_KEY_CACHE_SECONDS is 5
    eventually(lambda: httpx.get(base_url + "/models", headers=headers).status_code == 401, interval=0.25,
               what="a revoked key kept working past the cache window")


def test_it_records_when_a_key_was_last_used(base_url, world, django_db_blocker):
    from apiaccess import keys
    from apiaccess.models import ApiKey

    httpx.get(base_url + "/models", headers={"Authorization": f"Bearer {world.alice_key}"})
    def last_used():
        with django_db_blocker.unblock():
            return ApiKey.objects.get(lookup=keys.lookup_of(world.alice_key)).last_used_at

    eventually(last_used, what="the key's last use was never recorded", timeout=5)
