"""Which Redis this process is talking to: its run id and when it started, to notice a restart.

Redis run without persistence forgets every slot lease when it restarts. The calls that were running
still run, so the concurrency bound must count them again before anything new is granted: the web
processes re-assert their running calls (inference/scheduler/slots.py) as soon as they see a new run id, and the
scheduler scripts grant nothing until REDIS_RESTART_GRACE_SECONDS after Redis started (the grace
period lock managers give their clients after a restart). A process started after the restart holds
grants the same way, since it reads Redis's uptime, not its own memory. And since a process may call a
script before it has noticed the restart, the scripts also hold grants for the grace period after a
model's state was born (a key a restart without persistence loses): see common/store/lua/common.lua.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from django.conf import settings
from redis.asyncio.cluster import RedisCluster


@dataclass(frozen=True)
class Epoch:
    run_id: str
    started_ms: int  # when this Redis started, by our clock; its uptime is whole seconds, so at the latest


_current: Epoch | None = None


async def observe(client) -> bool:
    """Read the Redis server's run id and uptime; True when it is a different Redis than last seen
    (a restart), False the first time and while it stays the same."""
    global _current
    servers = await _servers(client)
    # On a cluster, any shard that restarted lost the leases of its models: the run ids of all of them
    # make the epoch, and the youngest shard says when grants may start again.
    uptime = min(int(info["uptime_in_seconds"]) for info in servers)
    seen = Epoch(",".join(sorted(info["run_id"] for info in servers)), int(time.time() * 1000) - uptime * 1000)
    restarted = _current is not None and _current.run_id != seen.run_id
    if _current is None or restarted:
        _current = seen
    return restarted


async def _servers(client) -> list[dict]:
    if isinstance(client, RedisCluster):
        replies = await client.info("server", target_nodes=RedisCluster.PRIMARIES)
        return list(replies.values()) if "run_id" not in replies else [replies]
    return [await client.info("server")]


def grants_hold_until_ms() -> int:
    """Before this moment (ms) the scripts grant no slot: Redis is too new for every web process to have
    re-asserted its running calls. 0 when Redis has not been observed yet (nothing to wait for)."""
    if _current is None:
        return 0
    return _current.started_ms + int(settings.REDIS_RESTART_GRACE_SECONDS * 1000)


def grace_ms() -> int:
    return int(settings.REDIS_RESTART_GRACE_SECONDS * 1000)
