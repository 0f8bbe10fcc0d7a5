"""GET /v1/models and /v1/models/{id} through the real OpenAI SDK and raw HTTP against a live server."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.conftest import BROKEN_MODEL, CHAT_MODEL, CODE_MODEL, EMBED_MODEL, SLOW_MODEL, THINK_MODEL
from tests.support.processes import eventually


def test_it_lists_every_model_with_the_openai_shape(base_url, world):
    client = openai.OpenAI(base_url=base_url, api_key=world.alice_key)
    models = list(client.models.list())
    ids = [m.id for m in models]
    # Every model of the world, each once; other modules sharing this database may have added their own.
    assert {CHAT_MODEL, CODE_MODEL, EMBED_MODEL, BROKEN_MODEL, SLOW_MODEL, THINK_MODEL} <= set(ids)
    assert len(ids) == len(set(ids))
    for model in models:
        assert model.object == "model" and isinstance(model.created, int) and model.owned_by == "library"


def test_it_lists_only_the_models_a_limited_key_may_use(base_url, world):
    client = openai.OpenAI(base_url=base_url, api_key=world.bob_key)
    assert [m.id for m in client.models.list()] == [CHAT_MODEL]


def test_it_retrieves_one_model(base_url, world):
    client = openai.OpenAI(base_url=base_url, api_key=world.alice_key)
    model = client.models.retrieve(CHAT_MODEL)
    assert model.id == CHAT_MODEL and model.object == "model"


def test_it_answers_404_model_not_found_for_an_unknown_model(base_url, world):
    client = openai.OpenAI(base_url=base_url, api_key=world.alice_key, max_retries=0)
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("no-such-model")
    assert caught.value.code == "model_not_found"


def test_it_accepts_ids_with_a_slash_raw_and_encoded(base_url, world, django_db_blocker):
    from inference import registry  # noqa: F401  (the live server has its own snapshot)
    from inference.models import Model

    with django_db_blocker.unblock():
        Model.objects.filter(public_id=CODE_MODEL).update(public_id="team/coder")
    headers = {"Authorization": f"Bearer {world.alice_key}"}
    try:
        for path in ("/models/team/coder", "/models/team%2Fcoder"):
            # The live server refreshes its catalogue snapshot every couple of seconds.
            response = eventually(lambda path=path: (r := httpx.get(base_url + path, headers=headers)).status_code != 404 and r,
                                  what=f"{path} stayed 404 after the rename", interval=0.2)
            assert response.status_code == 200, response.text
            assert response.json()["id"] == "team/coder"
    finally:
        with django_db_blocker.unblock():
            Model.objects.filter(public_id="team/coder").update(public_id=CODE_MODEL)
        eventually(lambda: httpx.get(f"{base_url}/models/{CODE_MODEL}", headers=headers).status_code == 200,
                   what="the server never served the original id again", interval=0.2)


def test_it_gives_404_for_a_model_the_key_may_not_use(base_url, world):
    client = openai.OpenAI(base_url=base_url, api_key=world.bob_key, max_retries=0)
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve(EMBED_MODEL)
    assert caught.value.code == "model_not_found"


def test_it_serves_the_same_routes_under_api(gatehouse, world):
    client = openai.OpenAI(base_url=gatehouse.url + "/api", api_key=world.alice_key)
    assert CHAT_MODEL in {m.id for m in client.models.list()}


def test_it_works_with_a_trailing_slash_base_url(base_url, world):
    client = openai.OpenAI(base_url=base_url + "/", api_key=world.alice_key)
    assert CHAT_MODEL in {m.id for m in client.models.list()}


def test_a_name_without_its_tag_suggests_the_tags_served(base_url, world):
    client = openai.OpenAI(base_url=base_url, api_key=world.alice_key, max_retries=0)
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="llama3.2", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.body["code"] == "model_not_found"
    assert f"Did you mean `{CHAT_MODEL}`?" in caught.value.message
    with pytest.raises(openai.NotFoundError) as caught:  # a typo gets the closest spelling
        client.chat.completions.create(model="qwen2.5-codr:1.5b", messages=[{"role": "user", "content": "hi"}])
    assert f"`{CODE_MODEL}`" in caught.value.message
    # As in Ollama, a name without a tag is its `latest` tag.
    assert client.embeddings.create(model=EMBED_MODEL.removesuffix(":latest"), input="hi").data


def test_suggestions_name_only_models_the_key_may_use(base_url, world):
    client = openai.OpenAI(base_url=base_url, api_key=world.bob_key, max_retries=0)  # only CHAT_MODEL
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="qwen2.5-coder", messages=[{"role": "user", "content": "hi"}])
    assert CODE_MODEL not in caught.value.message


def test_a_model_no_enabled_node_has_is_not_listed_until_one_has_it(base_url, world, django_db_blocker):
    """A listed model must be usable: a model whose row exists before any node has it (a variant being
    created on the nodes) or whose nodes are all drained would only answer "no GPU server is serving"."""
    from inference.models import Model, Node, NodeModel

    client = openai.OpenAI(base_url=base_url, api_key=world.alice_key)
    with django_db_blocker.unblock():
        orphan = Model.objects.create(public_id="orphan:1b", ollama_name="orphan:1b")
    try:
        headers = {"Authorization": f"Bearer {world.alice_key}"}
        eventually(lambda: httpx.get(f"{base_url}/models/orphan:1b", headers=headers).status_code == 200,
                   what="the live server's snapshot to hold the new model", interval=0.2)
        assert "orphan:1b" not in [m.id for m in client.models.list()]
        with django_db_blocker.unblock():
            NodeModel.objects.create(node=Node.objects.filter(enabled=True).first(), model=orphan)
        eventually(lambda: "orphan:1b" in [m.id for m in client.models.list()], what="the model listed once a node has it")
    finally:
        with django_db_blocker.unblock():
            orphan.delete()
