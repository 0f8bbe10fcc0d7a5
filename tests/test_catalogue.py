"""Model discovery from real simulator processes: /api/tags + /api/show fill the Model table."""

from __future__ import annotations

import os

import pytest

from inference.catalogue import sync_catalogue, sync_node
from inference.models import Model, Node, NodeModel
from inference.tasks import sync_catalogue as sync_catalogue_task
from tests.support.simulator import SimulatorProcess

pytestmark = pytest.mark.django_db

CONFIG = {
    "server": {"load_seconds_per_gib": 0},
    "models": [
        {"name": "chatty:7b", "capabilities": ["completion", "tools"], "context_length": 131072, "family": "llama"},
        {"name": "coder:1b", "capabilities": ["completion", "insert"], "context_length": 4096},
        {"name": "embedder:latest", "capabilities": ["embedding"], "context_length": 512},
    ],
}


@pytest.fixture(scope="module")
def sim():
    with SimulatorProcess(CONFIG) as process:
        yield process


def test_it_discovers_models_with_kind_capabilities_and_context(sim, settings):
    settings.DEFAULT_CONTEXT_LENGTH = 8192
    node = Node.objects.create(url=sim.url)
    report = sync_node(node)
    assert report.healthy and sorted(report.models) == ["chatty:7b", "coder:1b", "embedder:latest"]
    models = {m.public_id: m for m in Model.objects.all()}
    assert models["chatty:7b"].kind == Model.Kind.CHAT
    assert models["coder:1b"].kind == Model.Kind.COMPLETION
    assert models["embedder:latest"].kind == Model.Kind.EMBEDDING
    assert "tools" in models["chatty:7b"].capabilities
    # The default context, but never more than the model was trained for.
    assert models["chatty:7b"].context_length == 8192
    assert models["coder:1b"].context_length == 4096
    assert models["embedder:latest"].context_length == 512
    assert models["chatty:7b"].family == "llama" and models["chatty:7b"].size_bytes > 0
    assert models["chatty:7b"].concurrency == 4
    node.refresh_from_db()
    assert node.healthy and node.version and node.last_seen_at is not None
    assert NodeModel.objects.filter(node=node).count() == 3


def test_it_keeps_what_an_admin_edited(sim):
    node = Node.objects.create(url=sim.url)
    sync_node(node)
    Model.objects.filter(ollama_name="chatty:7b").update(public_id="chat", context_length=2048, concurrency=2,
                                                         enabled=False)
    sync_node(node)
    model = Model.objects.get(ollama_name="chatty:7b")
    assert (model.public_id, model.context_length, model.concurrency, model.enabled) == ("chat", 2048, 2, False)
    # Other tests' models may share the database (the live test world): count this node's.
    assert Model.objects.filter(nodemodel__node=node).count() == 3


def test_it_marks_a_silent_node_unhealthy_without_deleting_it():
    with SimulatorProcess(CONFIG) as sim:
        node = Node.objects.create(url=sim.url)
        assert sync_node(node).healthy
    report = sync_node(node)  # the process is gone now
    assert not report.healthy and report.error
    node.refresh_from_db()
    assert not node.healthy and node.last_error
    assert Model.objects.filter(nodemodel__node=node).count() == 3, "models stay in the catalogue"


def test_it_forgets_a_model_removed_from_a_node():
    import httpx

    with SimulatorProcess(CONFIG) as sim:
        node = Node.objects.create(url=sim.url)
        sync_node(node)
        httpx.request("DELETE", sim.url + "/api/delete", json={"model": "coder:1b"}).raise_for_status()
        sync_node(node)
    assert set(NodeModel.objects.filter(node=node).values_list("model__ollama_name", flat=True)) == {
        "chatty:7b", "embedder:latest"}
    assert Model.objects.filter(ollama_name="coder:1b").exists(), "the model row stays for the admin"


def test_it_seeds_nodes_from_settings_and_runs_as_a_celery_task(sim, settings):
    settings.OLLAMA_NODES = [sim.url + "/", "127.0.0.1:1"]
    seeded = [sim.url, "http://127.0.0.1:1"]  # other tests' nodes may share the database
    reports = sync_catalogue_task.apply().get()
    assert {r["url"]: r["healthy"] for r in reports if r["url"] in seeded} == {sim.url: True, seeded[1]: False}
    assert Node.objects.filter(url__in=seeded).count() == 2
    assert sync_catalogue() and Node.objects.filter(url__in=seeded).count() == 2, "seeding twice creates no duplicates"


def test_openai_compatible_servers_are_seeded_as_their_kind_without_their_v1(settings):
    from inference.catalogue import seed_nodes_from_settings

    settings.OLLAMA_NODES = []
    settings.OPENAI_NODES = ["http://127.0.0.1:2/v1", "127.0.0.1:3"]
    seed_nodes_from_settings()
    seed_nodes_from_settings()
    seeded = Node.objects.filter(url__in=["http://127.0.0.1:2", "http://127.0.0.1:3"])
    assert sorted(seeded.values_list("kind", flat=True)) == ["openai", "openai"]
    # Not answering: unhealthy, with the reason, like an Ollama node that does not answer.
    report = sync_node(seeded.first())
    assert not report.healthy and report.error


def test_only_one_catalogue_sync_runs_at_a_time(sim, settings, redis_server):
    from common.store import keys
    from common.store.client import sync_client

    settings.OLLAMA_NODES = [sim.url]

    def listings() -> int:
        return sim.stats()["endpoints"].get("/api/tags", 0)

    before = listings()
    running = sync_client().lock(keys.CATALOGUE_SYNC_LOCK, timeout=60)
    assert running.acquire(blocking=False)  # another process's sync, as far as this one can tell
    try:
        assert sync_catalogue(wait=0) == []
        assert listings() == before, "the node was asked while another sync ran"
    finally:
        running.release()
    reports = sync_catalogue(wait=0)
    assert any(r.url == sim.url and r.healthy for r in reports)
    assert listings() > before


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(tmp_path):
    """What `make run` gets without DATABASE_URL (checked in a process of its own, whichever database
    this suite runs on)."""
    import json
    import subprocess
    import sys

    from tests.support.processes import REPO

    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update({"SQLITE_PATH": str(tmp_path / "db.sqlite3"), "DJANGO_SETTINGS_MODULE": "portal.settings"})
    code = ("from django.db import connection\nimport json\nc = connection.cursor()\n"
            "c.execute('PRAGMA journal_mode'); mode = c.fetchone()[0]\n"
            "c.execute('PRAGMA busy_timeout'); print(json.dumps([mode, c.fetchone()[0]]))")
    out = subprocess.run([sys.executable, "manage.py", "shell", "-c", code], cwd=REPO, env=env, check=True,
                         capture_output=True, text=True).stdout
    mode, busy_ms = json.loads(out.strip().splitlines()[-1])
    assert mode == "wal"
    assert busy_ms >= 10_000
