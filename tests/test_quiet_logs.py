"""Logs a person can read: a refused API request (503) is one line, not three, and an idle Celery worker
does not write a line for every periodic task it runs (two dozen a minute) unless LOG_LEVEL=DEBUG."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
from django.test import RequestFactory

from common.store.keys import usage_streams
from portal.logfilters import QuietRefusals
from tests.support.processes import CeleryWorker, RedisServer, eventually
from tests.support.stack import Stack, sim_config

MODEL = "quiet-logs:latest"  # one slot, no queue: a burst is mostly refused


@pytest.fixture(scope="module")
def stack(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        world = Stack({"gpu": sim_config([MODEL], tokens_per_second=10, reply_tokens=10)},
                      models={MODEL: {"concurrency": 1, "max_queue": 0}}, env={"LOG_LEVEL": "INFO"})
    yield world
    with django_db_blocker.unblock():
        world.stop()


def test_a_refused_request_is_one_line_in_the_web_log(stack):
    assert stack.chat(MODEL, max_tokens=1).status_code == 200  # loaded: the burst below is refused at once
    start = threading.Barrier(6)

    def one(_):
        start.wait()
        return stack.chat(MODEL)

    with ThreadPoolExecutor(6) as pool:
        responses = list(pool.map(one, range(6)))
    refused = [r for r in responses if r.status_code == 503]
    assert refused and all(r.json()["error"]["code"] == "queue_full" for r in refused)
    log = stack.webs[0]
    eventually(lambda: log.output().count('" 503 ') == len(refused), what="the access log's lines")
    lines = log.output().splitlines()
    assert [line for line in lines if " 503 " in line or "503" in line and "queue" in line.lower()] == \
        [line for line in lines if '"POST /v1/chat/completions" 503 ' in line]
    assert "Service Unavailable" not in log.output()


def _record(status: int, path: str) -> logging.LogRecord:
    record = logging.LogRecord("django.request", logging.ERROR, __file__, 1, "%s: %s", ("x", path), None)
    record.status_code, record.request = status, RequestFactory().get(path)
    return record


@pytest.mark.parametrize(("status", "path", "logged"), [
    (503, "/v1/chat/completions", False),  # a refusal Gatehouse chose, already in the access log
    (503, "/api/embeddings", False),
    (500, "/v1/chat/completions", True),  # a crash: always
    (503, "/healthz", True),  # the database or Redis is down
    (404, "/v1/nothing", True),
])
def test_only_the_apis_503s_are_left_to_the_access_log(status, path, logged):
    assert QuietRefusals().filter(_record(status, path)) is logged


ROUTINE = ("Sending due task", "succeeded in", "] received")


@pytest.fixture
def workers(django_db_setup, static_root):
    """Two workers with beat, the same fast schedule, LOG_LEVEL INFO and DEBUG, each on a Redis of its own."""
    from django.db import connection

    from tests.conftest import _database_url

    started = []
    for level in ("INFO", "DEBUG"):
        server = RedisServer()
        env = {"DATABASE_URL": _database_url(connection.settings_dict), "REDIS_URL": server.url,
               "DEBUG": "false", "SECRET_KEY": "test-secret-key-for-the-live-server", "LOG_LEVEL": level,
               "STATIC_ROOT": static_root, "USAGE_DRAIN_SECONDS": "0.5", "KEY_LAST_USED_FLUSH_SECONDS": "0.5",
               "NODE_POLL_SECONDS": "1"}
        started.append((CeleryWorker(env), server))
    yield {"INFO": started[0], "DEBUG": started[1]}
    for worker, server in started:
        worker.stop()
        server.stop()


def test_an_idle_worker_logs_its_periodic_tasks_only_at_debug(workers):
    quiet, quiet_redis = workers["INFO"]
    chatty, _ = workers["DEBUG"]
    # The DEBUG worker shows the schedule running: beat sends, the worker receives and runs.
    eventually(lambda: all(chatty.output().count(line) >= 4 for line in ROUTINE), timeout=60,
               what="the DEBUG worker's task lines", proc=chatty.proc)
    # The INFO worker runs the same tasks (the usage drain made its Redis stream), and says nothing of them.
    client = redis.Redis.from_url(quiet_redis.url)
    eventually(lambda: client.exists(*usage_streams()), what="the INFO worker's drain task ran", proc=quiet.proc)
    client.close()
    assert "ready." in quiet.output(), "the INFO worker logs at INFO"
    for line in ROUTINE:
        assert line not in quiet.output(), line
