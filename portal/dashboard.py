"""The live dashboard for staff: a snapshot of the scheduler every second, over a websocket.

Each web process that has dashboard viewers tries to hold a short Redis lease; the holder builds one
snapshot a second and sends it to the `dashboard` group on the Redis channel layer, which reaches
the viewers of every web process. If the holder loses its last viewer or dies, another process with
viewers takes over within the lease time. So one snapshot a second is built for the whole site,
however many people watch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid

from asgiref.sync import sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import get_channel_layer

from common.store import keys, scripts
from common.store.client import REDIS_ERRORS, redis_client, sync_client
from inference.accounting import telemetry
from inference.status import scheduler_status

log = logging.getLogger(__name__)

GROUP = "dashboard"
LEASE_MS = 3000
INTERVAL = 1.0
_OWNER = uuid.uuid4().hex


def snapshot() -> dict:
    """Per node: state and loaded models with their memory; per model: queue, running, refusals."""
    status = scheduler_status()
    refusals: dict[tuple[str, str], int] = {}
    with sync_client().pipeline(transaction=False) as pipe:
        for key in telemetry.recent_keys(time.time()):
            pipe.hgetall(key)
        for bucket in pipe.execute():
            for field, count in bucket.items():
                model, _, code = field.partition(telemetry.SEP)
                refusals[(model, code)] = refusals.get((model, code), 0) + int(count)
    models = []
    for public_id, model in status["models"].items():
        models.append({
            "model": public_id, "queue_depth": model["queue_depth"], "running": model["in_flight"],
            "loading_on": model["loading_on"],
            "max_queue": model["max_queue"],
            "rejected_503": refusals.get((public_id, "503"), 0), "rejected_429": refusals.get((public_id, "429"), 0),
        })
    nodes = [{"node": url, "name": node["name"], "state": node["state"], "memory_used_bytes": node["memory_used_bytes"],
              "memory_budget_bytes": node["memory_budget_bytes"],
              "loaded": [{"model": name, "bytes": size} for name, size in sorted(node["loaded"].items())]}
             for url, node in status["nodes"].items()]
    return {"type": "snapshot", "at": time.time(), "models": models, "nodes": nodes}


class Broadcaster:
    """This process's side: runs while it has viewers; sends only while it holds the lease."""

    def __init__(self) -> None:
        self.viewers = 0
        self.task: asyncio.Task | None = None

    def joined(self) -> None:
        self.viewers += 1
        loop = asyncio.get_running_loop()
        if self.task is None or self.task.done() or self.task.get_loop() is not loop:
            self.task = loop.create_task(self._run())

    def left(self) -> None:
        self.viewers = max(0, self.viewers - 1)

    async def _run(self) -> None:
        layer = get_channel_layer()
        renew = scripts.get(redis_client(), "lease_renew")
        while self.viewers:
            started = time.monotonic()
            try:
                if await renew(keys=[keys.DASHBOARD_BROADCASTER], args=[_OWNER, LEASE_MS]):
                    await layer.group_send(GROUP, {"type": "dashboard.snapshot", "data": await sync_to_async(snapshot)()})
            except REDIS_ERRORS as exc:
                log.warning("dashboard snapshot failed: %s", exc)
            except Exception:  # noqa: BLE001 - the loop must survive anything; the next second tries again
                log.exception("dashboard snapshot failed")
            await asyncio.sleep(max(0.0, INTERVAL - (time.monotonic() - started)))
        with contextlib.suppress(*REDIS_ERRORS):  # let a process that still has viewers take over at once
            await scripts.get(redis_client(), "lease_release")(keys=[keys.DASHBOARD_BROADCASTER], args=[_OWNER])


broadcaster = Broadcaster()


class DashboardConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated or not user.is_staff:
            await self.close(code=4403)
            return
        await self.channel_layer.group_add(GROUP, self.channel_name)
        await self.accept()
        await self.send_json(await sync_to_async(snapshot)())  # at once, not in up to a second
        broadcaster.joined()
        self.joined = True

    async def disconnect(self, code):
        if getattr(self, "joined", False):
            broadcaster.left()
            await self.channel_layer.group_discard(GROUP, self.channel_name)

    async def dashboard_snapshot(self, event):
        await self.send_json(event["data"])
