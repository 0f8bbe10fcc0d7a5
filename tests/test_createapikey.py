from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.utils import timezone

from apiaccess import keys
from apiaccess.models import ApiKey
from inference.models import Model

pytestmark = pytest.mark.django_db


@pytest.fixture
def dora():
    return get_user_model().objects.create_user("dora", password="pw")


def run(*args: str) -> str:
    out = StringIO()
    call_command("createapikey", *args, stdout=out)
    return out.getvalue()


def test_it_prints_only_the_new_key(dora):
    output = run("dora", "--name", "laptop")
    plain = output.strip()
    assert output == plain + "\n", "stdout must hold the key and nothing else"
    assert keys.lookup_of(plain) is not None
    stored = ApiKey.objects.get(user=dora)
    assert stored.name == "laptop"
    assert keys.matches(plain, stored.digest)
    assert plain not in (stored.digest, stored.lookup), "the plain key is never stored"
    assert stored.expires_at is None and stored.allowed_models.count() == 0


def test_it_limits_the_key_to_models(dora):
    a = Model.objects.create(public_id="a", ollama_name="a:latest")
    Model.objects.create(public_id="b", ollama_name="b:latest")
    plain = run("dora", "--models", "a").strip()
    stored = ApiKey.objects.get(lookup=keys.lookup_of(plain))
    assert list(stored.allowed_models.all()) == [a]


def test_it_sets_an_expiry(dora):
    plain = run("dora", "--expires-in-days", "7").strip()
    stored = ApiKey.objects.get(lookup=keys.lookup_of(plain))
    days = (stored.expires_at - timezone.now()).total_seconds() / 86400
    assert 6.99 < days <= 7


def test_it_rejects_an_unknown_user():
    before = ApiKey.objects.count()  # the live test world's keys may share the database
    with pytest.raises(CommandError, match="No user named 'nobody'"):
        run("nobody")
    assert ApiKey.objects.count() == before


def test_it_rejects_unknown_models_without_creating_a_key(dora):
    with pytest.raises(CommandError, match="Unknown model"):
        run("dora", "--models", "missing")
    assert not ApiKey.objects.filter(user=dora).exists()


def test_it_rejects_a_non_positive_expiry(dora):
    with pytest.raises(CommandError, match="positive"):
        run("dora", "--expires-in-days", "0")


def test_it_makes_keys_that_differ_each_time(dora):
    assert run("dora") != run("dora")
