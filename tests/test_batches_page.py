"""The portal's Batches page (/batches/) with Django's test client: a person sees their own batches only,
newest first, each with its status in words, its progress and its files; a download streams the stored
bytes of their own file, and anyone else's file is a 404; Cancel (a POST with the CSRF token) moves their
running batch to `cancelling`, and anyone else's batch is a 404. With no batch the page says how to make one.

Rows are written directly; files' bytes go through batches.storage into the session's batch-files folder,
the one the shared web process uses (tests/conftest.py), so tests/test_batches_browser.py can share these
helpers.
"""

from __future__ import annotations

import datetime as dt
import html
import io
import re

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from batches import storage
from batches.models import Batch, BatchFile, new_file_id
from batches.pages import SHOWN
from portal.storage_settings import batch_files_storage
from tests.conftest import batch_files_dir

pytestmark = pytest.mark.django_db

Status = Batch.Status


def stored_file(owner, content: bytes, *, filename: str = "requests.jsonl",
                purpose: str = BatchFile.Purpose.BATCH) -> BatchFile:
    file_id = new_file_id()
    name = storage.save_object(storage.object_name_for(owner.pk, file_id), io.BytesIO(content))
    return BatchFile.objects.create(public_id=file_id, owner=owner, purpose=purpose, filename=filename,
                                    bytes=len(content), line_count=content.count(b"\n"), object_name=name)


def make_batch(owner, status: str = Status.IN_PROGRESS, *, total: int = 10, completed: int = 0, failed: int = 0,
               input_file: BatchFile | None = None, **fields) -> Batch:
    return Batch.objects.create(owner=owner, status=status, input_file=input_file,
                                input_file_public_id=input_file.public_id if input_file else "file-deleted",
                                endpoint="/v1/chat/completions", total_count=total, completed_count=completed,
                                failed_count=failed, expires_at=timezone.now() + dt.timedelta(hours=24), **fields)


@pytest.fixture
def batch_files(settings):
    """This process's batch storage, pointed at the session's folder as the web process's is; the files a
    test stored are removed at its end."""
    settings.STORAGES = {**settings.STORAGES, storage.ALIAS: batch_files_storage(directory=batch_files_dir())}
    yield
    for row in BatchFile.objects.all():
        storage.delete_object(row.object_name)


@pytest.fixture
def people():
    make = get_user_model().objects.create_user
    return {"dora": make("dora", password="pw"), "eve": make("eve", password="pw")}


def signed_in(user, **options) -> Client:
    client = Client(**options)
    client.force_login(user)
    return client


def body_of(response) -> bytes:
    """A streamed download's bytes. Its content is an async iterator (the view reads the storage in worker
    threads, as daphne serves it), collected here as an ASGI server would."""
    async def collect() -> bytes:
        return b"".join([chunk async for chunk in response.streaming_content])

    return async_to_sync(collect)()


def test_the_page_lists_only_the_persons_own_batches_newest_first(people, batch_files):
    dora, eve = people["dora"], people["eve"]
    source = stored_file(dora, b'{"custom_id": "1"}\n')
    output = stored_file(dora, b'{"custom_id": "1", "response": {}}\n', purpose=BatchFile.Purpose.BATCH_OUTPUT,
                         filename="out.jsonl")
    errors = stored_file(dora, b'{"custom_id": "2", "error": {}}\n', purpose=BatchFile.Purpose.BATCH_OUTPUT,
                         filename="err.jsonl")
    finished = make_batch(dora, Status.COMPLETED, total=2, completed=1, failed=1, input_file=source,
                          output_file=output, error_file=errors)
    failed = make_batch(dora, Status.FAILED, errors={"object": "list", "data": [
        {"code": "invalid_api_key", "message": "The batch's API key was revoked.", "param": None, "line": None}]})
    running = make_batch(dora, total=10_000, completed=117, failed=3, input_file=source)
    others = make_batch(eve)

    page = signed_in(dora).get("/batches/").content.decode()
    ids = re.findall(r'data-batch="(batch_[0-9a-f]+)"', page)
    assert ids == [running.public_id, failed.public_id, finished.public_id]
    assert others.public_id not in page

    row = _row(page, running.public_id)
    assert "In progress" in row and "/v1/chat/completions" in row
    assert '<progress max="10000" value="120"' in row and "120 of 10,000 done, 3 failed" in row
    assert f'action="/batches/{running.public_id}/cancel/"' in row
    assert f'href="/batches/files/{source.public_id}/"' in row, "the input file is there while it runs"
    assert "Output" not in row, "no output file before the batch has finished"

    row = _row(page, finished.public_id)
    assert "Completed" in row and "2 of 2 done, 1 failed" in row and "cancel" not in row
    for file in (source, output, errors):
        assert f'href="/batches/files/{file.public_id}/"' in row
    row = _row(page, failed.public_id)
    assert "Failed" in row and "The batch&#x27;s API key was revoked." in row and "None yet" in row
    assert 'src="/static/portal/batches.js"' in page, "progress refreshes while a batch runs"
    assert 'href="/batches/" aria-current="page">Batches</a>' in page, "the nav marks the page"


