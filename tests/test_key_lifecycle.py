"""Creating and revoking keys: the audit trail, the limit, and the broadcast every web process listens to."""

from __future__ import annotations

import asyncio

import pytest
from django.contrib.auth import get_user_model

from apiaccess import lifecycle, revocation
from apiaccess.models import ApiKey, KeyEvent
from common.store import keys
from common.store.client import sync_client

# Not transaction=True: that flushes every table afterwards, the shared test world included. The
# broadcast waits for commit, so the tests run the captured on_commit callbacks themselves.
pytestmark = pytest.mark.django_db


@pytest.fixture
def dora(redis_server):
    return get_user_model().objects.create_user("dora", password="pw")


def generation() -> int:
    return int(sync_client().get(keys.API_KEY_GENERATION) or 0)


def test_it_writes_who_created_what_and_when(dora):
    from inference.models import Model

    model = Model.objects.create(public_id="m1", ollama_name="m1:latest")
    key, plain = lifecycle.create_key(dora, actor=dora, via=KeyEvent.Via.PORTAL, name="laptop",
                                      allowed_models=[model], source_ip="10.1.2.3")
    event = KeyEvent.objects.get(owner=dora)  # the suite's other modules leave events of their own
    assert (event.action, event.via, event.key, event.owner, event.actor) == ("created", "portal", key, dora, dora)
    assert event.source_ip == "10.1.2.3" and "m1" in event.detail and "never expires" in event.detail
    assert event.key_label == str(key) and plain not in event.key_label + event.detail


def test_it_revokes_once_and_broadcasts_the_change_after_commit(dora, django_capture_on_commit_callbacks):
    key, _ = lifecycle.create_key(dora, actor=dora, via=KeyEvent.Via.PORTAL)
    before = generation()
    with django_capture_on_commit_callbacks() as callbacks:
        assert lifecycle.revoke_key(key, actor=dora, via=KeyEvent.Via.PORTAL)
    assert generation() == before, "announced before the revocation is visible to other processes"
    for callback in callbacks:
        callback()
    assert generation() == before + 1
    assert not lifecycle.revoke_key(key, actor=dora, via=KeyEvent.Via.PORTAL)
    assert KeyEvent.objects.filter(owner=dora, action="revoked").count() == 1


def test_admin_edits_deletions_and_deactivations_are_broadcast_too(dora, django_capture_on_commit_callbacks):
    from inference.models import Model

    key, _ = lifecycle.create_key(dora, actor=dora, via=KeyEvent.Via.PORTAL)
    model = Model.objects.create(public_id="m2", ollama_name="m2:latest")
    changes = [
        lambda: key.save(),
        lambda: key.allowed_models.add(model),
        lambda: dora.save(),
        lambda: key.delete(),
    ]
    for change in changes:
        before = generation()
        with django_capture_on_commit_callbacks(execute=True):
            change()
        assert generation() > before
    with django_capture_on_commit_callbacks(execute=True):
        before = generation()
        dora.save(update_fields=["last_login"])  # signing in changes nothing about keys
    assert generation() == before
    assert KeyEvent.objects.get(owner=dora).key is None, "the trail outlives the key"


def test_the_limit_counts_only_active_keys(dora, settings):
    from datetime import timedelta

    from django.utils import timezone

    settings.MAX_API_KEYS_PER_USER = 2
    first, _ = lifecycle.create_key(dora, actor=dora, via="portal")
    lifecycle.create_key(dora, actor=dora, via="portal", expires_at=timezone.now() + timedelta(seconds=30))
    with pytest.raises(lifecycle.KeyLimitReached):
        lifecycle.create_key(dora, actor=dora, via="portal")
    lifecycle.revoke_key(first, actor=dora, via="portal")
    lifecycle.create_key(dora, actor=dora, via="portal")
    ApiKey.objects.filter(user=dora, revoked_at__isnull=True).update(expires_at=timezone.now())
    assert lifecycle.slots_left(dora) == 2
    lifecycle.create_key(dora, actor=None, via="command", enforce_limit=False)
    lifecycle.create_key(dora, actor=None, via="command", enforce_limit=False)
    lifecycle.create_key(dora, actor=None, via="command", enforce_limit=False)
    assert lifecycle.slots_left(dora) == 0


def test_web_processes_read_the_generation_at_most_once_per_interval(redis_server, settings):
    settings.API_KEY_REVOCATION_CHECK_SECONDS = 3600
    revocation.reset()

    async def read_twice_around_a_bump():
        first = await revocation.current()
        sync_client().incr(keys.API_KEY_GENERATION)
        return first, await revocation.current()

    first, second = asyncio.run(read_twice_around_a_bump())
    assert first == second, "a second read within the interval must come from memory"
    revocation.reset()
    assert asyncio.run(revocation.current()) == first + 1
    revocation.reset()


def test_without_redis_the_generation_is_unknown(settings):
    settings.REDIS_URL = "redis://127.0.0.1:9/0"  # nothing listens on the discard port
    revocation.reset()
    assert asyncio.run(revocation.current()) is None
    revocation.reset()


def test_the_trail_outlives_a_deleted_key(dora):
    key, _ = lifecycle.create_key(dora, actor=dora, via=KeyEvent.Via.PORTAL, name="short-lived")
    key.delete()
    event = KeyEvent.objects.get(owner=dora)
    assert event.key is None and "short-lived" in event.key_label
