"""The admin edits a node's kind and where its API key comes from, without ever showing the key, and a
model's defaults for requests that leave them out, refusing values no request could send."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from inference.admin import api_key_status
from inference.models import Model, Node, stop_sequences_problem

pytestmark = pytest.mark.django_db

SECRET = "sk-upstream-3f9c1e7a-never-in-a-page"
VARIABLE = "GATEHOUSE_TEST_UPSTREAM_KEY"


@pytest.fixture
def key_in_environment(monkeypatch):
    # The web process reads the key from its environment; the admin runs in this process here.
    monkeypatch.setenv(VARIABLE, SECRET)


def node_form(**fields) -> dict[str, str]:
    form = {"url": "http://gpu9.example:8080", "name": "gpu9", "kind": "openai", "gpu_memory_bytes": "0",
            "max_loaded_models": "3",
            "enabled": "on", "api_key_env": "", "api_key_file": "",
            # the models-on-this-node inline (read-only, but its management form is still posted)
            "nodemodel_set-TOTAL_FORMS": "0", "nodemodel_set-INITIAL_FORMS": "0"}
    return {**form, **fields}


def test_the_node_pages_edit_kind_and_key_source_and_never_show_the_key(superuser_client, key_in_environment):
    add = superuser_client.get("/admin/inference/node/add/").content.decode()
    for field in ('name="kind"', 'name="api_key_env"', 'name="api_key_file"'):
        assert field in add
    response = superuser_client.post("/admin/inference/node/add/", node_form(api_key_env=VARIABLE))
    assert response.status_code == 302, response.content.decode()
    node = Node.objects.get(url="http://gpu9.example:8080")
    assert (node.kind, node.api_key_env) == ("openai", VARIABLE)

    pages = [superuser_client.get(f"/admin/inference/node/{node.pk}/change/"),
             superuser_client.get("/admin/inference/node/"),
             superuser_client.get(f"/admin/inference/node/{node.pk}/history/")]
    for page in pages:
        assert page.status_code == 200
        assert SECRET not in page.content.decode()
    change = pages[0].content.decode()
    assert f"set (from ${VARIABLE})" in change
    assert "environment variable" in change  # the fields' help texts say what to put there


def test_a_node_url_typed_without_a_scheme_is_plain_http(superuser_client):
    response = superuser_client.post("/admin/inference/node/add/", node_form(url="gpu8.example", kind="ollama"))
    assert response.status_code == 302, response.content.decode()
    assert Node.objects.filter(url="http://gpu8.example").exists()


def test_the_key_status_says_where_the_key_is_missing(tmp_path, monkeypatch):
    monkeypatch.delenv(VARIABLE, raising=False)
    assert api_key_status(Node(url="http://a")) == "not set"
    assert api_key_status(Node(url="http://a", api_key_env=VARIABLE)) == "named variable is empty"
    monkeypatch.setenv(VARIABLE, "  ")
    assert api_key_status(Node(url="http://a", api_key_env=VARIABLE)) == "named variable is empty"
    secret_file = tmp_path / "upstream-key"
    secret_file.write_text(SECRET + "\n")
    assert api_key_status(Node(url="http://a", api_key_file=str(secret_file))) == "set (from file)"
    assert api_key_status(Node(url="http://a", api_key_file=str(tmp_path / "absent"))).startswith("not set")


def test_a_key_source_must_be_one_plausible_place(superuser_client):
    both = superuser_client.post("/admin/inference/node/add/",
                                 node_form(api_key_env=VARIABLE, api_key_file="/run/secrets/gpu9"))
    assert both.status_code == 200 and "not both" in both.content.decode()
    bad_name = superuser_client.post("/admin/inference/node/add/", node_form(api_key_env="$MY KEY"))
    assert bad_name.status_code == 200 and "letters, digits and _" in bad_name.content.decode()
    assert not Node.objects.filter(url="http://gpu9.example:8080").exists()


def model_form(model: Model, **fields) -> dict[str, str]:
    form = {"public_id": model.public_id, "ollama_name": model.ollama_name, "kind": model.kind, "enabled": "on",
            "context_length": str(model.context_length), "context_overflow": model.context_overflow,
            "concurrency": str(model.concurrency), "max_queue": str(model.max_queue),
            "default_temperature": "", "default_top_p": "", "default_max_tokens": "", "default_stop": "[]",
            "nodemodel_set-TOTAL_FORMS": "0", "nodemodel_set-INITIAL_FORMS": "0"}
    return {**form, **fields}


@pytest.fixture
def model() -> Model:
    return Model.objects.create(public_id="admin-defaults:latest", ollama_name="admin-defaults:latest")


def test_the_model_page_edits_the_defaults_in_their_own_section(superuser_client, model):
    page = superuser_client.get(f"/admin/inference/model/{model.pk}/change/").content.decode()
    assert "Defaults when a request leaves them out" in page
    for field in ("default_temperature", "default_top_p", "default_max_tokens", "default_stop"):
        assert f'name="{field}"' in page
    response = superuser_client.post(f"/admin/inference/model/{model.pk}/change/", model_form(
        model, default_temperature="0.2", default_top_p="0.9", default_max_tokens="256",
        default_stop='["</s>", "\\n\\nUser:"]'))
    assert response.status_code == 302, response.content.decode()
    model.refresh_from_db()
    assert (model.default_temperature, model.default_top_p, model.default_max_tokens, model.default_stop) == (
        0.2, 0.9, 256, ["</s>", "\n\nUser:"])


def test_an_empty_stop_field_means_no_stop_sequences(superuser_client, model):
    response = superuser_client.post(f"/admin/inference/model/{model.pk}/change/", model_form(model, default_stop=""))
    assert response.status_code == 302, response.content.decode()
    model.refresh_from_db()
    assert model.default_stop == []


@pytest.mark.parametrize(("field", "value", "complaint"), [
    ("default_temperature", "2.5", "less than or equal to 2"),
    ("default_temperature", "-0.1", "greater than or equal to 0"),
    ("default_top_p", "1.1", "less than or equal to 1"),
    ("default_max_tokens", "0", "greater than or equal to 1"),
    ("default_stop", '"</s>"', "JSON list of strings"),
    ("default_stop", '["a", "b", "c", "d", "e"]', "At most 4 stop sequences"),
    ("default_stop", '["</s>", ""]', "non-empty string"),
    ("default_stop", '[1]', "non-empty string"),
    ("default_stop", "[oops", "Enter a valid JSON"),
])
def test_the_model_page_refuses_defaults_no_request_could_send(superuser_client, model, field, value, complaint):
    response = superuser_client.post(f"/admin/inference/model/{model.pk}/change/", model_form(model, **{field: value}))
    assert response.status_code == 200
    assert complaint in response.content.decode()
    model.refresh_from_db()
    assert model.default_temperature is None and model.default_stop == []


def test_stop_sequences_problem():
    assert stop_sequences_problem(["</s>"]) == "" and stop_sequences_problem([]) == ""
    assert stop_sequences_problem(None) and stop_sequences_problem({"a": 1}) and stop_sequences_problem([" ", ""])
    with pytest.raises(ValidationError):
        Model(public_id="x", ollama_name="x", default_stop=["a"] * 5).full_clean()
