"""The Batches page in a real browser (Debian's headless Chromium) against the live server: from the nav, a
running batch's progress bar and counts, which the page's script refreshes while it runs; a finished batch's
output file downloads with its bytes; Cancel turns a running batch to cancelling; axe-core finds nothing
serious; it fits a phone, the empty page's how-to included. Screenshots go to test-artifacts/screenshots/."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.support.browser import DESKTOP, PHONE, screenshot
from tests.test_batches_page import make_batch, stored_file
from tests.test_portal_browser import accessible, sign_in

OUTPUT = b"".join(b'{"id": "batch_req_%d", "custom_id": "request-%d", "response": {"status_code": 200}}\n' % (i, i)
                  for i in range(3))


@pytest.fixture
def batches(world, django_db_blocker, monkeypatch, settings):
    """Batches of a person of their own: one running (12 of 40 done), one finished with an output file."""
    from django.contrib.auth import get_user_model

    from batches import storage
    from batches.models import Batch, BatchFile
    from portal.storage_settings import batch_files_storage
    from tests.conftest import batch_files_dir

    # Playwright's sync API runs an event loop in this thread, which Django takes for async code; these
    # few queries are plain setup, not an async view.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    # Stored where the web process reads them (tests/conftest.py gives it the session's folder).
    settings.STORAGES = {**settings.STORAGES, storage.ALIAS: batch_files_storage(directory=batch_files_dir())}
    with django_db_blocker.unblock():
        person, _ = get_user_model().objects.get_or_create(username="batcher")
        person.set_password("pw-batcher")
        person.save()
        source = stored_file(person, b'{"custom_id": "request-0"}\n' * 3)
        output = stored_file(person, OUTPUT, filename="batch_done_output.jsonl", purpose=BatchFile.Purpose.BATCH_OUTPUT)
        finished = make_batch(person, Batch.Status.COMPLETED, total=3, completed=3, input_file=source,
                              output_file=output)
        running = make_batch(person, total=40, completed=10, failed=2, input_file=source)
    yield {"running": running, "finished": finished}
    with django_db_blocker.unblock():
        Batch.objects.filter(owner=person).delete()
        for row in BatchFile.objects.filter(owner=person):
            storage.delete_object(row.object_name)
            row.delete()


def fits_the_phone(page) -> None:
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    wide = page.evaluate("""[...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right >
        document.documentElement.clientWidth + 1).map(e => e.tagName + '.' + e.className + '#' + e.id).slice(0, 8)""")
    assert overflow <= 0, f"{page.url} scrolls sideways on a phone by {overflow}px: {wide}"


def test_a_person_follows_downloads_and_cancels_their_batches(browser, gatehouse, batches, django_db_blocker):
    from batches.models import Batch

    running, finished = batches["running"].public_id, batches["finished"].public_id
    context = browser.new_context(viewport=DESKTOP, accept_downloads=True)
    page = context.new_page()
    sign_in(page, gatehouse.url, "batcher", "pw-batcher")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Batches").click()
    page.wait_for_selector("h1:text('Batches')")
    accessible(page)
    row = page.locator(f"tr[data-batch='{running}']")
    bar = row.get_by_role("progressbar", name=f"Progress of {running}")
    assert (bar.get_attribute("value"), bar.get_attribute("max")) == ("12", "40")
    assert "12 of 40 done, 2 failed" in row.inner_text() and "In progress" in row.inner_text()
    screenshot(page, "batches-desktop")
    # The feeder answers more of its requests: the page's script shows them without a reload.
    with django_db_blocker.unblock():
        Batch.objects.filter(public_id=running).update(completed_count=30)

    with page.expect_download() as info:
        page.get_by_role("link", name=f"Output file of {finished}").click()
    assert info.value.suggested_filename == "batch_done_output.jsonl"
    assert open(info.value.path(), "rb").read() == OUTPUT

    expect(row.get_by_role("progressbar")).to_have_attribute("value", "32", timeout=10_000)
    assert "32 of 40 done, 2 failed" in row.inner_text()
    row.get_by_role("button", name=f"Cancel {running}").click()
    page.wait_for_selector(f"text=Cancelling {running}")
    assert "Cancelling" in row.locator(".badge").inner_text()
    assert row.get_by_role("button").count() == 0
    accessible(page)

    phone = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True, storage_state=context.storage_state())
    small = phone.new_page()
    small.goto(gatehouse.url + "/batches/")
    accessible(small)
    fits_the_phone(small)
    screenshot(small, "batches-phone")
    phone.close()
    context.close()


def test_an_empty_batches_page_shows_how_to_start_one_on_a_phone(browser, gatehouse, world, django_db_blocker,
                                                                  monkeypatch):
    from django.contrib.auth import get_user_model

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with django_db_blocker.unblock():
        if not get_user_model().objects.filter(username="nobatch").exists():
            get_user_model().objects.create_user("nobatch", password="pw-nobatch")
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    page = context.new_page()
    page.goto(gatehouse.url + "/batches/")  # signed out: to sign in, and back
    page.get_by_label("Username").fill("nobatch")
    page.get_by_label("Password").fill("pw-nobatch")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(gatehouse.url + "/batches/")
    assert page.get_by_role("heading", name="You have no batches yet").is_visible()
    assert "client.batches.create(" in page.inner_text("#batch-example-code")
    accessible(page)
    fits_the_phone(page)
    screenshot(page, "batches-empty-phone")
    context.close()
