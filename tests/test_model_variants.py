"""Staff publish a larger-context variant of a model (for coding agents, which want 64k tokens), and it
works as a model of its own: its own id, created on the Ollama node as the same weights with another
num_ctx, loaded separately with its own memory, and swapped with its base without Ollama ever reloading
on its own (the two share one runner there)."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from html import unescape

import httpx
import openai
import pytest

from inference.catalogue import sync_node
from inference.models import Model
from tests.support.processes import eventually
from tests.support.stack import Stack, sim_config

pytestmark = pytest.mark.timeout(180)

BASE = "coder:7b"
VARIANT_ID = "coder:7b-64k"
ON_NODE = "coder:7b-gatehouse-ctx65536"
LONG_PROMPT = "word " * 3000  # past the base's 2,048 tokens, well within the variant's 65,536


@pytest.fixture(scope="module")
def stack(django_db_setup, django_db_blocker) -> Iterator[Stack]:
    config = sim_config([BASE], reply_tokens=4, tokens_per_second=200)
    config["models"][0].update(context_length=131072, capabilities=["completion", "tools"])
    with django_db_blocker.unblock(), Stack({"a": config}, models={BASE: {"context_length": 2048}},
                                            env={"SWAP_MAX_WAIT_SECONDS": "1"}) as stack:
        yield stack  # the variant goes with its base when the stack deletes it


@pytest.fixture
def orm(django_db_blocker) -> Iterator[None]:
    """The stack's rows are real (its web process reads them), so these tests use the database unwrapped."""
    with django_db_blocker.unblock():
        yield


def form_values(page: str) -> dict[str, str]:
    """What a browser would post from the admin's change form: every input and select as rendered."""
    values: dict[str, str] = {}
    for tag in re.findall(r"<input[^>]*>", page):
        name = re.search(r'name="([^"]+)"', tag)
        if not name or 'type="submit"' in tag or ('type="checkbox"' in tag and "checked" not in tag):
            continue
        value = re.search(r'value="([^"]*)"', tag)
        values[name.group(1)] = "on" if 'type="checkbox"' in tag else unescape(value.group(1) if value else "")
    for name, body in re.findall(r'<select[^>]*name="([^"]+)"[^>]*>(.*?)</select>', page, re.S):
        chosen = re.search(r'<option value="([^"]*)"[^>]*selected', body)
        values[name] = chosen.group(1) if chosen else ""
    for name, body in re.findall(r'<textarea[^>]*name="([^"]+)"[^>]*>(.*?)</textarea>', page, re.S):
        values[name] = unescape(body.strip())
    return values


def publish_variant(stack: Stack) -> httpx.Response:
    """As staff do it: the base model's page, its "Add a variant" link, the form as offered, Save."""
    staff = stack.staff_session(permissions=("inference.view_model", "inference.add_model", "inference.change_model"))
    base = Model.objects.get(ollama_name=BASE)
    page = staff.get(f"/admin/inference/model/{base.pk}/change/").text
    link = unescape(re.search(r'<a href="([^"]+)">Add a variant with a larger context</a>', page).group(1))
    form = form_values(staff.get(link).text)
    assert (form["variant_of"], form["context_length"], form["public_id"]) == (str(base.pk), "65536", VARIANT_ID)
    return staff.post(link, data={**form, "_save": "Save"}, headers={"Referer": stack.webs[0].url + link},
                      follow_redirects=True)


def test_staff_publish_a_variant_that_clients_use_by_its_own_id_with_its_own_context(stack, orm):
    saved = publish_variant(stack)
    assert saved.status_code == 200 and f"The variant runs as {ON_NODE} on 1 node(s)" in unescape(saved.text), saved.text[-3000:]
    sim = stack.sims["a"]
    show = httpx.post(sim.url + "/api/show", json={"model": ON_NODE}, timeout=5).json()
    assert re.search(r"^num_ctx\s+65536$", show["parameters"], re.MULTILINE)

    client = stack.client(max_retries=0)
    eventually(lambda: VARIANT_ID in [m.id for m in client.models.list()], what="the variant in /v1/models")
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model=BASE, messages=[{"role": "user", "content": LONG_PROMPT}])
    assert refused.value.code == "context_length_exceeded"
    answer = client.chat.completions.create(model=VARIANT_ID, messages=[{"role": "user", "content": LONG_PROMPT}])
    assert answer.model == VARIANT_ID and answer.usage.prompt_tokens > 2048
    loaded = httpx.get(sim.url + "/api/ps", timeout=5).json()["models"]
    assert [(m["name"], m["context_length"]) for m in loaded] == [(ON_NODE, 65536)]
    # Its memory is its own: measured at the node, and larger than the base's with its small context.
    stack.wait_loaded(ON_NODE, "a")
    client.chat.completions.create(model=BASE, messages=[{"role": "user", "content": "hi"}])
    sizes = eventually(lambda: (s := stack.kv.hgetall("gh:models:size")) and BASE in s and ON_NODE in s and s,
                       what="both sizes measured", timeout=20)
    assert int(sizes[ON_NODE]) > int(sizes[BASE])


