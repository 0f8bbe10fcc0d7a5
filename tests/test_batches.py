"""The Batch API (/v1/batches, issue 17) with the real `openai` SDK, end to end: a live web process, a
simulator node, a Celery worker with its beat, and the batch feeder in a worker of its own, as `make run`
starts them. Each test waits on the batch's status with a deadline.

Checked here, as a user would see them: every line answered once, in OpenAI's output and error files;
request_counts and usage; the bound on lines in flight, at the node; cancel; the completion window (the
one thing mocked: 24 hours cannot pass in a test, so the test moves the batch's deadline); a token quota
that closes mid-batch; the cap on active batches; kill -9 of the feeder's worker and of the web process
mid-batch, with a Redis restart; a node that dies mid-batch; a revoked key; an input file gone before it
was read.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest

from common.store import keys
from tests.support.processes import BatchWorker, CeleryWorker, eventually, session_tmp
from tests.support.stack import Stack, sim_config, web_env

FAST = "batch-fast:latest"  # 10 tokens in 0.05 s
SLOW = "batch-slow:latest"  # 10 tokens in 0.5 s
PAIR = "batch-pair:latest"  # on two nodes, one of which dies
BUSY = "batch-busy:latest"  # 10 tokens in 0.2 s, a queue of 2: interactive callers share it with a batch
EMBED = "batch-embed:latest"  # an embedding model, beside FAST
PEOPLE = ("runner", "canceller", "limited", "crowd", "killer", "other", "revoked", "survivor", "typist", "bulk",
          "mixer", "stopper")
MAX_ACTIVE = 3
FEEDER_ENV = {"BATCH_FEED_SECONDS": "0.5", "BATCH_FEEDER_LEASE_SECONDS": "2", "BATCH_FEEDER_IDLE_SECONDS": "5",
              "USAGE_DRAIN_SECONDS": "0.3", "NODE_POLL_SECONDS": "3600"}


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker):
    files_dir = session_tmp() / "batch-test-files"
    # Short slot leases: the kill -9 test waits for the killed feeder's slots to lapse.
    env = {"BATCH_FILES_DIR": str(files_dir), "BATCH_MAX_ACTIVE_PER_PERSON": str(MAX_ACTIVE), "SLOT_LEASE_SECONDS": "3"}
    with django_db_blocker.unblock():
        gpu = sim_config([FAST], tokens_per_second=200, reply_tokens=10)
        gpu["models"].append({"name": EMBED, "size": 100_000_000, "capabilities": ["embedding"], "context_length": 512,
                              "embedding_length": 384})
        stack = Stack({"gpu": gpu,
                       "slow": sim_config([SLOW], tokens_per_second=20, reply_tokens=10),
                       "left": sim_config([PAIR], tokens_per_second=20, reply_tokens=10),
                       "right": sim_config([PAIR], tokens_per_second=20, reply_tokens=10),
                       "busy": sim_config([BUSY], tokens_per_second=50, reply_tokens=10)},
                      models={BUSY: {"max_queue": 2}}, users=PEOPLE, env=env)
    worker = CeleryWorker(web_env(stack.redis.url, **env, **FEEDER_ENV))
    feeder = BatchWorker(web_env(stack.redis.url, **env, **FEEDER_ENV))
    stack.feeder = feeder
    stack.worker_env = web_env(stack.redis.url, **env, **FEEDER_ENV)
    yield stack
    stack.feeder.kill()  # a warm shutdown would wait for the feeder's idle time to pass
    worker.stop()
    with django_db_blocker.unblock():
        stack.stop()


def chat_line(custom_id: str, model: str = FAST, content: str = "Hello", **body) -> dict:
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": 10, **body}}


def upload(client: openai.OpenAI, lines: list[dict]) -> str:
    data = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
    return client.files.create(file=("requests.jsonl", data), purpose="batch").id


def start(client: openai.OpenAI, lines: list[dict], endpoint: str = "/v1/chat/completions"):
    return client.batches.create(input_file_id=upload(client, lines), endpoint=endpoint, completion_window="24h")


def wait_status(client: openai.OpenAI, batch_id: str, statuses: set[str], timeout: float = 60):
    return eventually(lambda: (b := client.batches.retrieve(batch_id)).status in statuses and b,
                      timeout=timeout, what=f"batch {batch_id} to be {statuses}")


def file_lines(client: openai.OpenAI, file_id: str | None) -> list[dict]:
    if file_id is None:
        return []
    return [json.loads(line) for line in client.files.content(file_id).text.splitlines()]


def node_stats(stack: Stack, sim: str, model: str) -> dict:
    models = httpx.get(stack.sims[sim].url + "/sim/stats", timeout=10).json()["models"]
    return models.get(model, {"requests": 0, "loads": 0, "in_flight": 0, "max_in_flight": 0})  # before its first


def generations(stack: Stack, sim: str, model: str) -> int:
    """Requests the node ran for the model, not counting Gatehouse's own load requests (the swap actor's)."""
    stats = node_stats(stack, sim, model)
    return stats["requests"] - stats["loads"]


def usage_of(stack: Stack, person: str, django_db_blocker) -> list:
    from usage.models import UsageRecord

    with django_db_blocker.unblock():
        return list(UsageRecord.objects.filter(user__username=f"{person}-{stack.redis.port}").values(
            "priority", "status", "prompt_tokens", "completion_tokens"))


def test_a_batch_answers_every_line_once_in_openai_shaped_files(world, django_db_blocker):
    client = world.client("runner")
    long_prompt = " ".join(["word"] * 3000)  # past the model's 2048-token context: fails when it runs
    # Half the lines name the model without its tag: the same model and queue, so the same bound in flight.
    lines = [chat_line(f"q-{i}", model=FAST if i % 2 else FAST.removesuffix(":latest"), content=f"Question {i}")
             for i in range(24)] + [chat_line("too-long", content=long_prompt)]
    batch = start(client, lines)
    assert (batch.status, batch.endpoint, batch.completion_window) == ("validating", "/v1/chat/completions", "24h")
    assert batch.request_counts.total == 25 and batch.expires_at - batch.created_at == 24 * 3600

    waiting_seen = []
    stop = threading.Event()

    def watch_queue():  # the batch never fills the queue: at most 2 lines per slot are waiting or running
        while not stop.is_set():
            waiting_seen.append(world.admitted(FAST))
            time.sleep(0.02)

    watcher = threading.Thread(target=watch_queue)
    watcher.start()
    try:
        done = wait_status(client, batch.id, {"completed", "failed", "expired", "cancelled"})
    finally:
        stop.set()
        watcher.join()
    assert done.status == "completed", done
    assert (done.request_counts.total, done.request_counts.completed, done.request_counts.failed) == (25, 24, 1)
    assert done.in_progress_at and done.finalizing_at and done.completed_at
    assert max(waiting_seen) == 8, max(waiting_seen)  # 2 lines per slot of its 4
    assert node_stats(world, "gpu", FAST)["max_in_flight"] <= 4  # the model's concurrency, at the node

    answers = file_lines(client, done.output_file_id)
    assert [a["custom_id"] for a in answers] == [f"q-{i}" for i in range(24)]
    first = answers[0]
    assert first["id"].startswith("batch_req_") and first["error"] is None
    assert first["response"]["status_code"] == 200 and first["response"]["request_id"].startswith("req_")
    assert first["response"]["body"]["object"] == "chat.completion"
    assert first["response"]["body"]["choices"][0]["message"]["content"]
    (failed,) = file_lines(client, done.error_file_id)
    assert failed["custom_id"] == "too-long" and failed["response"]["status_code"] == 400
    assert failed["response"]["body"]["error"]["code"] == "context_length_exceeded"

    output_file = client.files.retrieve(done.output_file_id)
    assert output_file.purpose == "batch_output" and output_file.filename == f"{batch.id}_output.jsonl"
    assert batch.id in [b.id for b in client.batches.list()]
    assert done.usage.output_tokens == sum(a["response"]["body"]["usage"]["completion_tokens"] for a in answers)

    # Usage records count the lines like other requests, at batch priority.
    records = eventually(lambda: len(found := usage_of(world, "runner", django_db_blocker)) >= 25 and found,
                         what="the batch's usage records")
    assert len(records) == 25 and {r["priority"] for r in records} == {"batch"}
    assert sorted(r["status"] for r in records) == [200] * 24 + [400]

    with pytest.raises(openai.NotFoundError):  # another person cannot see it
        world.client("other").batches.retrieve(batch.id)
    with pytest.raises(openai.ConflictError):
        client.batches.cancel(batch.id)

    with django_db_blocker.unblock():  # staff read batches and their lines in the admin
        staff = world.staff_session(permissions=("batches.view_batch", "batches.view_batchline"))
    assert batch.id in staff.get(f"/admin/batches/batch/?q={batch.id}").text
    assert "too-long" in staff.get(f"/admin/batches/batchline/?q={batch.id}").text


def test_lines_may_call_completions_embeddings_and_responses(world):
    client = world.client("mixer")
    requests = {
        "/v1/completions": ({"model": FAST, "prompt": "Once upon a time", "max_tokens": 5}, "text_completion"),
        "/v1/embeddings": ({"model": EMBED, "input": ["first text", "second text"]}, "list"),
        "/v1/responses": ({"model": FAST, "input": "Say hello.", "max_output_tokens": 100}, "response"),
    }
    batches = {endpoint: start(client, [{"custom_id": f"{endpoint}-{i}", "method": "POST", "url": endpoint, "body": body}
                                        for i in range(2)], endpoint=endpoint)
               for endpoint, (body, _) in requests.items()}
    for endpoint, batch in batches.items():
        done = wait_status(client, batch.id, {"completed", "failed", "expired", "cancelled"})
        assert (done.status, done.request_counts.completed) == ("completed", 2), (endpoint, done)
        bodies = [a["response"]["body"] for a in file_lines(client, done.output_file_id)]
        assert [b["object"] for b in bodies] == [requests[endpoint][1]] * 2, (endpoint, bodies)
        assert done.usage.input_tokens > 0
    vectors = [a["response"]["body"]["data"] for a in file_lines(client, client.batches.retrieve(
        batches["/v1/embeddings"].id).output_file_id)]
    assert [len(data) for data in vectors] == [2, 2] and len(vectors[0][0]["embedding"]) == 384
    response = file_lines(client, client.batches.retrieve(batches["/v1/responses"].id).output_file_id)[0]["response"]
    texts = [part["text"] for item in response["body"]["output"] if item["type"] == "message" for part in item["content"]]
    assert response["body"]["status"] == "completed" and any(texts)


def test_cancel_stops_feeding_and_lets_running_lines_finish(world):
    client = world.client("canceller")
    before = generations(world, "slow", SLOW)
    batch = start(client, [chat_line(f"c-{i}", model=SLOW) for i in range(30)])
    eventually(lambda: node_stats(world, "slow", SLOW)["in_flight"] >= 1, what="the first lines to run")
    cancelling = client.batches.cancel(batch.id)
    assert cancelling.status in ("cancelling", "cancelled") and cancelling.cancelling_at
    done = wait_status(client, batch.id, {"cancelled"}, timeout=30)
    counts = done.request_counts
    assert counts.total == 30 and counts.completed + counts.failed == 30
    assert 1 <= counts.completed <= 8  # what was running or queued when it was cancelled
    ran = generations(world, "slow", SLOW) - before
    assert ran == counts.completed  # lines running at the cancel finished; none started after it
    never_ran = file_lines(client, done.error_file_id)
    assert len(never_ran) == 30 - counts.completed
    assert {line["error"]["code"] for line in never_ran} == {"batch_cancelled"}
    assert all(line["response"] is None for line in never_ran)
    assert len(file_lines(client, done.output_file_id)) == counts.completed


def test_a_token_quota_stops_a_batch_and_the_window_expires_what_is_left(world, django_db_blocker):
    from apiaccess.models import ApiKey
    from batches.models import Batch

    with django_db_blocker.unblock():
        ApiKey.objects.filter(user__username=f"limited-{world.redis.port}").update(tokens_per_day=120)
    client = world.client("limited")
    batch = start(client, [chat_line(f"l-{i}") for i in range(20)])
    # The quota closes after a few lines; the rest wait for it to open (tomorrow), their attempt refused.
    eventually(lambda: any(r["status"] == 429 for r in usage_of(world, "limited", django_db_blocker)),
               what="a line refused by the token quota")
    # Lines admitted before the quota closed still finish; then nothing more runs.
    eventually(lambda: node_stats(world, "gpu", FAST)["in_flight"] == 0, what="the admitted lines to finish")
    stalled = eventually(lambda: (b := client.batches.retrieve(batch.id)).request_counts.completed ==
                         len([r for r in usage_of(world, "limited", django_db_blocker) if r["status"] == 200]) and b,
                         what="the lines that ran to be recorded")
    assert stalled.status == "in_progress" and 1 <= stalled.request_counts.completed < 20
    # 24 hours cannot pass here: move the deadline instead.
    with django_db_blocker.unblock():
        Batch.objects.filter(public_id=batch.id).update(expires_at=Batch.objects.get(public_id=batch.id).created_at)
    done = wait_status(client, batch.id, {"expired"}, timeout=30)
    assert done.expired_at and done.request_counts.completed == stalled.request_counts.completed
    assert done.request_counts.failed == 20 - done.request_counts.completed
    expired = file_lines(client, done.error_file_id)
    assert {line["error"]["code"] for line in expired} == {"batch_expired"}
    assert len(file_lines(client, done.output_file_id)) == done.request_counts.completed


def test_a_person_may_have_only_so_many_batches_running(world):
    client = world.client("crowd")
    file_id = upload(client, [chat_line(f"s-{i}", model=SLOW) for i in range(40)])

    def create():
        try:
            return client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions",
                                         completion_window="24h").id
        except openai.RateLimitError as refused:
            return refused

    with ThreadPoolExecutor(MAX_ACTIVE + 2) as pool:
        results = list(pool.map(lambda _: create(), range(MAX_ACTIVE + 2)))
    created = [r for r in results if isinstance(r, str)]
    refused = [r for r in results if not isinstance(r, str)]
    assert len(created) == MAX_ACTIVE and len(refused) == 2
    assert refused[0].code == "too_many_active_batches" and str(MAX_ACTIVE) in refused[0].message
    client.batches.cancel(created[0])
    wait_status(client, created[0], {"cancelled"}, timeout=30)
    created.append(client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions",
                                         completion_window="24h").id)  # room again
    for batch_id in created[1:]:
        client.batches.cancel(batch_id)
    for batch_id in created[1:]:
        wait_status(client, batch_id, {"cancelled"}, timeout=30)


def test_creating_a_batch_checks_its_parameters(world):
    client = world.client("other")
    file_id = upload(client, [chat_line("only")])
    with pytest.raises(openai.BadRequestError) as bad:
        client.batches.create(input_file_id=file_id, endpoint="/v1/images/generations", completion_window="24h")
    assert bad.value.param == "endpoint"
    with pytest.raises(openai.BadRequestError) as bad:
        client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="1h")
    assert bad.value.param == "completion_window" and "24h" in bad.value.message
    with pytest.raises(openai.BadRequestError) as bad:  # the lines call chat, not embeddings
        client.batches.create(input_file_id=file_id, endpoint="/v1/embeddings", completion_window="24h")
    assert bad.value.param == "endpoint" and "/v1/chat/completions" in bad.value.message
    with pytest.raises(openai.NotFoundError) as missing:
        client.batches.create(input_file_id="file-nope", endpoint="/v1/chat/completions", completion_window="24h")
    assert missing.value.param == "input_file_id"
    with pytest.raises(openai.BadRequestError) as bad:
        client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h",
                              metadata={"k" * 65: "v"})
    assert bad.value.param and bad.value.param.startswith("metadata")
    with pytest.raises(openai.NotFoundError):
        client.batches.retrieve("batch_nope")
    reply = httpx.post(world.url() + "/batches", headers=world.headers("other"), content=b"{not json")
    assert reply.status_code == 400 and reply.json()["error"]["type"] == "invalid_request_error"


def test_a_batch_survives_kill_9_of_its_feeder_and_web_process_and_a_redis_restart(world, django_db_blocker):
    client = world.client("killer")
    before = generations(world, "slow", SLOW)
    batch = start(client, [chat_line(f"k-{i}", model=SLOW) for i in range(24)])
    eventually(lambda: client.batches.retrieve(batch.id).request_counts.completed >= 4, timeout=30,
               what="some lines done")
    world.feeder.kill()  # kill -9: no cleanup; its lines in flight are lost with it
    world.webs[0].kill()  # and the web process that created the batch: batches do not live in it
    world.redis.kill()  # and Redis restarts, empty: the feeder's lease, the queue, its slots are gone
    world.redis.start()
    world.feeder = BatchWorker(world.worker_env)
    world.webs[0] = world.webs.pop(world.start_web())  # its replacement
    client = world.client("killer")
    done = wait_status(client, batch.id, {"completed"}, timeout=90)
    assert (done.request_counts.completed, done.request_counts.failed) == (24, 0)
    answers = file_lines(client, done.output_file_id)
    assert sorted(a["custom_id"] for a in answers) == sorted(f"k-{i}" for i in range(24))  # each once
    # Only the lines in flight at the kill (at most 2 per slot: 8) reached the node twice.
    ran = generations(world, "slow", SLOW) - before
    assert 24 <= ran <= 24 + 8, ran
    assert node_stats(world, "slow", SLOW)["max_in_flight"] <= 4


def test_a_batch_worker_told_to_stop_hands_its_batch_on_at_once(world):
    """SIGTERM mid-batch (compose stop, a Kubernetes rollout, Ctrl-C): the worker stops within seconds rather
    than running the batch to its end, it releases the feeder's lease, and the next worker finishes the
    batch with each line once."""
    client = world.client("stopper")
    before = generations(world, "slow", SLOW)
    batch = start(client, [chat_line(f"t-{i}", model=SLOW) for i in range(24)])
    eventually(lambda: client.batches.retrieve(batch.id).request_counts.completed >= 4, timeout=30,
               what="some lines done")
    stopping = world.feeder
    asked_at = time.monotonic()
    stopping.proc.terminate()
    stopping.proc.wait(timeout=60)
    # The rest of the batch alone would keep it about 2.5 s, then its idle time (5 s here) before it exits.
    assert time.monotonic() - asked_at < 4
    assert not world.kv.exists(keys.BATCH_FEEDER)  # released, not left to lapse
    stopping.stop()
    world.feeder = BatchWorker(world.worker_env)
    done = wait_status(client, batch.id, {"completed"}, timeout=60)
    assert (done.request_counts.completed, done.request_counts.failed) == (24, 0)
    answers = file_lines(client, done.output_file_id)
    assert sorted(a["custom_id"] for a in answers) == sorted(f"t-{i}" for i in range(24))
    assert 24 <= generations(world, "slow", SLOW) - before <= 24 + 8  # the lines cut off at the stop ran again


def test_a_batch_whose_key_is_revoked_fails_and_keeps_what_ran(world, django_db_blocker, settings):
    from apiaccess.lifecycle import revoke_key
    from apiaccess.models import ApiKey
    from batches.models import Batch

    client = world.client("revoked")
    batch = start(client, [chat_line(f"r-{i}", model=SLOW) for i in range(20)])
    eventually(lambda: client.batches.retrieve(batch.id).request_counts.completed >= 2, what="some lines done")
    settings.REDIS_URL = world.redis.url  # the change is announced in the stack's Redis, as the web's would be
    with django_db_blocker.unblock():
        revoke_key(ApiKey.objects.get(user__username=f"revoked-{world.redis.port}"), actor=None, via="test")

    def failed():
        with django_db_blocker.unblock():  # the key is revoked: the API no longer answers its owner's key
            row = Batch.objects.select_related("output_file", "error_file").get(public_id=batch.id)
        return row.status == "failed" and row

    done = eventually(failed, what="the batch to fail", timeout=30)
    assert done.errors["data"][0]["code"] == "invalid_api_key" and "revoked" in done.errors["data"][0]["message"]
    assert done.completed_count >= 2 and done.completed_count + done.failed_count == 20
    assert done.output_file.line_count == done.completed_count
    assert done.error_file.line_count == 20 - done.completed_count


def test_a_batch_whose_input_file_is_gone_fails_with_the_reason(world, django_db_blocker):
    import datetime as dt

    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from batches.models import Batch

    with django_db_blocker.unblock():  # as if the file were deleted between the create and the first read
        owner = get_user_model().objects.get(username=f"other-{world.redis.port}")
        row = Batch.objects.create(owner=owner, input_file=None, input_file_public_id="file-gone",
                                   endpoint="/v1/chat/completions", total_count=3,
                                   expires_at=timezone.now() + dt.timedelta(hours=24))
    failed = wait_status(world.client("other"), row.public_id, {"failed"}, timeout=30)
    assert failed.errors.data[0].code == "invalid_input_file" and "file-gone" in failed.errors.data[0].message
    assert (failed.request_counts.completed, failed.request_counts.failed) == (0, 3)


def test_a_batch_finishes_on_the_other_node_when_one_dies(world):
    client = world.client("survivor")
    batch = start(client, [chat_line(f"n-{i}", model=PAIR) for i in range(24)])
    eventually(lambda: generations(world, "left", PAIR) >= 2 and client.batches.retrieve(batch.id).request_counts.completed >= 4,
               timeout=30, what="lines running on both nodes")
    world.sims["left"].kill()  # its lines in flight fail over or are tried again
    done = wait_status(client, batch.id, {"completed"}, timeout=60)
    assert (done.request_counts.completed, done.request_counts.failed) == (24, 0)
    answers = file_lines(client, done.output_file_id)
    assert sorted(a["custom_id"] for a in answers) == sorted(f"n-{i}" for i in range(24))
    assert node_stats(world, "right", PAIR)["max_in_flight"] <= 4


def test_interactive_callers_keep_their_queue_places_while_a_batch_runs(world, django_db_blocker):
    """The model's queue holds 2. Batch lines wait behind interactive calls, so they never take those two
    places: two people calling in a loop next to a 40-line batch are never refused. The feeder, refused
    itself when the queue is full, tries again when a place opens; those attempts are not usage."""
    bulk = world.client("bulk")
    batch = start(bulk, [chat_line(f"b-{i}", model=BUSY) for i in range(40)])
    eventually(lambda: node_stats(world, "busy", BUSY)["in_flight"] >= 1, what="the batch to start", timeout=30)
    typist = world.client("typist", max_retries=0)
    answers, refusals = [], []

    def call_in_a_loop():
        while client_should_go_on.is_set():
            try:
                typist.chat.completions.create(model=BUSY, messages=[{"role": "user", "content": "Hi"}], max_tokens=10)
                answers.append(1)
            except openai.APIStatusError as refused:
                refusals.append(refused.status_code)

    client_should_go_on = threading.Event()
    client_should_go_on.set()
    callers = [threading.Thread(target=call_in_a_loop) for _ in range(2)]
    for caller in callers:
        caller.start()
    try:
        done = wait_status(bulk, batch.id, {"completed"}, timeout=90)
    finally:
        client_should_go_on.clear()
        for caller in callers:
            caller.join()
    assert refusals == [] and len(answers) >= 10
    assert (done.request_counts.completed, done.request_counts.failed) == (40, 0)
    assert node_stats(world, "busy", BUSY)["max_in_flight"] <= 4
    # A line the full queue turned away is tried again, unseen: the person's usage shows the 40 lines.
    records = eventually(lambda: (found := usage_of(world, "bulk", django_db_blocker)) and len(found) >= 40 and found,
                         what="the lines' usage records")  # written in the background
    assert [(r["status"], r["priority"]) for r in records] == [(200, "batch")] * 40
