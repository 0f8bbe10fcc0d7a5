"""Where batch files are stored: the "batch_files" entry of STORAGES, a folder or an S3-compatible bucket.

A function apart from portal/settings.py, so the settings and a test can build the entry the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.exceptions import ImproperlyConfigured

# An S3 object being read is buffered in memory up to this size, then in a temporary file.
# django-storages' default (0) keeps all of it in memory, and a batch file may be 200 MB.
S3_READ_BUFFER_BYTES = 2 * 1024 * 1024


def batch_files_storage(*, directory: str | Path, s3_bucket: str = "", s3_endpoint_url: str = "",
                        s3_region: str = "", s3_access_key_id: str = "", s3_secret_access_key: str | None = None,
                        s3_prefix: str = "batch-files") -> dict[str, Any]:
    """The STORAGES entry for batch files: the folder `directory`, unless a bucket is named."""
    if not s3_bucket:
        return {"BACKEND": "django.core.files.storage.FileSystemStorage",
                "OPTIONS": {"location": str(directory), "file_permissions_mode": 0o600,
                            "directory_permissions_mode": 0o700}}
    if bool(s3_access_key_id) != bool(s3_secret_access_key):
        # Half a key pair would quietly fall back to whatever credentials boto3 finds elsewhere.
        raise ImproperlyConfigured("BATCH_FILES_S3_ACCESS_KEY_ID and BATCH_FILES_S3_SECRET_ACCESS_KEY go together: "
                                   "set both, or neither (boto3 then finds credentials its own way).")
    options: dict[str, Any] = {
        "bucket_name": s3_bucket,
        "location": s3_prefix.strip("/"),
        # Never replace an object: a name that is taken gets a new one (file ids are unique anyway).
        "file_overwrite": False,
        # No ACL is sent, so objects get the bucket's own access: private unless the bucket says
        # otherwise. An explicit ACL, even "private", is refused by buckets with ACLs disabled (the
        # default on AWS), and by some S3-compatible stores. Gatehouse serves content itself and hands
        # out no storage URLs; any URL the storage makes is signed and expires.
        "default_acl": None,
        "querystring_auth": True,
        "max_memory_size": S3_READ_BUFFER_BYTES,
    }
    # Empty values are left out, so boto3 finds them its own way: AWS_* variables, a config file, an
    # instance role; and the AWS endpoint for the region when no endpoint is named.
    optional = {"endpoint_url": s3_endpoint_url, "region_name": s3_region, "access_key": s3_access_key_id,
                "secret_key": s3_secret_access_key}
    options.update({name: value for name, value in optional.items() if value})
    return {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": options}
