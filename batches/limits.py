"""The request body limit of the web edge (portal/web.py, portal/asgi.py) per path: file uploads have
their own, BATCH_FILE_MAX_BYTES, instead of the API's MAX_REQUEST_BODY_BYTES."""

from __future__ import annotations

from django.conf import settings

UPLOAD_PATHS = ("/v1/files", "/api/files")
# Room for the multipart framing around the file: boundaries, part headers, the `purpose` field.
MULTIPART_ALLOWANCE_BYTES = 64 * 1024


def request_body_limit(path: str) -> int:
    if path in UPLOAD_PATHS:
        return max(settings.MAX_REQUEST_BODY_BYTES, settings.BATCH_FILE_MAX_BYTES + MULTIPART_ALLOWANCE_BYTES)
    return settings.MAX_REQUEST_BODY_BYTES
