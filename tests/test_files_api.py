"""The Files API for batch input (/v1/files, issue 17), with the real `openai` SDK against the live server:
the round trip (upload, list, retrieve, content, delete), files belong to their person, every line checked
before anything is stored, the size and line limits, and the per-person quota on stored bytes.

The shared web process runs with small limits for this file (tests/conftest.py: BATCH_FILE_MAX_BYTES 3 MiB,
BATCH_FILE_MAX_LINES 1000, BATCH_FILE_QUOTA_BYTES 6 MiB, MAX_REQUEST_BODY_BYTES 1 MiB) and stores files in
the session's directory, where the tests look to see that a refused upload left nothing behind. The quota
tests use a person of their own, so no other test's files count against it. The concurrency test sends
four uploads at once, of which only two fit under the quota: exactly two get in (the check and the insert
are one transaction holding the person's row; on SQLite the transaction itself serialises them).
"""

from __future__ import annotations

import json
import secrets
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest

from tests.conftest import (
    BATCH_FILE_MAX_BYTES,
    BATCH_FILE_MAX_LINES,
    BATCH_FILE_QUOTA_BYTES,
    CHAT_MODEL,
    CODE_MODEL,
    EMBED_MODEL,
    batch_files_dir,
)


def chat(custom_id: str, model: str = CHAT_MODEL, **body) -> dict:
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": model, "messages": [{"role": "user", "content": "Hello"}], **body}}


def jsonl(*lines: dict | str) -> bytes:
    return b"".join((line if isinstance(line, str) else json.dumps(line)).encode() + b"\n" for line in lines)


def stored_objects() -> dict[str, bytes]:
    root = batch_files_dir()
    return {str(path.relative_to(root)): path.read_bytes() for path in root.rglob("*") if path.is_file()}


def upload(client: openai.OpenAI, data: bytes, name: str = "requests.jsonl"):
    return client.files.create(file=(name, data), purpose="batch")


class Files:
    """A person's SDK client that deletes, at the end of the test, every file it uploaded."""

    def __init__(self, base_url: str, key: str) -> None:
        self.client = openai.OpenAI(base_url=base_url, api_key=key, max_retries=0)
        self.created: list[str] = []

    def upload(self, data: bytes, name: str = "requests.jsonl"):
        created = upload(self.client, data, name)
        self.created.append(created.id)
        return created

    def clean_up(self) -> None:
        for file_id in self.created:
            try:
                self.client.files.delete(file_id)
            except openai.NotFoundError:
                pass


@pytest.fixture
def alice(base_url, world):
    files = Files(base_url, world.alice_key)
    yield files
    files.clean_up()


@pytest.fixture
def bob(base_url, world):
    files = Files(base_url, world.bob_key)
    yield files
    files.clean_up()


@pytest.fixture
def newcomer(base_url, django_db_blocker):
    """A person of their own with one key and no files, removed at the end."""
    from django.contrib.auth import get_user_model

    from apiaccess.models import ApiKey

    with django_db_blocker.unblock():
        user = get_user_model().objects.create_user("files-" + secrets.token_hex(4))
        _, key = ApiKey.issue(user, name="files")
    files = Files(base_url, key)
    yield files
    for listed in files.client.files.list():
        files.client.files.delete(listed.id)
    with django_db_blocker.unblock():
        user.delete()


