"""The live dashboard's websocket with a channels communicator against the suite's real Redis: staff
only, a snapshot at once and then one every second, and refusals of the last minute per model."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest
from channels.testing import WebsocketCommunicator

from common.apierrors import ApiError
from portal.dashboard import DashboardConsumer
from tests.conftest import CHAT_MODEL


@pytest.fixture
def layer(redis_server, settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer",
                                           "CONFIG": {"hosts": [redis_server.url], "prefix": "gh:test-channels:"}}}


@pytest.fixture
def people(world, django_db_blocker):
    from django.contrib.auth import get_user_model

    with django_db_blocker.unblock():
        staff, _ = get_user_model().objects.get_or_create(username="dash-staff", defaults={"is_staff": True})
        yield {"staff": staff, "alice": world.users["alice"]}


async def connect(user) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(DashboardConsumer.as_asgi(), "/ws/dashboard/")
    communicator.scope["user"] = user
    return communicator


@dataclass
class Caller:
    user_id: int
    key_id: int = 0
    is_batch: bool = False


@pytest.mark.asyncio
async def test_only_staff_may_watch(layer, people, django_db_blocker):
    with django_db_blocker.unblock():
        communicator = await connect(people["alice"])
        connected, code = await communicator.connect()
        assert not connected and code == 4403


@pytest.mark.asyncio
async def test_staff_get_a_snapshot_at_once_then_every_second(layer, people, django_db_blocker):
    from inference.accounting.metering import RequestMeter
    from inference.accounting.usage import UsageLog

    with django_db_blocker.unblock():
        communicator = await connect(people["staff"])
        connected, _ = await communicator.connect()
        assert connected
        try:
            first = await communicator.receive_json_from(timeout=5)
            assert first["type"] == "snapshot"
            model = next(m for m in first["models"] if m["model"] == CHAT_MODEL)
            assert {"queue_depth", "running", "rejected_503", "rejected_429"} <= set(model)
            assert first["nodes"] and "loaded" in first["nodes"][0]
            # A request refused by a rate limit shows in the next snapshots.
            before = model["rejected_429"]
            UsageLog(Caller(people["alice"].pk), CHAT_MODEL, streamed=False, meter=RequestMeter([1])).finish(
                ApiError.rate_limited("limit", retry_after=1))
            seen = [first["at"]]
            async with asyncio.timeout(10):
                while True:
                    snapshot = await communicator.receive_json_from(timeout=5)
                    seen.append(snapshot["at"])
                    model = next(m for m in snapshot["models"] if m["model"] == CHAT_MODEL)
                    if model["rejected_429"] == before + 1 and len(seen) >= 3:
                        break
            assert seen == sorted(seen) and len(set(seen)) == len(seen)
        finally:
            await communicator.disconnect()
