"""GET /v1/providers and /v1/providers/{id}/models against a real gateway with simulator nodes: a key sees
the providers and models it may use, staff see every provider with its URL, health and drain show."""

from __future__ import annotations

import httpx
import openai
import pytest

from inference.providers import Viewer, node_status, provider_ids
from inference.registry import NodeInfo
from tests.support.openai_errors import assert_openai_error
from tests.support.processes import eventually
from tests.support.stack import Stack, sim_config

SHARED = "prov-shared:latest"  # on a, b and c
ONLY_A = "prov-a:latest"
ONLY_B = "prov-b:latest"


# -- the pure parts -----------------------------------------------------------------------------------

def node(pk: int, name: str = "", enabled: bool = True) -> NodeInfo:
    return NodeInfo(url=f"http://gpu{pk}:11434", gpu_memory_bytes=0, enabled=enabled, name=name, pk=pk)


def test_a_provider_goes_by_its_name_or_else_its_pk():
    assert provider_ids([node(1, "gpu-a"), node(2)]) == {"http://gpu1:11434": "gpu-a", "http://gpu2:11434": "2"}


def test_ids_stay_unique_when_names_clash():
    ids = provider_ids([node(1, "twin"), node(2, "twin"), node(3, "4"), node(4), node(5, "solo")])
    assert ids == {"http://gpu1:11434": "1", "http://gpu2:11434": "2", "http://gpu3:11434": "3",
                   "http://gpu4:11434": "4", "http://gpu5:11434": "solo"}


def test_draining_is_the_admins_word_whatever_the_health_check_says():
    assert node_status(node(1, enabled=False), down={"http://gpu1:11434"}) == "draining"
    assert node_status(node(1), down={"http://gpu1:11434"}) == "down"
    assert node_status(node(1), down=set()) == "up"
    assert Viewer(staff=False, may_use=lambda m: False).may_use("x") is False


# -- through the gateway ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def stack(django_db_setup, django_db_blocker):
    from django.contrib.auth import get_user_model

    from apiaccess.models import ApiKey
    from inference.models import Model

    with django_db_blocker.unblock():
        world = Stack({"a": sim_config([SHARED, ONLY_A], tokens_per_second=1000),
                       "b": sim_config([SHARED, ONLY_B], tokens_per_second=1000),
                       "c": sim_config([SHARED], tokens_per_second=1000)})  # the one test_down kills
        user = get_user_model().objects.create_user(f"prov-limited-{world.redis.port}")
        _, world.keys["limited"] = ApiKey.issue(user, allowed_models=[Model.objects.get(ollama_name=ONLY_A)])
    yield world
    with django_db_blocker.unblock():
        world.stop()


def listing(stack, user: str = "ann") -> dict:
    return stack.client(user).get("/providers", cast_to=object)


def by_id(answer: dict) -> dict[str, dict]:
    return {provider["id"]: provider for provider in answer["data"]}


def test_a_key_that_may_use_everything_sees_every_provider_without_urls(stack):
    answer = listing(stack)
    assert answer["object"] == "list"
    providers = by_id(answer)
    assert {"a", "b", "c"} <= set(providers)  # the session's own simulator node shares the database
    assert providers["a"] == {"id": "a", "object": "provider", "kind": "ollama", "status": "up",
                              "models": [ONLY_A, SHARED]}
    assert providers["b"]["models"] == [ONLY_B, SHARED]
    assert not any(sim.url.removeprefix("http://") in str(answer) for sim in stack.sims.values())


def test_a_limited_key_sees_only_its_models_and_their_providers(stack):
    assert by_id(listing(stack, "limited")) == {
        "a": {"id": "a", "object": "provider", "kind": "ollama", "status": "up", "models": [ONLY_A]}}
    models = stack.client("limited").get("/providers/a/models", cast_to=object)
    assert [m["id"] for m in models["data"]] == [ONLY_A]
    with pytest.raises(openai.NotFoundError):  # b serves nothing this key may use: as if it did not exist
        stack.client("limited", max_retries=0).get("/providers/b/models", cast_to=object)


