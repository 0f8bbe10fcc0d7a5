"""The one loader of Lua scripts: every script is a file in common/store/lua/, known by its name.

    await scripts.get(redis_client(), "admit")(keys=[...], args=[...])
    scripts.get(sync_client(), "forecast")(keys=[...], args=[...])

A script that starts with lines `-- include: <other>.lua` gets those files put before it, in order
(the scheduler scripts include common.lua, which parses their shared policy arguments and holds the
helpers they share). Each script is registered once per client (sync or async): its SHA1 is computed
once and it is sent to Redis only when Redis does not know it yet (EVALSHA, then SCRIPT LOAD on
NOSCRIPT), so a Redis that restarted gets it again on the next call.
"""

from __future__ import annotations

import functools
import re
import weakref
from pathlib import Path

import redis.asyncio
import redis.asyncio.cluster
from redis.commands.core import AsyncScript, Script

LUA_DIR = Path(__file__).with_name("lua")
_INCLUDE = re.compile(r"--\s*include:\s*([\w-]+)\.lua\s*")

# client -> name -> script. The scripts hold their client through a weak proxy, so a client (and its
# pool) that nothing else uses any more, such as the one of an event loop that closed, is not kept.
_registered: weakref.WeakKeyDictionary[object, dict[str, Script | AsyncScript]] = weakref.WeakKeyDictionary()
# The asyncio clients: one Redis (or its pipeline), a Redis Cluster, a cluster's pipeline.
_ASYNC = (redis.asyncio.Redis, redis.asyncio.cluster.RedisCluster, redis.asyncio.cluster.ClusterPipeline)


def names() -> list[str]:
    return sorted(path.stem for path in LUA_DIR.glob("*.lua"))


def includes(name: str) -> list[str]:
    """The scripts `name` declares it needs, from its leading `-- include:` lines."""
    found = []
    for line in (LUA_DIR / f"{name}.lua").read_text().splitlines():
        match = _INCLUDE.fullmatch(line)
        if match is None:
            break
        found.append(match[1])
    return found


@functools.cache
def source(name: str) -> str:
    """The full source of a script: its includes, then the script itself."""
    path = LUA_DIR / f"{name}.lua"
    if not path.is_file():
        raise LookupError(f"no Lua script named {name!r} in {LUA_DIR}")
    return "\n".join([*(source(other) for other in includes(name)), path.read_text()])


def get(client, name: str) -> Script | AsyncScript:
    """The script `name` registered on `client` (a sync or asyncio Redis client, or a pipeline of one).
    Call it with keys= and args=; await the call for an asyncio client."""
    per_client = _registered.get(client)
    if per_client is None:
        per_client = _registered[client] = {}
    script = per_client.get(name)
    if script is None:
        kind = AsyncScript if isinstance(client, _ASYNC) else Script
        script = per_client[name] = kind(weakref.proxy(client), source(name))
    return script
