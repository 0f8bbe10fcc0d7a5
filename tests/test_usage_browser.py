"""The usage page in a real browser (Debian's headless Chromium) against the live server: the charts
render, the tables and the CSV download hold the person's figures, axe-core finds nothing serious,
and it fits a phone. Screenshots go to test-artifacts/screenshots/."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
from django.utils import timezone

from tests.support.browser import DESKTOP, PHONE, screenshot
from tests.test_portal_browser import accessible, sign_in


@pytest.fixture
def charlies_usage(world, django_db_blocker, monkeypatch):
    from apiaccess.models import ApiKey
    from usage.models import UsageRecord

    # Playwright's sync API runs an event loop in this thread, which Django takes for async code; these
    # few queries are plain setup, not an async view.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with django_db_blocker.unblock():
        charlie = world.users["charlie"]
        key, _ = ApiKey.issue(charlie, name="notebook")
        rows = [UsageRecord(stream_id=f"browser-{i}", at=timezone.now() - dt.timedelta(days=i % 15),
                            user=charlie, key=key, model=("llama3.2:3b", "qwen2.5-coder:1.5b")[i % 2], status=200,
                            reason="ok", prompt_tokens=40 + i, completion_tokens=100 + 7 * i, gpu_seconds=0.5)
                for i in range(30)]
        UsageRecord.objects.bulk_create(rows)
    yield sum(r.prompt_tokens + r.completion_tokens for r in rows)
    with django_db_blocker.unblock():
        UsageRecord.objects.filter(stream_id__startswith="browser-").delete()
        key.delete()


def test_a_person_reads_their_usage_chart_and_downloads_it(browser, gatehouse, world, charlies_usage):
    context = browser.new_context(viewport=DESKTOP, accept_downloads=True)
    page = context.new_page()
    sign_in(page, gatehouse.url, "charlie", "pw-charlie")
    page.get_by_role("link", name="Usage").click()
    page.wait_for_selector("h1:text('Usage')")
    accessible(page)
    assert page.inner_text("#total-tokens") == f"{charlies_usage:,}"
    assert page.get_by_role("img", name="Tokens per day, by model").is_visible()
    # One bar segment per day and model: 15 days, each with one of the two models, 30 in all.
    assert page.locator("svg.chart").first.locator("rect").count() == 30
    assert "notebook" in page.inner_text("#per-key")
    screenshot(page, "usage-desktop")
    with page.expect_download() as info:
        page.get_by_role("link", name="Download CSV").click()
    text = open(info.value.path(), encoding="utf-8").read()
    assert text.startswith("day,model,key,outcome")
    assert str(charlies_usage) == str(sum(int(line.split(",")[7]) for line in text.splitlines()[1:]))

    phone = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True, storage_state=context.storage_state())
    small = phone.new_page()
    small.goto(gatehouse.url + "/usage/")
    accessible(small)
    overflow = small.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    wide = small.evaluate("""[...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right >
        document.documentElement.clientWidth + 1).map(e => e.tagName + '.' + e.className + '#' + e.id).slice(0, 8)""")
    assert overflow <= 0, f"/usage/ scrolls sideways on a phone by {overflow}px: {wide}"
    screenshot(small, "usage-phone")
    phone.close()
    context.close()


_LABELS = """[...document.querySelectorAll('.chart-box')].map(box => ({
  plot: box.querySelector('svg.chart').getBoundingClientRect().toJSON(),
  labels: [...box.querySelectorAll('.chart-x span, .chart-y span:not(.chart-y-width)')].map(e => {
    const range = document.createRange();
    range.selectNodeContents(e);
    return {axis: e.parentElement.className, text: e.textContent, box: range.getBoundingClientRect().toJSON(),
            font: parseFloat(getComputedStyle(e).fontSize)};
  }),
}))"""


def _overlap(a: dict, b: dict) -> bool:
    return a["left"] < b["right"] and b["left"] < a["right"] and a["top"] < b["bottom"] and b["top"] < a["bottom"]


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_the_charts_axis_labels_are_readable_at_any_width(browser, gatehouse, world, charlies_usage, viewport):
    context = browser.new_context(viewport=viewport, is_mobile=viewport is PHONE, has_touch=viewport is PHONE)
    page = context.new_page()
    sign_in(page, gatehouse.url, "charlie", "pw-charlie")
    page.goto(gatehouse.url + "/usage/")
    charts = page.evaluate(_LABELS)
    assert len(charts) == 2
    width = page.evaluate("document.documentElement.clientWidth")
    for chart in charts:
        shown = [label for label in chart["labels"] if label["box"]["width"]]
        x_labels = [label for label in shown if label["axis"] == "chart-x"]
        y_labels = [label for label in shown if label["axis"] == "chart-y"]
        assert len(x_labels) == (3 if viewport is PHONE else 6), x_labels  # every 10 days on a phone, else 5
        assert [label["text"] for label in y_labels][0] == "0"
        for label in shown:
            # Measured as drawn: the text's own box, not a scaled-down SVG's.
            assert label["box"]["height"] >= 10 and label["font"] >= 10, label
            assert 0 <= label["box"]["left"] and label["box"]["right"] <= width, label
        for a, b in itertools.pairwise(x_labels):
            assert not _overlap(a["box"], b["box"]), (a, b)
        for label in y_labels:  # beside the plot, not over the bars
            assert label["box"]["right"] <= chart["plot"]["left"], label
    accessible(page)
    screenshot(page, f"usage-charts-{'phone' if viewport is PHONE else 'desktop'}")
    context.close()


def test_an_empty_usage_page_says_so_on_a_phone(browser, gatehouse, world, django_db_blocker, monkeypatch):
    from django.contrib.auth import get_user_model

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with django_db_blocker.unblock():
        if not get_user_model().objects.filter(username="nadia").exists():
            get_user_model().objects.create_user("nadia", password="pw-nadia")
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    page = context.new_page()
    sign_in(page, gatehouse.url, "nadia", "pw-nadia")
    page.goto(gatehouse.url + "/usage/")
    assert page.locator("#per-key-empty").is_visible()
    assert "None of your keys was used" in page.inner_text("#per-key-empty")
    accessible(page)
    screenshot(page, "usage-empty-phone")
    context.close()
