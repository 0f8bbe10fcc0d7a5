"""Every error under /v1 and /api is an OpenAI error object with the right status (§9 items 7-9),
never an HTML page or a 500 for bad input."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import CHAT_MODEL
from tests.support.openai_errors import assert_openai_error
from tests.support.processes import eventually


@pytest.fixture
def auth(world) -> dict:
    return {"Authorization": f"Bearer {world.alice_key}"}


@pytest.mark.parametrize("path", ["/v1/nothing-here", "/v1/assistants", "/api/unknown/deep/path", "/v1/chat/completions/",
                                  "/chat/completions", "/responses"])
def test_it_answers_unknown_routes_with_a_json_404(gatehouse, auth, path):
    # Includes a base URL without /v1: Continue JSON.parses that 404 body to tell the user to add /v1.
    error = assert_openai_error(httpx.post(gatehouse.url + path, headers=auth, json={}), 404)
    if not path.startswith(("/v1", "/api")):
        assert "/v1" + path in error["message"]


def test_it_answers_a_wrong_method_with_a_json_405(base_url, auth):
    error = assert_openai_error(httpx.get(base_url + "/chat/completions", headers=auth), 405)
    assert "GET" in error["message"]
    assert_openai_error(httpx.post(base_url + "/models", headers=auth), 405)


@pytest.mark.parametrize("body,param", [
    ({"messages": [{"role": "user", "content": "x"}]}, "model"),
    ({"model": CHAT_MODEL}, "messages"),
    ({"model": CHAT_MODEL, "messages": []}, "messages"),
    ({"model": CHAT_MODEL, "messages": [{"role": "wizard", "content": "x"}]}, "messages.0.role"),
    ({"model": CHAT_MODEL, "messages": [{"role": "user"}]}, "messages.0.content"),
    ({"model": CHAT_MODEL, "messages": [{"role": "user", "content": "x"}], "temperature": 5}, "temperature"),
    ({"model": CHAT_MODEL, "messages": [{"role": "user", "content": "x"}], "n": 0}, "n"),
    ({"model": CHAT_MODEL, "messages": [{"role": "user", "content": "x"}], "max_tokens": "many"}, "max_tokens"),
    ({"model": CHAT_MODEL, "messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]},
     "tools.0.function"),
])
def test_it_rejects_a_malformed_body_with_400_naming_the_field(base_url, auth, body, param):
    response = httpx.post(base_url + "/chat/completions", headers=auth, json=body)
    error = assert_openai_error(response, 400)
    assert error["param"] == param and error["type"] == "invalid_request_error"


@pytest.mark.parametrize("raw", [b"", b"{not json", b"[1, 2]", b"\xff\xfe", b"null"])
def test_it_rejects_a_body_that_is_not_a_json_object(base_url, auth, raw):
    response = httpx.post(base_url + "/chat/completions", headers={**auth, "Content-Type": "application/json"},
                          content=raw)
    assert_openai_error(response, 400)


def test_it_rejects_a_body_over_the_size_limit_with_413(base_url, auth):
    huge = "x" * (1024 * 1024 + 10)  # the live server's limit is 1 MiB
    response = httpx.post(base_url + "/chat/completions", headers=auth,
                          json={"model": CHAT_MODEL, "messages": [{"role": "user", "content": huge}]})
    assert_openai_error(response, 413)


def test_it_answers_503_with_retry_after_when_no_node_serves_the_model(base_url, auth, django_db_blocker, simulator):
    from inference.models import Node

    chat = {"model": CHAT_MODEL, "max_tokens": 1, "messages": [{"role": "user", "content": "x"}]}
    with django_db_blocker.unblock():  # the only node is drained
        Node.objects.filter(url=simulator.url).update(enabled=False)
    try:
        # The live server's catalogue snapshot is up to a couple of seconds old.
        response = eventually(lambda: (r := httpx.post(base_url + "/chat/completions", headers=auth, json=chat))
                              .status_code != 200 and r, what="the unhealthy node kept serving", interval=0.2)
        assert_openai_error(response, 503)
        assert 0 < int(response.headers["Retry-After"]) <= 60
    finally:
        with django_db_blocker.unblock():
            Node.objects.filter(url=simulator.url).update(enabled=True)
        eventually(lambda: httpx.post(base_url + "/chat/completions", headers=auth, json=chat).status_code == 200,
                   what="the node never came back for the next tests", interval=0.2)


@pytest.mark.parametrize("path,body", [
    ("/completions", {"prompt": "x"}),
    ("/embeddings", {"input": "x"}),
])
def test_it_answers_404_model_not_found_on_every_post_endpoint(base_url, auth, path, body):
    response = httpx.post(base_url + path, headers=auth, json={"model": "no-such-model:7b", **body})
    assert_openai_error(response, 404, "model_not_found")


def test_it_turns_framework_error_pages_under_the_api_into_json():
    """A crash (or DEBUG's HTML 500 page) under /v1 still reaches clients as an OpenAI error object."""
    import json

    from django.http import HttpResponseServerError
    from django.test import RequestFactory

    from inference.web.middleware import RequestIdMiddleware

    middleware = RequestIdMiddleware(lambda request: HttpResponseServerError("<h1>Server Error (500)</h1>"))
    for path, json_expected in (("/v1/chat/completions", True), ("/api/embeddings", True), ("/admin/", False)):
        response = middleware(RequestFactory().post(path))
        assert response.status_code == 500 and response["x-request-id"].startswith("req_")
        if json_expected:
            error = json.loads(response.content)["error"]
            assert error["type"] == "server_error" and response["x-request-id"] in error["message"]
        else:
            assert response.content.startswith(b"<h1>")