def test_upload_list_retrieve_content_and_delete_round_trip(alice):
    data = jsonl(
        chat("chat-1"),
        {"custom_id": "done-1", "method": "POST", "url": "/v1/completions",
         "body": {"model": CODE_MODEL, "prompt": "def add(a, b):", "max_tokens": 20}},
        "",  # a blank line is not a request
        {"custom_id": "emb-1", "method": "POST", "url": "/v1/embeddings",
         "body": {"model": EMBED_MODEL, "input": ["one", "two"]}},
        {"custom_id": "resp-1", "method": "POST", "url": "/v1/responses",
         "body": {"model": CHAT_MODEL, "input": "Héllo ☃", "max_output_tokens": 50}},
    )
    before = stored_objects()
    created = alice.upload(data, "my-requests.jsonl")
    assert created.id.startswith("file-") and created.object == "file"
    assert (created.bytes, created.filename, created.purpose, created.status) == (
        len(data), "my-requests.jsonl", "batch", "processed")
    assert created.expires_at is None and created.status_details is None
    new = {name: content for name, content in stored_objects().items() if name not in before}
    assert list(new.values()) == [data]

    assert alice.client.files.retrieve(created.id).model_dump() == created.model_dump()
    assert created.id in [f.id for f in alice.client.files.list()]
    assert created.id in [f.id for f in alice.client.files.list(purpose="batch")]
    assert alice.client.files.content(created.id).read() == data

    deleted = alice.client.files.delete(created.id)
    assert (deleted.id, deleted.object, deleted.deleted) == (created.id, "file", True)
    assert set(stored_objects()) == set(before)
    with pytest.raises(openai.NotFoundError):
        alice.client.files.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        alice.client.files.content(created.id)
    with pytest.raises(openai.NotFoundError):
        alice.client.files.delete(created.id)
    assert created.id not in [f.id for f in alice.client.files.list()]


def test_the_list_is_newest_first_and_pages_the_way_the_sdk_follows_it(alice):
    ids = [alice.upload(jsonl(chat(f"c{i}"))).id for i in range(3)]
    page = alice.client.files.list(limit=2)
    mine = [f.id for f in page.data if f.id in ids]
    assert page.has_more and mine == ids[::-1][:2]
    # Iterating follows `after` from page to page.
    assert [f.id for f in alice.client.files.list(limit=2) if f.id in ids] == ids[::-1]
    assert [f.id for f in alice.client.files.list(limit=1, order="asc") if f.id in ids] == ids
    with pytest.raises(openai.BadRequestError) as refused:
        alice.client.files.list(limit=0)
    assert refused.value.param == "limit"


def test_another_persons_file_is_a_404_like_an_unknown_id(alice, bob, base_url, world):
    created = alice.upload(jsonl(chat("mine")))
    for call in (bob.client.files.retrieve, bob.client.files.content, bob.client.files.delete):
        with pytest.raises(openai.NotFoundError) as hidden:
            call(created.id)
        with pytest.raises(openai.NotFoundError) as unknown:
            call("file-doesnotexist")
        assert hidden.value.body["message"] == unknown.value.body["message"].replace("file-doesnotexist", created.id)
    assert created.id not in [f.id for f in bob.client.files.list()]
    answer = httpx.get(f"{base_url}/files/{created.id}", headers={"Authorization": f"Bearer {world.bob_key}"})
    assert answer.status_code == 404 and set(answer.json()["error"]) == {"message", "type", "param", "code"}
    assert alice.client.files.content(created.id).read() == jsonl(chat("mine"))  # still there for alice


INVALID_FILES = [
    pytest.param(jsonl(chat("a"), "{not json"), 2, "not valid JSON", id="bad-json"),
    pytest.param(jsonl("[1, 2]"), 1, "JSON object", id="not-an-object"),
    pytest.param(jsonl(chat("a"), {**chat("b"), "custom_id": ""}), 2, "custom_id", id="empty-custom-id"),
    pytest.param(jsonl(chat("a"), chat("b"), chat("a")), 3, "already used on line 1", id="duplicate-custom-id"),
    pytest.param(jsonl({**chat("a"), "method": "GET"}), 1, "'method'", id="method"),
    pytest.param(jsonl(chat("a"), {**chat("b"), "url": "/v1/images/generations"}), 2, "'url'", id="url"),
    pytest.param(jsonl({**chat("a"), "body": "hello"}), 1, "'body'", id="body-not-object"),
    pytest.param(jsonl(chat("a"), {"custom_id": "b", "method": "POST", "url": "/v1/chat/completions",
                                   "body": {"model": CHAT_MODEL}}), 2, "messages", id="schema"),
    pytest.param(jsonl(chat("a", temperature=5)), 1, "temperature", id="out-of-range"),
    pytest.param(jsonl(chat("a"), chat("b", stream=True)), 2, "stream", id="stream"),
    pytest.param(jsonl(chat("a"), chat("b", model="no-such-model:1b")), 2, "no-such-model", id="unknown-model"),
    pytest.param(jsonl(chat("a", model=EMBED_MODEL)), 1, "embedding model", id="embedder-on-chat"),
    pytest.param(jsonl({"custom_id": "r", "method": "POST", "url": "/v1/responses",
                        "body": {"model": CHAT_MODEL, "input": "hi", "previous_response_id": "resp_1"}}),
                 1, "previous_response_id", id="responses-stateful"),
    pytest.param(jsonl(chat("a")) + b'{"custom_id": "\xff"}\n', 2, "UTF-8", id="not-utf8"),
]


