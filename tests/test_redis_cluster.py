"""Gatehouse on a real Redis Cluster of three masters (REDIS_CLUSTER): the state spreads over the shards,
and what every web process must hear still reaches each of them.

The core tests of the queue bounds, rate limits and usage records run on a cluster too
(tests/test_queue_bounds.py, test_rate_limits.py and test_usage_records.py name them with
`on_each_redis`); this module holds what only a cluster shows.
"""

from __future__ import annotations

import threading

import httpx
import pytest
import redis

from common.store import keys
from tests.support.processes import eventually
from tests.support.stack import Stack, sim_config

MODELS = [f"cluster-m{n}:latest" for n in range(6)]  # six hash tags: spread over the three masters
TIGHT = "cluster-tight:latest"  # 2 slots, 2 waiting, replies of 3 s: a burst meets a full queue
TOKEN = "cluster-metrics-token"


@pytest.fixture(scope="module")
def stack(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        world = Stack({"gpu": sim_config(MODELS, tokens_per_second=200, reply_tokens=4),
                       "slow": sim_config([TIGHT], tokens_per_second=10, reply_tokens=30)}, webs=2, cluster=True,
                      users=("ann", "ben"), env={"METRICS_TOKEN": TOKEN, "API_KEY_CACHE_SECONDS": "600"},
                      models={**{name: {"concurrency": 4} for name in MODELS},
                              TIGHT: {"concurrency": 2, "max_queue": 2}})
    yield world
    with django_db_blocker.unblock():
        world.stop()


def _owner_of(stack: Stack, key: str) -> int:
    """The port of the master that holds `key`'s slot."""
    node = stack.kv.get_node_from_key(key)
    return int(node.port)


def test_models_people_and_usage_records_spread_over_the_shards(stack):
    for n, model in enumerate(MODELS):
        assert stack.chat(model, user="ann", web=n % 2, max_tokens=2).status_code == 200
    # Each model's scheduler state is on the master of its tag, and the six tags are not all on one.
    owners = {_owner_of(stack, keys.model_prefix(model)) for model in MODELS}
    assert len(owners) >= 2
    for model in MODELS:
        assert stack.kv.exists(keys.service(model))  # measured call times: the model's own slot
    # The usage records go to several shards' streams, on more than one master. A record's shard comes
    # from its random id, so six of them can all land on one master's shards (about 1 run in 200):
    # more requests until two masters have records, up to 40 (all on one master: 1 in 10^16).
    for n in range(40):
        if len(_masters_with_usage_records(stack)) >= 2:
            break
        assert stack.chat(MODELS[n % len(MODELS)], user="ann", web=n % 2, max_tokens=2).status_code == 200
    eventually(lambda: len(_masters_with_usage_records(stack)) >= 2, what="usage records on two masters")
    assert all(count > 0 for count in stack.redis.shard_key_counts())


def _masters_with_usage_records(stack: Stack) -> set[int]:
    """The masters whose usage streams were ever written to (the drain deletes what it has read)."""
    return {_owner_of(stack, stream) for stream in keys.usage_streams()
            if stack.kv.exists(stream) and stack.kv.xinfo_stream(stream)["entries-added"] > 0}


def test_grants_travel_on_sharded_channels_of_each_models_own_shard(stack):
    """Each web process listens for a model's grants on the master that holds the model's queue, so a
    grant never crosses the cluster bus."""
    for web in (0, 1):
        for model in MODELS[:3]:
            assert stack.chat(model, user="ann", web=web, max_tokens=2).status_code == 200
    for model in MODELS[:3]:
        port = _owner_of(stack, keys.model_prefix(model))
        with redis.Redis(port=port, decode_responses=True) as shard:
            channels = shard.execute_command("PUBSUB", "SHARDCHANNELS", keys.model_prefix(model) + "g:*")
            assert len(channels) == 2, channels  # one per web process, on this shard only
            elsewhere = [p for p in stack.redis.ports if p != port]
        for other in elsewhere:
            with redis.Redis(port=other, decode_responses=True) as node:
                assert not node.execute_command("PUBSUB", "SHARDCHANNELS", keys.model_prefix(model) + "g:*")


def test_metrics_add_the_shards_up(stack):
    before = _answered(stack)
    for n in range(10):
        assert stack.chat(MODELS[n % 3], user="ben", web=n % 2, max_tokens=2).status_code == 200
    eventually(lambda: _answered(stack) - before == 10, what="ten more answered requests on /metrics")


def _answered(stack: Stack) -> int:
    text = httpx.get(stack.webs[0].url + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10).text
    return sum(int(float(line.rsplit(" ", 1)[1])) for line in text.splitlines()
               if line.startswith("gatehouse_requests_total{") and 'status="200"' in line
               and any(f'model="{model}"' in line for model in MODELS))


def test_a_revoked_key_is_refused_at_once_by_every_web_process(stack, django_db_blocker, settings):
    """The change is announced on the cluster (a counter on one shard); both processes, whose key caches
    would otherwise keep it for 600 s, refuse it on their next request."""
    from apiaccess import lifecycle
    from apiaccess.models import ApiKey

    for web in (0, 1):
        assert stack.chat(MODELS[0], user="ben", web=web, max_tokens=1).status_code == 200
    settings.REDIS_URL, settings.REDIS_CLUSTER = stack.redis.url, True  # announce where the webs listen
    with django_db_blocker.unblock():
        key = ApiKey.objects.get(user__username=f"ben-{stack.redis.port}", revoked_at__isnull=True)
        assert lifecycle.revoke_key(key, actor=key.user, via="portal")
    for web in (0, 1):
        eventually(lambda web=web: stack.chat(MODELS[0], user="ben", web=web, max_tokens=1).status_code == 401,
                   what=f"web process {web} refusing the revoked key", timeout=5)
    assert stack.chat(MODELS[0], user="ann", max_tokens=1).status_code == 200  # others' keys still work


def test_a_script_never_touches_two_slots(stack):
    """A Redis Cluster refuses a script whose keys hash to different slots: a burst through both web
    processes to every model would fail with CROSSSLOT if one did. None did, and nothing is left queued."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(24) as pool:
        codes = list(pool.map(lambda n: stack.chat(MODELS[n % len(MODELS)], user="ann", web=n % 2,
                                                   max_tokens=2).status_code, range(48)))
    assert codes == [200] * 48
    eventually(lambda: all(stack.waiting(model) == 0 and stack.running(model) == 0 for model in MODELS),
               what="every queue empty")
    # Six models on a server that holds three: Gatehouse swapped them itself, Ollama never chose a victim.
    stats = stack.sims["gpu"].stats()["models"]
    assert sum(stats[model]["evictions"] for model in MODELS) == 0
    with pytest.raises(redis.ResponseError, match="same slot"):  # CROSSSLOT: what a cross-slot call gets
        stack.kv.execute_command("MSET", keys.service(MODELS[0]) + ":x", "1", keys.service(MODELS[1]) + ":x", "1",
                                 target_nodes=stack.kv.get_node_from_key(keys.service(MODELS[0])))


def test_a_burst_past_the_queue_gets_503s_with_retry_after_and_the_node_never_runs_more(stack):
    """The bound on a cluster: 2 running and 2 waiting are admitted, through either web process; the
    rest get queue_full at once. (Replies last 3 s, so the whole burst meets a full queue.)"""
    from concurrent.futures import ThreadPoolExecutor

    sim = stack.sims["slow"]
    assert stack.chat(TIGHT, max_tokens=1).status_code == 200  # loaded first
    sim.reset()
    start = threading.Barrier(10)

    def one(n: int) -> httpx.Response:
        start.wait()
        return stack.chat(TIGHT, web=n % 2)

    with ThreadPoolExecutor(10) as pool:
        responses = list(pool.map(one, range(10)))
    assert sorted(r.status_code for r in responses) == [200] * 4 + [503] * 6
    for refused in (r for r in responses if r.status_code == 503):
        assert refused.json()["error"]["code"] == "queue_full"
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert sim.model_stats(TIGHT)["max_in_flight"] == 2
