"""Native wire format, byte for byte where it matters (Ollama server/routes.go, api/types.go; the ollama client)."""

from __future__ import annotations

import json
import re
import time
from datetime import datetime, timedelta

import httpx
import ollama
import pytest

from tests.sim.simkit import CHAT, CODER, EMBEDDER, clean, loaded_names, ndjson, sim_config
from tests.support.simulator import SimulatorProcess

pytestmark = pytest.mark.timeout(60)

RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$")
METRICS = ("total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration", "eval_count",
           "eval_duration")


def test_it_streams_ndjson_by_default_with_a_message_on_every_line(http):
    body = {"model": "LLAMA3.2:3B", "messages": [{"role": "user", "content": "Why is the sky blue?"}],
            "options": {"num_predict": 6, "seed": 1}}
    with http.stream("POST", "/api/chat", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/x-ndjson"
        assert response.headers.get("transfer-encoding") == "chunked"
        lines = [json.loads(line) for line in response.iter_lines() if line]
    assert len(lines) == 7  # one object per token, then the final one
    for line in lines:
        assert line["model"] == "LLAMA3.2:3B"  # echoed exactly as sent
        assert RFC3339_UTC.match(line["created_at"])
        assert line["message"]["role"] == "assistant"
        assert isinstance(line["message"]["content"], str)
    assert all(line["done"] is False for line in lines[:-1])
    final = lines[-1]
    assert list(final)[:5] == ["model", "created_at", "message", "done_reason", "done"]
    assert final["done"] is True and final["done_reason"] == "length" and final["message"]["content"] == ""
    for key in METRICS:
        assert isinstance(final[key], int) and final[key] > 0, key
    assert final["eval_count"] == 6
    assert final["total_duration"] >= final["load_duration"] + final["eval_duration"]
    assert "context" not in final  # chat has no context


def test_it_flushes_each_token_as_it_is_decoded(shared_sim):
    sim = clean(shared_sim)
    sim.set_faults(CHAT, tokens_per_second=40)
    arrivals = []
    body = {"model": CHAT, "prompt": "count", "options": {"num_predict": 8}}
    with httpx.stream("POST", sim.url + "/api/generate", json=body, timeout=30) as response:
        for line in response.iter_lines():
            if line:
                arrivals.append(time.monotonic())
    # 8 tokens at 40/s take ~0.2 s; a buffered response would deliver all lines at once.
    assert len(arrivals) == 9
    assert arrivals[-2] - arrivals[0] > 0.1


def test_it_returns_a_single_object_when_stream_is_false(http):
    body = {"model": CHAT, "prompt": "Tell me about queues", "stream": False, "options": {"seed": 42}}
    response = http.post("/api/generate", json=body)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    assert not response.text.endswith("\n")
    data = response.json()
    assert data["done"] is True and data["done_reason"] == "stop"
    assert RFC3339_UTC.match(data["created_at"])
    # The same seed streamed gives the same text in pieces.
    streamed = ndjson(http.post("/api/generate", json={**body, "stream": True}).text)
    assert "".join(part["response"] for part in streamed) == data["response"]
    assert streamed[-1]["eval_count"] == data["eval_count"] == len(streamed) - 1


def test_it_reports_context_for_generate_sized_like_the_token_counts(http):
    data = http.post("/api/generate", json={"model": CHAT, "prompt": "hello there", "stream": False,
                                            "options": {"num_predict": 5}}).json()
    assert len(data["context"]) == data["prompt_eval_count"] + data["eval_count"]
    # Feeding the context back makes the prompt longer, as a conversation would.
    again = http.post("/api/generate", json={"model": CHAT, "prompt": "and more", "stream": False,
                                             "context": data["context"], "options": {"num_predict": 5}}).json()
    assert again["prompt_eval_count"] > len(data["context"])
    raw = http.post("/api/generate", json={"model": CHAT, "prompt": "x", "raw": True, "stream": False,
                                           "options": {"num_predict": 2}}).json()
    assert "context" not in raw


def test_it_omits_metrics_that_are_zero(http):
    data = http.post("/api/generate", json={"model": CHAT, "prompt": "x", "stream": False,
                                            "options": {"num_predict": 0}}).json()
    assert data["done_reason"] == "length"
    assert "eval_count" not in data
    assert data["prompt_eval_count"] > 0


def test_it_preloads_on_empty_messages_and_answers_plain_json(sim, http):
    response = http.post("/api/chat", json={"model": CHAT, "messages": []})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json; charset=utf-8"  # even though streaming is on
    data = response.json()
    assert data["done_reason"] == "load" and data["done"] is True
    assert data["message"] == {"role": "assistant", "content": ""}
    assert loaded_names(sim) == [CHAT]
    generate = http.post("/api/generate", json={"model": CODER}).json()
    assert generate == {"model": CODER, "created_at": generate["created_at"], "response": "", "done": True,
                        "done_reason": "load"}
    assert sorted(loaded_names(sim)) == sorted([CHAT, CODER])


def test_it_unloads_with_keep_alive_zero_even_when_not_loaded(sim, http):
    http.post("/api/generate", json={"model": CHAT})
    assert loaded_names(sim) == [CHAT]
    data = http.post("/api/generate", json={"model": CHAT, "keep_alive": 0}).json()
    assert data["done_reason"] == "unload"
    assert loaded_names(sim) == []
    again = http.post("/api/chat", json={"model": CHAT, "messages": [], "keep_alive": 0})
    assert again.status_code == 200 and again.json()["done_reason"] == "unload"
    unknown = http.post("/api/chat", json={"model": "nope", "messages": [], "keep_alive": 0})
    assert unknown.status_code == 404 and unknown.json() == {"error": "model 'nope' not found"}


def test_it_preloads_and_unloads_through_the_official_client(sim):
    client = ollama.Client(host=sim.url)
    loaded = client.chat(model=CHAT)  # sends messages: [] and tools: []
    assert loaded.done_reason == "load"
    assert client.generate(model=CHAT, keep_alive=0).done_reason == "unload"
    assert client.ps().models == []


def test_it_lists_tags_with_both_name_and_model(http, sim):
    response = http.get("/api/tags")
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    models = response.json()["models"]
    names = [m["name"] for m in models]
    assert set(names) == {CHAT, CODER, "qwen3:0.6b", EMBEDDER}
    for model in models:
        assert model["model"] == model["name"]
        assert re.match(r"^[0-9a-f]{64}$", model["digest"])
        assert list(model["details"]) == ["parent_model", "format", "family", "families", "parameter_size",
                                          "quantization_level", "context_length", "embedding_length"]
        assert datetime.fromisoformat(model["modified_at"]).tzinfo is not None
    stamps = [m["modified_at"] for m in models]
    assert stamps == sorted(stamps, reverse=True)  # newest first
    head = http.head("/api/tags")
    assert head.status_code == 200 and head.content == b""
    listed = ollama.Client(host=sim.url).list()
    assert {m.model for m in listed.models} == set(names)


def test_it_gives_tags_the_training_context_and_embedding_size_since_0_30(sim, http):
    details = {m["name"]: m["details"] for m in http.get("/api/tags").json()["models"]}
    assert (details[CHAT]["context_length"], details[CHAT]["embedding_length"]) == (131072, 3072)
    assert (details[EMBEDDER]["context_length"], details[EMBEDDER]["embedding_length"]) == (512, 384)
    listed = {m.model: m.details for m in ollama.Client(host=sim.url).list().models}
    assert listed[EMBEDDER].family == "bert"
    # /api/show and /api/ps build their details without them.
    assert "context_length" not in http.post("/api/show", json={"model": CHAT}).json()["details"]
    http.post("/api/generate", json={"model": CHAT})
    assert "context_length" not in http.get("/api/ps").json()["models"][0]["details"]


def test_it_leaves_the_lengths_out_of_tags_before_0_30():
    with SimulatorProcess(sim_config({"version": "0.29.1"})) as older:
        details = httpx.get(older.url + "/api/tags").json()["models"][0]["details"]
    assert "context_length" not in details and "embedding_length" not in details


def test_it_answers_health_and_version(http):
    root = http.get("/")
    assert root.status_code == 200 and root.text == "Ollama is running"
    assert root.headers["content-type"] == "text/plain; charset=utf-8"
    assert http.head("/").status_code == 200
    assert http.get("/api/version").json() == {"version": "0.32.15"}


def test_it_shows_a_model_in_the_shape_the_client_parses(sim, http):
    shown = ollama.Client(host=sim.url).show(CHAT)
    assert shown.capabilities == ["completion", "tools"]
    assert shown.details.family == "llama"
    assert shown.modelinfo["llama.context_length"] == 131072
    assert "FROM " in shown.modelfile and shown.template
    legacy_name = http.post("/api/show", json={"name": "llama3.2:3B"})
    assert legacy_name.status_code == 200
    assert http.post("/api/show", json={}).json() == {"error": "model is required"}


def test_it_lists_running_models_sorted_by_expiry_with_local_times(sim, http):
    http.post("/api/generate", json={"model": CODER, "keep_alive": "10m"})
    http.post("/api/generate", json={"model": CHAT, "keep_alive": -1})
    http.post("/api/embed", json={"model": EMBEDDER, "input": "", "keep_alive": "1m"})
    models = http.get("/api/ps").json()["models"]
    assert [m["name"] for m in models] == [CHAT, CODER, EMBEDDER]
    forever = datetime.fromisoformat(models[0]["expires_at"])
    assert forever.year >= 2300  # keep_alive -1 is MaxInt64 nanoseconds away (about 2318)
    ten = ollama.Client(host=sim.url).ps().models[1]
    remaining = ten.expires_at - datetime.now().astimezone()
    assert timedelta(minutes=9) < remaining <= timedelta(minutes=10)
    for model in models:
        assert model["size_vram"] == model["size"] > 0
        # The training context caps the 24 GiB GPU's default of 32768.
        assert model["context_length"] == {EMBEDDER: 512, CODER: 32768, CHAT: 32768}[model["name"]]
        assert list(model) == ["name", "model", "size", "digest", "details", "expires_at", "size_vram",
                               "context_length"]


def test_it_pulls_with_streamed_progress(sim, http):
    lines = ndjson(http.post("/api/pull", json={"model": "tinyllama:1.1b"}).text)
    statuses = [line["status"] for line in lines]
    assert statuses[0] == "pulling manifest"
    assert statuses[-4:] == ["verifying sha256 digest", "writing manifest", "removing unused layers", "success"]
    layer = [line for line in lines if line["status"].startswith("pulling ") and line.get("total") == 637_700_138]
    assert "completed" not in layer[0]
    assert [line["completed"] for line in layer[1:]] == sorted(line["completed"] for line in layer[1:])
    assert layer[-1]["completed"] == layer[-1]["total"]
    assert layer[0]["digest"] == "sha256:" + layer[0]["digest"][7:] and layer[0]["status"] == "pulling " + layer[0]["digest"][7:19]
    assert "tinyllama:1.1b" in [m["name"] for m in http.get("/api/tags").json()["models"]]
    done = ollama.Client(host=sim.url).pull("tinyllama:1.1b")
    assert done.status == "success"
    http.request("DELETE", "/api/delete", json={"model": "tinyllama:1.1b"})


def test_it_reports_an_unknown_pull_as_an_error_line_after_the_manifest(sim, http):
    response = http.post("/api/pull", json={"model": "does-not-exist"})
    assert response.status_code == 200
    assert ndjson(response.text) == [{"status": "pulling manifest"},
                                     {"error": "pull model manifest: file does not exist"}]
    blocking = http.post("/api/pull", json={"model": "does-not-exist", "stream": False})
    assert blocking.status_code == 500
    assert blocking.json() == {"error": "pull model manifest: file does not exist"}
    with pytest.raises(ollama.ResponseError) as caught:
        list(ollama.Client(host=sim.url).pull("does-not-exist", stream=True))
    assert caught.value.status_code == -1


def test_it_copies_and_deletes_with_empty_bodies(sim, http):
    copied = http.post("/api/copy", json={"source": CHAT, "destination": "my-chat:v1"})
    assert copied.status_code == 200 and copied.content == b""
    tags = {m["name"]: m for m in http.get("/api/tags").json()["models"]}
    assert tags["my-chat:v1"]["digest"] == tags[CHAT]["digest"]
    deleted = http.request("DELETE", "/api/delete", json={"model": "My-Chat:v1"})
    assert deleted.status_code == 200 and deleted.content == b""
    assert "my-chat:v1" not in [m["name"] for m in http.get("/api/tags").json()["models"]]
    missing = http.request("DELETE", "/api/delete", json={"model": "my-chat:v1"})
    assert missing.status_code == 404 and missing.json() == {"error": "model 'my-chat:v1' not found"}
    assert http.post("/api/copy", json={"source": "nope", "destination": "x"}).json() == {
        "error": 'model "nope" not found'}
    assert ollama.Client(host=sim.url).copy(CHAT, "tmp-copy").status == "success"
    assert ollama.Client(host=sim.url).delete("tmp-copy").status == "success"


def test_it_creates_a_model_from_an_installed_one_on_the_same_weights(sim, http):
    client = ollama.Client(host=sim.url)
    done = client.create(model="chat-big:v1", from_=CHAT, parameters={"num_ctx": 65536}, stream=False)
    assert done.status == "success"
    show = client.show("chat-big:v1")
    assert re.search(r"^num_ctx\s+65536$", show.parameters, re.MULTILINE)
    assert show.capabilities == client.show(CHAT).capabilities
    streamed = ndjson(http.post("/api/create", json={"model": "chat-sys", "from": CHAT, "system": "Be brief."}).text)
    assert [line["status"].split(" sha256:")[0] for line in streamed] == [
        "using existing layer", "creating new layer", "writing manifest", "success"]
    # The same weights, so one runner: asking for the other one with another context reloads it.
    http.post("/api/generate", json={"model": CHAT, "options": {"num_ctx": 4096}})
    http.post("/api/generate", json={"model": "chat-big:v1", "options": {"num_ctx": 65536}})
    assert loaded_names(sim) == ["chat-big:v1"]
    assert sim.model_stats("chat-big:v1").get("reloads", 0) + sim.model_stats(CHAT).get("reloads", 0) == 1
    for name in ("chat-big:v1", "chat-sys"):
        http.request("DELETE", "/api/delete", json={"model": name})


@pytest.mark.parametrize(("body", "status", "error"), [
    ({"model": "x", "from": "nope"}, 500, "pull model manifest: file does not exist"),
    ({"model": "x", "files": {"model.gguf": "sha256:00"}}, 400, "neither 'from' or 'files' was specified"),
    ({"model": "bad name!", "from": CHAT}, 400, "invalid model name"),
])
def test_it_refuses_a_create_it_cannot_do(http, body, status, error):
    response = http.post("/api/create", json={**body, "stream": False})
    assert (response.status_code, response.json()) == (status, {"error": error})


def test_it_keeps_a_deleted_model_running_until_it_expires(sim, http):
    http.post("/api/copy", json={"source": CODER, "destination": "doomed"})
    http.post("/api/generate", json={"model": "doomed"})
    http.request("DELETE", "/api/delete", json={"model": "doomed"})
    assert "doomed:latest" in loaded_names(sim)
    assert http.post("/api/generate", json={"model": "doomed", "prompt": "x"}).status_code == 404


def test_it_serves_an_empty_catalogue_as_empty_lists():
    with SimulatorProcess(sim_config(models=[], pullable=[])) as sim:
        assert httpx.get(sim.url + "/api/tags").text == '{"models":[]}'
        assert httpx.get(sim.url + "/api/ps").text == '{"models":[]}'
        assert httpx.get(sim.url + "/v1/models").json() == {"object": "list", "data": None}


def test_it_escapes_json_like_go(http):
    data = http.post("/api/generate", json={"model": CHAT, "prompt": "x", "keep_alive": "<b>&"})
    assert data.text == '{"error":"time: invalid duration \\"\\u003cb\\u003e\\u0026\\""}'


def test_it_writes_expiry_in_the_servers_time_zone_and_created_at_in_utc():
    with SimulatorProcess(sim_config(), env={"TZ": "America/New_York"}) as sim:
        reply = httpx.post(sim.url + "/api/generate", json={"model": CHAT, "keep_alive": "1h"}, timeout=30).json()
        expires = httpx.get(sim.url + "/api/ps").json()["models"][0]["expires_at"]
    assert RFC3339_UTC.match(reply["created_at"])
    assert re.search(r"-0[45]:00$", expires)  # EST or EDT, never Z