def test_a_providers_models_carry_the_model_object_context_length_and_whether_loaded(stack):
    model_list = {m.id: m for m in stack.client().models.list()}
    answer = stack.client().get("/providers/a/models", cast_to=object)
    assert answer["object"] == "list"
    models = {m["id"]: m for m in answer["data"]}
    assert set(models) == {ONLY_A, SHARED}
    for model in models.values():
        assert model["object"] == "model" and model["created"] == model_list[model["id"]].created
        assert model["owned_by"] == "library" and model["context_length"] > 0
        assert model["loaded"] in (True, False, None)

    reply = stack.client().chat.completions.create(model=ONLY_A, messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content
    # The swap actor polls each node's /api/ps every NODE_PS_POLL_SECONDS; the listing shows its last word.
    eventually(lambda: {m["id"]: m["loaded"] for m in stack.client().get("/providers/a/models", cast_to=object)
                        ["data"]}[ONLY_A] is True, what=f"{ONLY_A} shown loaded on a", timeout=20)


def test_an_unknown_provider_is_an_openai_404(stack):
    answer = httpx.get(stack.url() + "/providers/no-such-gpu/models", headers=stack.headers(), timeout=10)
    error = assert_openai_error(answer, 404)
    assert "no-such-gpu" in error["message"]


def test_no_key_and_no_staff_session_is_a_401(stack):
    assert_openai_error(httpx.get(stack.url() + "/providers", timeout=10), 401, "invalid_api_key")
    bad = httpx.get(stack.url() + "/providers", headers={"Authorization": "Bearer sk-nope"}, timeout=10)
    assert_openai_error(bad, 401, "invalid_api_key")


def test_staff_see_every_provider_with_its_url(stack, django_db_blocker):
    with django_db_blocker.unblock():
        staff = stack.staff_session()
    try:
        answer = staff.get("/v1/providers")
        assert answer.status_code == 200, answer.text
        providers = by_id(answer.json())
        # Other tests' nodes may share the database: these are the stack's own.
        assert {pid: providers[pid]["url"] for pid in stack.sims} == {name: sim.url for name, sim in stack.sims.items()}
        assert staff.get("/v1/providers/b/models").json()["data"][0]["id"] == ONLY_B
        # A key sent along wins: whoever sends a key sees what the key may see, and no URLs.
        with_key = staff.get("/v1/providers", headers=stack.headers("limited")).json()
        assert [p["id"] for p in with_key["data"]] == ["a"] and "url" not in with_key["data"][0]
    finally:
        staff.close()


def test_a_drained_provider_says_so_and_serves_no_models(stack, django_db_blocker):
    from inference.models import Node

    with django_db_blocker.unblock():
        Node.objects.filter(name="b").update(enabled=False)
        staff = stack.staff_session()
    try:
        # Each web process re-reads the catalogue every couple of seconds.
        drained = eventually(lambda: (p := by_id(staff.get("/v1/providers").json())["b"])["status"] == "draining"
                             and p, what="b shown draining", timeout=20)
        assert drained["models"] == []
        assert "b" not in by_id(listing(stack))  # a key holder: b serves none of its models now
    finally:
        staff.close()
        with django_db_blocker.unblock():
            Node.objects.filter(name="b").update(enabled=True)
    eventually(lambda: "b" in by_id(listing(stack)), what="b back in service", timeout=20)


def test_a_provider_that_stops_answering_is_shown_down(stack):
    stack.sims["c"].kill()
    eventually(lambda: by_id(listing(stack))["c"]["status"] == "down", what="c shown down", timeout=30)
    models = stack.client().get("/providers/c/models", cast_to=object)["data"]
    assert [(m["id"], m["loaded"]) for m in models] == [(SHARED, None)]  # its last report is stale
