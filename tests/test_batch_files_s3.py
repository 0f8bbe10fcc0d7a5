"""Batch files on S3-compatible storage (BATCH_FILES_S3_*): a web process started with those settings
keeps the files it is given in the bucket, under the prefix, and none in its folder.

The bucket is a real S3 API over HTTP: moto's server on a free port, started and stopped here. The web
process is the real one (tests/conftest.py's world and database), and the files go through the real
`openai` SDK: what lands in the bucket is checked with boto3, as an operator would look.
"""

from __future__ import annotations

import json
import secrets
import sys
import tempfile
from pathlib import Path

import boto3
import openai
import pytest

from portal.storage_settings import batch_files_storage
from tests.conftest import CHAT_MODEL, live_server_env
from tests.support.processes import STARTING, DaphneServer, ServiceProcess, eventually, free_port, port_open

BUCKET = "gatehouse-batch-files"
PREFIX = "tenant-a/batch-files"
# moto takes any credentials; they are given explicitly so none from the environment are used.
CREDENTIALS = {"aws_access_key_id": "gatehouse-test", "aws_secret_access_key": "gatehouse-test-secret"}
REGION = "us-east-1"


@pytest.fixture(scope="module")
def s3_endpoint():
    port = free_port()
    server = ServiceProcess([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], {},
                            "moto_server")
    try:
        eventually(lambda: port_open(port), what="moto_server", timeout=20, proc=server.proc, ignore=STARTING)
    except Exception:
        server.stop()
        raise RuntimeError("moto_server did not start:\n" + server.output()) from None
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture(scope="module")
def bucket(s3_endpoint):
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name=REGION, **CREDENTIALS)
    client.create_bucket(Bucket=BUCKET)
    return client


@pytest.fixture(scope="module")
def s3_gatehouse(s3_endpoint, bucket, world, redis_server, static_root):
    """A web process of its own, configured for the bucket, with a folder that should stay empty."""
    folder = Path(tempfile.mkdtemp(prefix="batch-files-s3-"))
    server = DaphneServer({
        **live_server_env(redis_server, static_root),
        "BATCH_FILES_DIR": str(folder),
        "BATCH_FILES_S3_BUCKET": BUCKET,
        "BATCH_FILES_S3_ENDPOINT_URL": s3_endpoint,
        "BATCH_FILES_S3_REGION": REGION,
        "BATCH_FILES_S3_ACCESS_KEY_ID": CREDENTIALS["aws_access_key_id"],
        "BATCH_FILES_S3_SECRET_ACCESS_KEY": CREDENTIALS["aws_secret_access_key"],
        "BATCH_FILES_S3_PREFIX": PREFIX,
    })
    yield server, folder
    server.stop()


@pytest.fixture
def client(s3_gatehouse, django_db_blocker):
    """The SDK as a person of their own, removed (with any file left) at the end."""
    from django.contrib.auth import get_user_model

    from apiaccess.models import ApiKey

    server, _ = s3_gatehouse
    with django_db_blocker.unblock():
        user = get_user_model().objects.create_user("s3-files-" + secrets.token_hex(4))
        _, key = ApiKey.issue(user, name="s3")
    sdk = openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0)
    yield sdk
    for listed in sdk.files.list():
        sdk.files.delete(listed.id)
    with django_db_blocker.unblock():
        user.delete()


def objects(bucket) -> dict[str, bytes]:
    listed = bucket.list_objects_v2(Bucket=BUCKET).get("Contents", [])
    return {item["Key"]: bucket.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read() for item in listed}


def batch_input(*custom_ids: str) -> bytes:
    return b"".join(json.dumps({"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions",
                                "body": {"model": CHAT_MODEL, "messages": [{"role": "user", "content": "Hi"}]}})
                    .encode() + b"\n" for custom_id in custom_ids)


def test_uploads_go_to_the_bucket_under_the_prefix_and_deleting_removes_them(client, bucket, s3_gatehouse):
    _, folder = s3_gatehouse
    before = objects(bucket)
    data = batch_input("q-1", "q-2")
    created = client.files.create(file=("requests.jsonl", data), purpose="batch")

    new = {key: body for key, body in objects(bucket).items() if key not in before}
    assert list(new.values()) == [data], new.keys()
    (key,) = new
    assert key.startswith(PREFIX + "/") and key.endswith(f"/{created.id}.jsonl"), key
    assert not any(folder.iterdir()), "with a bucket set, nothing is written to BATCH_FILES_DIR"
    grants = bucket.get_object_acl(Bucket=BUCKET, Key=key)["Grants"]
    assert [grant["Permission"] for grant in grants] == ["FULL_CONTROL"], grants  # the owner's only: private

    assert client.files.content(created.id).read() == data

    client.files.delete(created.id)
    assert objects(bucket) == before


def test_an_object_missing_from_the_bucket_is_a_server_error_not_a_crash(client, bucket):
    created = client.files.create(file=("requests.jsonl", batch_input("q-1")), purpose="batch")
    (key,) = [key for key in objects(bucket) if key.endswith(f"/{created.id}.jsonl")]
    bucket.delete_object(Bucket=BUCKET, Key=key)
    with pytest.raises(openai.InternalServerError) as failed:
        client.files.content(created.id)
    assert "cannot be read" in failed.value.message
    client.files.delete(created.id)  # the row still goes


def test_without_a_bucket_files_stay_in_the_folder_exactly_as_before(tmp_path):
    assert batch_files_storage(directory=tmp_path) == {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(tmp_path), "file_permissions_mode": 0o600, "directory_permissions_mode": 0o700}}


def test_half_a_key_pair_refuses_to_start(tmp_path):
    from django.core.exceptions import ImproperlyConfigured

    with pytest.raises(ImproperlyConfigured, match="set both, or neither"):
        batch_files_storage(directory=tmp_path, s3_bucket=BUCKET, s3_access_key_id="only-the-id")
