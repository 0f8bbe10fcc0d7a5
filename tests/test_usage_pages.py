"""The usage pages: each person's own figures (chart, per model, per key, CSV) and nobody else's; the
staff overview (top users, per model, rejections by reason); and the roll-up that keeps them right
after old records become daily rows."""

from __future__ import annotations

import csv
import datetime as dt
import io
import itertools

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from apiaccess.models import ApiKey
from usage import rollup
from usage.models import DailyUsage, UsageRecord

pytestmark = pytest.mark.django_db

_ids = itertools.count()


@pytest.fixture
def people():
    make = get_user_model().objects.create_user
    dora, eve = make("dora", password="pw"), make("eve", password="pw")
    ops = make("ops", password="pw", is_staff=True)
    return {"dora": dora, "eve": eve, "ops": ops}


def record(user, key, *, model="chat:latest", days_ago=0, prompt=10, completion=20, reason="ok", status=200):
    return UsageRecord.objects.create(
        stream_id=f"{next(_ids)}-0", at=timezone.now() - dt.timedelta(days=days_ago), user=user, key=key,
        model=model, node="http://gpu1", status=status, reason=reason, prompt_tokens=prompt,
        completion_tokens=completion, queue_wait_ms=5, ttft_ms=50, duration_ms=400, gpu_seconds=0.25)


def client_of(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def history(people):
    # The staff pages count every record in the database, and other modules of this worker's session may
    # have left theirs: start from these alone (the test's transaction is rolled back afterwards).
    UsageRecord.objects.all().delete()
    DailyUsage.objects.all().delete()
    laptop, _ = ApiKey.issue(people["dora"], name="laptop")
    ci, _ = ApiKey.issue(people["dora"], name="ci")
    evekey, _ = ApiKey.issue(people["eve"], name="eve's")
    record(people["dora"], laptop)
    record(people["dora"], laptop, days_ago=3, model="code:latest", prompt=100, completion=0)
    record(people["dora"], ci, days_ago=10)
    record(people["dora"], ci, days_ago=45)  # outside the window
    record(people["dora"], laptop, reason="rate_limited", status=429, prompt=0, completion=0)
    record(people["eve"], evekey, prompt=1000, completion=1000)
    record(people["eve"], evekey, reason="queue_full", status=503, prompt=0, completion=0)
    return {"laptop": laptop, "ci": ci}


def test_the_usage_page_needs_a_signed_in_person(db):
    assert Client().get("/usage/")["Location"] == "/accounts/login/?next=/usage/"
    assert Client().get("/usage/usage.csv").status_code == 302


def test_an_empty_usage_page_says_so_under_every_heading(people):
    page = client_of(people["dora"]).get("/usage/").content.decode()
    per_model, per_key = page.index("<h2>Per model</h2>"), page.index("<h2>Per key</h2>")
    assert "No requests in the last 30 days." in page[per_model:per_key]
    assert 'id="per-key-empty"' in page[per_key:] and "None of your keys was used" in page[per_key:]


def test_a_person_sees_their_own_last_30_days_only(people, history):
    page = client_of(people["dora"]).get("/usage/").content.decode()
    assert '<strong id="total-requests">3</strong>' in page
    assert '<strong id="total-tokens">160</strong>' in page  # 30 + 100 + 30; not eve's, not 45 days ago
    assert page.count('<svg class="chart"') == 2
    assert "chat:latest" in page and "code:latest" in page
    assert "laptop" in page and "ci" in page and "eve&#x27;s" not in page
    assert "Rate limited" in page


def test_the_csv_has_a_line_per_day_model_key_and_outcome(people, history):
    response = client_of(people["dora"]).get("/usage/usage.csv")
    assert response["Content-Type"].startswith("text/csv")
    lines = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert len(lines) == 4
    assert sum(int(line["total_tokens"]) for line in lines) == 160
    assert {line["key"] for line in lines} == {"laptop", "ci"}
    assert sorted(line["outcome"] for line in lines) == ["ok", "ok", "ok", "rate_limited"]


def test_staff_see_top_users_models_and_rejections_by_reason(people, history):
    assert Client().get("/usage/all/")["Location"] == "/accounts/login/?next=/usage/all/"  # the portal's sign-in
    assert client_of(people["dora"]).get("/usage/all/").status_code == 403  # signed in, not staff
    page = client_of(people["ops"]).get("/usage/all/").content.decode()
    assert '<strong id="total-requests">4</strong>' in page
    assert page.index(">eve<") < page.index(">dora<")  # eve used more tokens
    rejections = page[page.index('id="rejections"'):]
    assert "Rate limited</th><td data-label=\"Requests\">1" in rejections
    assert "Queue full</th><td data-label=\"Requests\">1" in rejections
    assert "Quota exceeded</th><td data-label=\"Requests\">0" in rejections


def test_rolling_up_old_records_keeps_the_figures(people, history, settings, redis_server):
    settings.USAGE_RAW_RETENTION_DAYS = 2
    before = client_of(people["dora"]).get("/usage/usage.csv").content.decode()
    rolled, _ = rollup.roll_up()
    assert rolled == 3  # 3 and 10 days ago for dora, 45 days ago
    assert UsageRecord.objects.filter(user=people["dora"]).count() == 2
    assert DailyUsage.objects.filter(user=people["dora"]).count() == 3
    after = client_of(people["dora"]).get("/usage/usage.csv").content.decode()
    assert after == before
    assert rollup.roll_up() == (0, 0)  # nothing twice


def test_daily_rows_are_pruned_after_their_retention(people, history, settings, redis_server):
    settings.USAGE_RAW_RETENTION_DAYS = 2
    settings.USAGE_ROLLUP_RETENTION_DAYS = 30
    _, pruned = rollup.roll_up()
    assert pruned == 1  # the day 45 days ago
    assert not DailyUsage.objects.filter(day__lt=timezone.now().date() - dt.timedelta(days=30)).exists()