def test_a_model_and_its_variant_take_turns_on_one_node_without_ollama_reloading_by_itself(stack, orm):
    if not Model.objects.filter(ollama_name=ON_NODE).exists():
        publish_variant(stack)
    client = stack.client(max_retries=0, timeout=60)
    eventually(lambda: VARIANT_ID in [m.id for m in client.models.list()], what="the variant in /v1/models")
    sim = stack.sims["a"]
    sim.reset()
    answers: list[str] = []
    failures: list[BaseException] = []

    def ask(model: str) -> None:
        try:
            reply = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
            answers.append(reply.model)
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            failures.append(exc)

    for _ in range(2):  # two rounds in which both want the node at once
        threads = [threading.Thread(target=ask, args=(model,)) for model in [BASE, VARIANT_ID] * 4]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert not failures and sorted(answers) == sorted([BASE, VARIANT_ID] * 8)
    totals = sim.stats()["totals"]
    # Gatehouse unloaded one before loading the other: the node never had to throw a runner away itself.
    assert totals.get("reloads", 0) == 0 and totals.get("evictions", 0) == 0
    assert totals["loads"] >= 2, totals


def test_a_variant_larger_than_the_nodes_whole_memory_budget_still_loads_there_alone(stack, orm):
    """64k tokens x 4 slots of KV cache is more than many GPUs hold; Ollama then keeps part of the model in
    system memory. Gatehouse loads it alone on the node instead of keeping its requests waiting for room
    that can never come."""
    from inference.models import Node

    if not Model.objects.filter(ollama_name=ON_NODE).exists():
        publish_variant(stack)
    node = stack.nodes[0]
    Node.objects.filter(pk=node.pk).update(gpu_memory_bytes=1 << 30)  # less than either model needs
    try:
        client = stack.client(max_retries=0, timeout=30)
        for model in (VARIANT_ID, BASE, VARIANT_ID):  # each one loads alone, after the other is unloaded
            reply = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
            assert reply.model == model
        assert stack.ps("a") == [ON_NODE]
    finally:
        Node.objects.filter(pk=node.pk).update(gpu_memory_bytes=0)


@pytest.mark.django_db
def test_the_admin_refuses_variants_that_cannot_work(superuser_client):
    base = Model.objects.create(public_id="refuse-base:1b", ollama_name="refuse-base:1b", context_length=8192,
                                max_context_length=32768)
    nested = Model.objects.create(public_id="refuse-base:1b-16k", variant_of=base, context_length=16384)
    form = {"public_id": "v", "ollama_name": "", "kind": "chat", "enabled": "on", "context_overflow": "error",
            "concurrency": "4", "max_queue": "8", "default_stop": "[]",
            "nodemodel_set-TOTAL_FORMS": "0", "nodemodel_set-INITIAL_FORMS": "0"}
    for variant_of, context, complaint in [
        (base.pk, 8192, "other than its base"),
        (base.pk, 65536, "trained on 32,768 tokens"),
        (base.pk, 16384, "already is refuse-base:1b with this context length"),
        ("", 8192, "Name the model on the nodes"),
    ]:
        response = superuser_client.post("/admin/inference/model/add/",
                                         {**form, "variant_of": variant_of, "context_length": context})
        assert response.status_code == 200 and complaint in unescape(response.content.decode()), complaint
    # A variant of a variant is not even offered.
    page = superuser_client.get("/admin/inference/model/add/").content.decode()
    assert f'<option value="{base.pk}">' in page and f'<option value="{nested.pk}">' not in page
    assert nested.ollama_name == "refuse-base:1b-gatehouse-ctx16384"


def test_a_deleted_variant_leaves_the_node_at_the_next_sync(stack, orm):
    if not Model.objects.filter(ollama_name=ON_NODE).exists():
        publish_variant(stack)
    sim = stack.sims["a"]
    names = lambda: [m["name"] for m in httpx.get(sim.url + "/api/tags", timeout=5).json()["models"]]  # noqa: E731
    assert ON_NODE in names()
    Model.objects.filter(ollama_name=ON_NODE).delete()
    report = sync_node(stack.nodes[0])
    assert report.healthy and ON_NODE not in report.models and ON_NODE not in names() and BASE in names()
    assert not Model.objects.filter(ollama_name=ON_NODE).exists()  # not rediscovered as a model of its own