@pytest.mark.parametrize(("data", "line", "words"), INVALID_FILES)
def test_one_bad_line_refuses_the_whole_file_with_its_number_and_stores_nothing(alice, data, line, words):
    listed, before = [f.id for f in alice.client.files.list()], stored_objects()
    with pytest.raises(openai.BadRequestError) as refused:
        alice.upload(data)
    message = refused.value.body["message"]
    assert message.startswith(f"Line {line}: ") and words in message, message
    assert refused.value.param == "file"
    assert [f.id for f in alice.client.files.list()] == listed and stored_objects() == before


@pytest.mark.parametrize("data", [b"", b"\n\n  \n"], ids=["empty", "blank-lines"])
def test_an_empty_file_is_refused(alice, data):
    with pytest.raises(openai.BadRequestError) as refused:
        alice.upload(data)
    assert refused.value.param == "file" and "empty" in refused.value.body["message"]


def test_only_purpose_batch_is_accepted(alice):
    with pytest.raises(openai.BadRequestError) as refused:
        alice.client.files.create(file=("x.jsonl", jsonl(chat("a"))), purpose="fine-tune")
    assert refused.value.param == "purpose"


def test_a_line_for_a_model_the_key_may_not_use_is_refused_for_that_key_only(alice, bob):
    data = jsonl(chat("a"), chat("b", model=CODE_MODEL))
    with pytest.raises(openai.BadRequestError) as refused:
        bob.upload(data)
    assert refused.value.body["message"].startswith("Line 2: the model `qwen2.5-coder:1.5b` does not exist")
    assert alice.upload(data).bytes == len(data)


