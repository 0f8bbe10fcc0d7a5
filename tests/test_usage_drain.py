"""The usage drain (usage/drain.py) moves each record from its Redis stream into the database once,
and a drain that dies anywhere on the way leaves nothing the next drain cannot finish: every record
written once, the streams empty, nothing left pending.

A worker dies when it is killed (kill -9, an OOM kill, a node going away), which can land between
any two of the drain's steps. A test cannot aim a real kill that precisely, so here the drain "dies"
by an exception raised before its Nth step, a Redis command or the database write, for every N in
turn; everything else is real: a real redis-server and the test database.
"""

from __future__ import annotations

import time

import pytest
from django.test import override_settings

from common.store import keys
from common.store.client import sync_client
from tests.support.processes import RedisServer
from usage import drain
from usage.models import UsageRecord

# (stream, the prefix the drain gives its ids, entries): two shards, and the stream of the releases
# before the shards.
SEEDED = [(keys.usage_stream(2), "2:", 3), (keys.usage_stream(5), "5:", 2), (keys.USAGE_STREAM_BEFORE_SHARDS, "", 1)]
STEPS = ("xgroup_create", "xreadgroup", "xack", "xdel")


class WorkerDied(BaseException):
    """The process ending where it stands: nothing after it runs, no handler catches it."""


class DyingClient:
    """The drain's Redis client, which dies before its `dies_at`-th step (a database write counts)."""

    def __init__(self, client, dies_at: int) -> None:
        self.client, self.dies_at, self.steps = client, dies_at, 0

    def step(self) -> None:
        self.steps += 1
        if self.steps == self.dies_at:
            raise WorkerDied

    def dying(self, method):
        """`method`, as one more step that may not happen."""

        def step_then(*args, **kwargs):
            self.step()
            return method(*args, **kwargs)

        return step_then

    def __getattr__(self, name: str):
        method = getattr(self.client, name)
        return self.dying(method) if name in STEPS else method


@pytest.fixture
def redis_url():
    server = RedisServer()
    with override_settings(REDIS_URL=server.url, REDIS_CLUSTER=False):
        yield server.url
    server.stop()


def seed(client) -> set[str]:
    """Add the entries of SEEDED; return the stream ids their records get."""
    ids = set()
    for stream, prefix, count in SEEDED:
        for _ in range(count):
            entry = client.xadd(stream, {"at": str(time.time()), "model": "drained:latest", "status": "200",
                                         "reason": "ok", "completion_tokens": "3"})
            ids.add(prefix + entry)
    return ids


def left_behind(client) -> dict[str, tuple[int, int]]:
    """(entries, pending entries) of each stream that still holds either."""
    found = {}
    for stream, _, _ in SEEDED:
        pending = client.xpending(stream, keys.USAGE_DRAIN_GROUP)["pending"] if client.exists(stream) else 0
        if client.xlen(stream) or pending:
            found[stream] = (client.xlen(stream), pending)
    return found


@pytest.mark.django_db
def test_a_drain_that_dies_at_any_step_leaves_the_next_one_everything_to_finish(redis_url, monkeypatch):
    client = sync_client()
    dies_at, deaths = 1, 0
    while True:
        client.flushall()
        UsageRecord.objects.all().delete()
        expected = seed(client)
        dying = DyingClient(client, dies_at)
        monkeypatch.setattr(drain, "sync_client", lambda: dying)  # noqa: B023 (called within the iteration)
        monkeypatch.setattr(UsageRecord.objects, "bulk_create", dying.dying(UsageRecord.objects.bulk_create))
        try:
            drain.drain()
            died = False
        except WorkerDied:
            died = True
        monkeypatch.undo()
        drain.drain()  # the next worker's drain, whole
        where = f"the drain died before its step {dies_at}"
        assert left_behind(client) == {}, where
        assert sorted(UsageRecord.objects.values_list("stream_id", flat=True)) == sorted(expected), where
        if not died:
            break
        dies_at, deaths = dies_at + 1, deaths + 1
    # Every stream's group, reads of pending and new entries, a write, an acknowledgement and a delete.
    assert deaths > 3 * len(SEEDED) + 3
