"""The live dashboard in a real browser against two web processes: staff watch queue depth, running
requests and 429s change without reloading the page, whichever process the requests go to.
Screenshot in test-artifacts/screenshots/dashboard-desktop.png."""

from __future__ import annotations

import threading

import pytest

from tests.support.browser import DESKTOP, screenshot
from tests.support.processes import eventually
from tests.support.stack import Stack, sim_config
from tests.test_portal_browser import accessible

ONE_SLOT = "dash-one:latest"  # one request at a time, 3 s each


@pytest.fixture(scope="module")
def stack(django_db_setup, django_db_blocker, static_root):
    from django.contrib.auth import get_user_model

    from apiaccess.models import Account

    with django_db_blocker.unblock():
        world = Stack({"gpu": sim_config([ONE_SLOT], tokens_per_second=10, reply_tokens=30)}, webs=2,
                      users=("ann", "lim"), models={ONE_SLOT: {"concurrency": 1, "max_queue": 8}},
                      env={"STATIC_ROOT": static_root})
        get_user_model().objects.create_user(f"watcher-{world.redis.port}", password="watch-pw-1", is_staff=True)
        Account.objects.create(user=get_user_model().objects.get(username=f"lim-{world.redis.port}"),
                               requests_per_minute=1)
    yield world
    with django_db_blocker.unblock():
        world.stop()


def cell(page, field: str) -> str:
    return page.inner_text(f'#dashboard-models tr[data-key="{ONE_SLOT}"] [data-field="{field}"]')


def test_staff_watch_the_queue_live(stack, browser):
    assert stack.chat(ONE_SLOT, max_tokens=1).status_code == 200  # loaded
    page = browser.new_context(viewport=DESKTOP).new_page()
    page.goto(stack.webs[0].url + "/accounts/login/")
    page.get_by_label("Username").fill(f"watcher-{stack.redis.port}")
    page.get_by_label("Password").fill("watch-pw-1")
    page.get_by_role("button", name="Sign in").click()
    page.goto(stack.webs[0].url + "/dashboard/")
    page.wait_for_selector(f'#dashboard-models tr[data-key="{ONE_SLOT}"]')
    accessible(page)
    first = page.get_attribute("body", "data-snapshot-at")
    eventually(lambda: page.get_attribute("body", "data-snapshot-at") != first, what="a second snapshot")

    threads = [threading.Thread(target=stack.chat, args=(ONE_SLOT,), kwargs={"web": 1}) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        eventually(lambda: cell(page, "queue_depth") == "2" and cell(page, "running") == "1",
                   what="two waiting and one running on the page", timeout=15)
        assert stack.chat(ONE_SLOT, user="lim", web=1, max_tokens=1).status_code == 200
        assert stack.chat(ONE_SLOT, user="lim", web=1, max_tokens=1).status_code == 429
        eventually(lambda: cell(page, "rejected_429") == "1", what="the 429 on the page", timeout=10)
        assert ONE_SLOT in page.inner_text("#dashboard-nodes")  # loaded, with its memory
        assert cell(page, "loading_on") == "no"  # loaded: no load in progress
        screenshot(page, "dashboard-desktop")
    finally:
        for thread in threads:
            thread.join()
    eventually(lambda: cell(page, "queue_depth") == "0" and cell(page, "running") == "0",
               what="the queue drained on the page", timeout=30)
