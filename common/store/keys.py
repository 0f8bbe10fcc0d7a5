"""The name of every Redis key and channel Gatehouse uses (docs/architecture.md describes what each holds).

Python code names a key only through here. Lua scripts get their keys through KEYS, built here, and
derive the keys of one model from its prefix (`model_prefix`; see lua/common.lua); the two channel
names a script publishes to are spelled in the script too (tests/test_redis_access.py checks they
agree).

Keys that one script touches together share a hash tag (`{...}`), so each script runs in one Redis
Cluster slot: `{<model>}` for a model's scheduler state, `{<user id>}` for a person's limits, and
`{usage:<shard>}` for one of the usage streams and its /metrics counters.
"""

from __future__ import annotations

# -- The swap actor and the nodes ------------------------------------------------------------------
LEADER = "gh:actor:leader"  # STRING the web process whose swap actor acts (SET NX PX, renewed)
NODES_DOWN = "gh:nodes:down"  # HASH node url -> why it was taken out
NODES_PS = "gh:nodes:ps"  # HASH node url -> JSON {"at": unix s, "models": [/api/ps entries]}
MODEL_SIZES = "gh:models:size"  # HASH ollama name -> measured size_vram in bytes

# -- Channels --------------------------------------------------------------------------------------
NODES_CHANNEL = "gh:nodes"  # "down <url>" / "up <url>"
ACTOR_WAKE_CHANNEL = "gh:actor:wake"  # a model has waiting requests (lua/admit.lua too)
LOAD_FAILED_CHANNEL = "gh:models:load-failed"  # JSON {"model", "status", "error"} from the swap actor


def grant_channel(model: str, owner: str) -> str:
    """Where the scheduler scripts tell a web process that one of its tickets for `model` got a slot:
    "<ticket> <node>", published with SPUBLISH on this sharded channel in the model's own slot (so on a
    Redis Cluster it goes to the model's shard only). lua/common.lua spells it too."""
    return model_prefix(model) + "g:" + owner


# -- One model's scheduler state (the keys under the prefix are listed in lua/common.lua) ----------
def model_prefix(model: str) -> str:
    """KEYS[1] of every scheduler script: the prefix, and hash tag, of every key of one model."""
    # Braces would end the hash tag early; model names never contain them, but be safe.
    return "gh:{" + model.replace("{", "(").replace("}", ")") + "}:"


def queue(model: str) -> str:
    return model_prefix(model) + "q"  # ZSET waiting interactive tickets, by start-time fair queuing


def batch_queue(model: str) -> str:
    return model_prefix(model) + "qb"  # ZSET waiting batch tickets


def enqueued(model: str) -> str:
    return model_prefix(model) + "enq"  # ZSET waiting tickets -> enqueue time (ms)


def lease(model: str) -> str:
    return model_prefix(model) + "lease"  # ZSET every live ticket -> lease expiry (ms)


def run(model: str, node: str) -> str:
    return model_prefix(model) + "run:" + node  # ZSET tickets running on a node -> grant time (ms)


def placement(model: str) -> str:
    return model_prefix(model) + "place"  # HASH node -> ready | loading | draining | unloading


def service(model: str) -> str:
    return model_prefix(model) + "svc"  # HASH avg_ms, done, load_ms: measured call and load times


def born(model: str) -> str:
    return model_prefix(model) + "born"  # STRING when the model's state was first written (ms)


# -- Rate limits: everything of one person under the tag {<user id>} -------------------------------

def person_prefix(user_id: int) -> str:
    return "gh:u{" + str(user_id) + "}:"


def api_key_prefix(user_id: int, key_id: int) -> str:
    return f"{person_prefix(user_id)}k{key_id}:"


def limit_keys(user_id: int, key_id: int, day: str, month: str) -> list[str]:
    """KEYS of lua/limit_admit.lua: the API key's five state keys, then the person's (rpm, tpm,
    concurrent, and the counters of the UTC day YYYYMMDD and month YYYYMM)."""
    return [f"{scope}{part}" for scope in (api_key_prefix(user_id, key_id), person_prefix(user_id))
            for part in ("rpm", "tpm", "conc", f"day:{day}", f"month:{month}")]


def limit_settled(user_id: int, request_id: str) -> str:
    """The marker that makes a request's settlement (lua/limit_settle.lua) land once."""
    return f"{person_prefix(user_id)}settled:{request_id}"


# -- Usage records and /metrics: spread over USAGE_SHARDS tags {usage:0} ... {usage:7} ----------------
# One tag would put every finished request's write on one Redis Cluster shard. A record goes to the
# shard its id picks, with its /metrics counters (one script writes both); readers add the shards up.
# Changing the number strands what the dropped shards hold: drain them first.
USAGE_SHARDS = 8
USAGE_DRAIN_GROUP = "usage-drain"  # the consumer group of every usage stream (usage/drain.py)
USAGE_ROLLUP_LOCK = "gh:usage:rollup-lock"  # STRING held while a worker rolls records up
USAGE_STREAM_BEFORE_SHARDS = "gh:{usage}:stream"  # STREAM written before the shards; drained until empty


def usage_shard(record_id: str) -> int:
    """The shard of a record, from its id (hex digits: a uuid4's)."""
    return int(record_id[-8:], 16) % USAGE_SHARDS


def _usage(shard: int) -> str:
    return "gh:{usage:" + str(shard) + "}:"


def usage_stream(shard: int) -> str:
    return _usage(shard) + "stream"  # STREAM one entry per finished request


def usage_streams() -> list[str]:
    return [usage_stream(shard) for shard in range(USAGE_SHARDS)]


def usage_written(shard: int, record_id: str) -> str:
    """The marker that makes a usage record's write (lua/usage_write.lua) land once."""
    return _usage(shard) + "w:" + record_id


def metrics_requests(shard: int) -> str:
    return _usage(shard) + "m:requests"  # HASH "<model>\t<status>\t<reason>" -> count


def metrics_tokens(shard: int) -> str:
    return _usage(shard) + "m:tokens"  # HASH "<model>\t<prompt|completion>" -> count


def metrics_swaps(shard: int) -> str:
    return _usage(shard) + "m:swaps"  # HASH "<load|unload>\t<model>\t<node>" -> count


def metrics_histogram(shard: int, name: str) -> str:
    return _usage(shard) + "m:h:" + name  # HASH "<model>\t<bucket|sum|count>" -> value


def metrics_recent(shard: int, bucket: int) -> str:
    """Refusals in one 10-second bucket (unix time // 10): HASH "<model>\t<status>" -> count."""
    return _usage(shard) + "m:recent:" + str(bucket)


# -- API keys --------------------------------------------------------------------------------------
API_KEY_GENERATION = "gh:apikeys:generation"  # STRING moved by every change to any key
API_KEY_LAST_USED = "gh:apikeys:last-used"  # ZSET key id -> unix time of its last use

# -- Locks and leases of the portal and the workers ------------------------------------------------
DASHBOARD_BROADCASTER = "gh:dashboard:broadcaster"  # STRING the web process sending dashboard snapshots
BATCH_FEEDER = "gh:batches:feeder"  # STRING the Celery worker feeding batch lines (batches/feeder.py)
CATALOGUE_SYNC_LOCK = "gh:catalogue-sync-lock"  # a redis-py Lock: one catalogue sync at a time

# The prefix of the channel layer's keys and channels (channels_redis; portal/settings.py).
CHANNEL_LAYER_PREFIX = "gh:channels:"