def _row(page: str, batch_id: str) -> str:
    return re.search(rf'<tr data-batch="{batch_id}".*?</tr>', page, re.S).group(0)


def test_the_page_shows_the_newest_batches_and_says_so_when_there_are_more(people):
    Batch.objects.bulk_create([Batch(owner=people["dora"], status=Status.COMPLETED, input_file_public_id="file-x",
                                     endpoint="/v1/embeddings", expires_at=timezone.now()) for _ in range(SHOWN + 2)])
    page = signed_in(people["dora"]).get("/batches/").content.decode()
    assert page.count("<tr data-batch=") == SHOWN
    assert f"Showing your {SHOWN} newest batches of {SHOWN + 2}" in page
    assert "batches.js" not in page, "nothing runs: no refresh"


def test_with_no_batch_the_page_says_how_to_make_one(people):
    page = signed_in(people["eve"]).get("/batches/").content.decode()
    assert "You have no batches yet" in page and "<table" not in page
    code = html.unescape(page)
    assert 'client.files.create(file=open("requests.jsonl", "rb"), purpose="batch")' in code
    assert 'client.batches.create(input_file_id=batch_input.id, endpoint="/v1/chat/completions"' in code
    assert '{"custom_id": "request-1", "method": "POST", "url": "/v1/chat/completions"' in code
    assert 'href="/connect/"' in page


def test_downloads_stream_the_owners_file_and_anyone_elses_is_a_404(people, batch_files):
    dora, eve = people["dora"], people["eve"]
    content = b"".join(b'{"custom_id": "%d", "response": {"status_code": 200}}\n' % i for i in range(2000))
    output = stored_file(dora, content, purpose=BatchFile.Purpose.BATCH_OUTPUT, filename="batch_1_output.jsonl")
    evas = stored_file(eve, b'{"custom_id": "secret"}\n')

    response = signed_in(dora).get(f"/batches/files/{output.public_id}/")
    assert response.status_code == 200 and response.streaming
    assert response["Content-Disposition"] == 'attachment; filename="batch_1_output.jsonl"'
    assert response["Content-Length"] == str(len(content))
    assert body_of(response) == content

    assert signed_in(dora).get(f"/batches/files/{evas.public_id}/").status_code == 404
    assert signed_in(dora).get("/batches/files/file-nosuchfile/").status_code == 404
    assert body_of(signed_in(eve).get(f"/batches/files/{evas.public_id}/")) == b'{"custom_id": "secret"}\n'


def test_cancel_moves_a_running_batch_to_cancelling_and_anyone_elses_is_a_404(people):
    dora, eve = people["dora"], people["eve"]
    running, evas = make_batch(dora), make_batch(eve)
    client = signed_in(dora, enforce_csrf_checks=True)
    page = client.get("/batches/").content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', _row(page, running.public_id)).group(1)

    assert client.post(f"/batches/{running.public_id}/cancel/").status_code == 403, "the form's CSRF token is needed"
    response = client.post(f"/batches/{running.public_id}/cancel/", {"csrfmiddlewaretoken": token}, follow=True)
    assert response.redirect_chain == [("/batches/", 302)]
    running.refresh_from_db()
    assert running.status == Status.CANCELLING and running.cancelling_at is not None
    page = response.content.decode()
    assert f"Cancelling {running.public_id}" in page and "Cancelling" in _row(page, running.public_id)
    assert "cancel/" not in _row(page, running.public_id), "no second Cancel button"

    assert client.post(f"/batches/{evas.public_id}/cancel/", {"csrfmiddlewaretoken": token}).status_code == 404
    evas.refresh_from_db()
    assert evas.status == Status.IN_PROGRESS
    assert client.get(f"/batches/{running.public_id}/cancel/").status_code == 405


def test_cancelling_a_batch_that_finished_meanwhile_says_so(people):
    finished = make_batch(people["dora"], Status.COMPLETED)
    response = signed_in(people["dora"]).post(f"/batches/{finished.public_id}/cancel/", follow=True)
    assert "Cannot cancel a batch with status &#x27;completed&#x27;." in response.content.decode()
    finished.refresh_from_db()
    assert finished.status == Status.COMPLETED


@pytest.mark.parametrize("url", ["/batches/", "/batches/files/file-x/", "/batches/batch_x/cancel/"])
def test_every_batches_url_needs_a_signed_in_person(url):
    response = Client().get(url)
    assert response.status_code == 302 and response["Location"] == f"/accounts/login/?next={url}"