def test_uploads_have_their_own_size_limit_not_the_apis_body_limit(alice):
    # A line of about 2 KB: 700 of them pass MAX_REQUEST_BODY_BYTES (1 MiB) but not BATCH_FILE_MAX_BYTES.
    filler = "x" * 2000
    big = jsonl(*(chat(f"c{i}", messages=[{"role": "user", "content": filler}]) for i in range(700)))
    assert 1024 * 1024 < len(big) < BATCH_FILE_MAX_BYTES
    assert alice.upload(big).bytes == len(big)

    before = stored_objects()
    line = jsonl(chat("c", messages=[{"role": "user", "content": "y" * 4000}]))
    just_over = line * (BATCH_FILE_MAX_BYTES // len(line) + 1)  # the view's check: the file is too large
    far_over = just_over * 2  # the edge's: the body is too large, refused before it is read
    for too_big, code in ((just_over, "file_too_large"), (far_over, "request_too_large")):
        with pytest.raises(openai.APIStatusError) as refused:
            alice.upload(too_big)
        assert (refused.value.status_code, refused.value.code) == (413, code), refused.value.body
        assert stored_objects() == before


def test_a_file_with_more_requests_than_allowed_is_refused(alice):
    with pytest.raises(openai.BadRequestError) as refused:
        alice.upload(jsonl(*(chat(f"c{i}") for i in range(BATCH_FILE_MAX_LINES + 1))))
    assert refused.value.code == "too_many_lines" and str(BATCH_FILE_MAX_LINES) in refused.value.body["message"]
    assert alice.upload(jsonl(*(chat(f"c{i}") for i in range(BATCH_FILE_MAX_LINES)))).bytes > 0


def quarter_of_the_quota(tag: str) -> bytes:
    """A valid file of a little over a quarter of BATCH_FILE_QUOTA_BYTES (under the size and line limits)."""
    target = BATCH_FILE_QUOTA_BYTES // 4 + 100_000
    filler = "z" * (target // 500)
    data = jsonl(*(chat(f"{tag}-{i}", messages=[{"role": "user", "content": filler}]) for i in range(500)))
    assert BATCH_FILE_QUOTA_BYTES // 4 < len(data) < BATCH_FILE_MAX_BYTES
    return data


def test_an_upload_over_the_persons_quota_is_refused_until_they_delete_a_file(newcomer):
    first, second, third = (newcomer.upload(quarter_of_the_quota(tag)) for tag in "abc")
    listed, before = [f.id for f in newcomer.client.files.list()], stored_objects()
    with pytest.raises(openai.BadRequestError) as refused:
        newcomer.upload(quarter_of_the_quota("d"))
    assert refused.value.code == "file_quota_exceeded", refused.value.body
    used = first.bytes + second.bytes + third.bytes
    assert f"you use {used} of {BATCH_FILE_QUOTA_BYTES} bytes" in refused.value.body["message"]
    assert [f.id for f in newcomer.client.files.list()] == listed and stored_objects() == before

    newcomer.client.files.delete(first.id)
    assert newcomer.upload(quarter_of_the_quota("d")).bytes > 0


def test_uploads_at_once_cannot_slip_past_the_quota_together(newcomer):
    files = [quarter_of_the_quota(f"p{n}") for n in range(6)]  # room for three of them

    def attempt(data: bytes) -> str:
        try:
            return upload(newcomer.client, data).id
        except openai.BadRequestError as refused:
            assert refused.code == "file_quota_exceeded", refused.body
            return ""

    with ThreadPoolExecutor(len(files)) as pool:
        outcomes = list(pool.map(attempt, files))
    accepted = [file_id for file_id in outcomes if file_id]
    assert len(accepted) == 3, outcomes
    listed = newcomer.client.files.list()
    assert sorted(f.id for f in listed) == sorted(accepted)
    assert sum(f.bytes for f in listed) <= BATCH_FILE_QUOTA_BYTES


def test_the_routes_answer_under_api_too_and_want_a_key(alice, gatehouse, world):
    created = alice.upload(jsonl(chat("a")))
    headers = {"Authorization": f"Bearer {world.alice_key}"}
    listed = httpx.get(gatehouse.url + "/api/files", headers=headers).json()
    assert listed["object"] == "list" and created.id in [f["id"] for f in listed["data"]]
    assert httpx.get(f"{gatehouse.url}/api/files/{created.id}/content", headers=headers).content == jsonl(chat("a"))
    refused = httpx.post(gatehouse.url + "/v1/files", files={"file": ("a.jsonl", jsonl(chat("b")))},
                         data={"purpose": "batch"})
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key"


@pytest.mark.django_db
def test_staff_read_files_in_the_admin_but_do_not_add_or_edit_them(world, superuser_client):
    from batches.models import BatchFile

    row = BatchFile.objects.create(owner=world.users["alice"], filename="in-admin.jsonl", bytes=10, line_count=1,
                                   object_name="nowhere.jsonl")
    listing = superuser_client.get("/admin/batches/batchfile/")
    assert listing.status_code == 200 and row.public_id in listing.content.decode()
    assert superuser_client.get("/admin/batches/batchfile/add/").status_code == 403
    page = superuser_client.get(f"/admin/batches/batchfile/{row.pk}/change/")
    assert page.status_code == 200 and "in-admin.jsonl" in page.content.decode()
    assert b'name="_save"' not in page.content
