"""The Files API for batch input (/v1/files), as the OpenAI SDKs call it: upload, list, retrieve, content,
delete. A file belongs to the person, so every key of theirs sees it; another person's file is answered
exactly like one that does not exist.

An upload is accepted only whole: within BATCH_FILE_MAX_BYTES, every line a request that could run
(batches/validation.py), and within the person's quota on stored bytes (BATCH_FILE_QUOTA_BYTES). The
quota is checked and the row written in one transaction that holds a lock on the person's user row, so
two uploads at once cannot both slip under it. Storage and validation are sync; the async functions here
run them in worker threads.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import IO, Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import UploadedFile
from django.db import connections, transaction
from django.db.models import Sum

from batches import storage, validation
from batches.models import BatchFile, new_file_id
from common.apierrors import ApiError
from inference import registry
from inference.caller import Caller

log = logging.getLogger(__name__)

PURPOSES = ("batch",)
MAX_LIST_LIMIT = 10_000
FILENAME_CHARS = 255


def file_object(row: BatchFile) -> dict[str, Any]:
    """OpenAI's File object."""
    return {"id": row.public_id, "object": "file", "bytes": row.bytes, "created_at": int(row.created_at.timestamp()),
            "filename": row.filename, "purpose": row.purpose, "status": "processed", "expires_at": None,
            "status_details": None}


def not_found(file_id: str) -> ApiError:
    return ApiError.not_found(f"No such File object: {file_id}").with_code("file_not_found")


def check_purpose(purpose: str | None) -> str:
    if not purpose:
        raise ApiError.invalid_request("Missing required parameter: 'purpose'.", param="purpose")
    if purpose not in PURPOSES:
        raise ApiError.invalid_request(
            f"Invalid value for 'purpose': {purpose!r}. Gatehouse accepts files for batches only: 'batch'.",
            param="purpose")
    return purpose


def too_large() -> ApiError:
    limit = settings.BATCH_FILE_MAX_BYTES
    return ApiError(413, f"The file is too large: the limit is {limit} bytes.", param="file",
                    code="file_too_large")


def quota_exceeded(used: int, size: int) -> ApiError:
    quota = settings.BATCH_FILE_QUOTA_BYTES
    return ApiError.invalid_request(
        f"Storing this file ({size} bytes) would take you over your quota for stored files: you use {used} of "
        f"{quota} bytes. Delete files you no longer need (DELETE /v1/files/{{file_id}}) and upload it again.",
        param="file", code="file_quota_exceeded")


def stored_bytes(owner_id: int) -> int:
    return BatchFile.objects.filter(owner_id=owner_id).aggregate(total=Sum("bytes"))["total"] or 0


def _check_quota(owner_id: int, size: int) -> None:
    quota = settings.BATCH_FILE_QUOTA_BYTES
    if quota:
        used = stored_bytes(owner_id)
        if used + size > quota:
            raise quota_exceeded(used, size)


def record_file(*, file_id: str, owner_id: int, key_id: int | None, purpose: str, filename: str, object_name: str,
                size: int, line_count: int, endpoints: str = "") -> BatchFile:
    """Write the row of a stored file, or refuse it over the person's quota.

    The quota check and the insert are one transaction holding a lock on the owner's user row, so
    concurrent uploads of one person are counted one after another, never both against the same total
    (on SQLite, whose transactions here take the write lock as they begin, the transaction alone does it)."""
    with transaction.atomic():
        get_user_model().objects.select_for_update().filter(pk=owner_id).exists()
        _check_quota(owner_id, size)
        return BatchFile.objects.create(public_id=file_id, owner_id=owner_id, key_id=key_id, purpose=purpose,
                                        filename=filename, bytes=size, line_count=line_count,
                                        object_name=object_name, endpoints=endpoints)


def store_file(caller: Caller, purpose: str, upload: UploadedFile, routes: dict) -> BatchFile:
    """Check every line, store the bytes and record the file; nothing is left behind when it is refused.

    Sync and slow (a large file takes seconds to check and copy): it runs whole in a worker thread, where
    a client that leaves cannot interrupt it between storing the object and writing its row, and it
    closes the thread's database connection when it is done."""
    try:
        upload.seek(0)
        line_count, endpoints = validation.check_file(iter(upload.file), routes=routes, may_use=caller.may_use,
                                           max_requests=settings.BATCH_FILE_MAX_LINES)
        _check_quota(caller.user_id, upload.size)  # early: no copy of a file that cannot fit anyway
        file_id = new_file_id()
        name = storage.save_object(storage.object_name_for(caller.user_id, file_id), upload)
        try:
            return record_file(file_id=file_id, owner_id=caller.user_id, key_id=caller.key_id, purpose=purpose,
                               filename=(upload.name or "upload.jsonl")[:FILENAME_CHARS], object_name=name,
                               size=upload.size, line_count=line_count, endpoints=",".join(sorted(endpoints)))
        except BaseException:
            storage.delete_object(name)
            raise
    finally:
        connections.close_all()  # this thread's own: a worker thread has no request to close them at its end


async def create_file(caller: Caller, purpose: str | None, upload: UploadedFile | None) -> BatchFile:
    purpose = check_purpose(purpose)
    if upload is None:
        raise ApiError.invalid_request("Missing required parameter: 'file'.", param="file")
    if upload.size > settings.BATCH_FILE_MAX_BYTES:
        raise too_large()
    routes = await registry.models_by_id()
    # Not on the loop, nor in the one sync thread that the async ORM and the API's cache refreshes share.
    return await sync_to_async(store_file, thread_sensitive=False)(caller, purpose, upload, routes)


async def get_file(caller: Caller, file_id: str) -> BatchFile:
    row = await BatchFile.objects.filter(public_id=file_id, owner_id=caller.user_id).afirst()
    if row is None:
        raise not_found(file_id)
    return row


async def delete_file(caller: Caller, file_id: str) -> dict[str, Any]:
    row = await get_file(caller, file_id)
    await row.adelete()  # its stored object goes once the deletion is committed (batches/signals.py)
    return {"id": file_id, "object": "file", "deleted": True}


def _list_params(limit: str | None, order: str | None) -> tuple[int, str]:
    try:
        count = MAX_LIST_LIMIT if limit in (None, "") else int(limit)
    except ValueError:
        count = 0
    if not 1 <= count <= MAX_LIST_LIMIT:
        raise ApiError.invalid_request(
            f"Invalid value for 'limit': {limit!r}. Expected an integer from 1 to {MAX_LIST_LIMIT}.", param="limit")
    order = order or "desc"
    if order not in ("asc", "desc"):
        raise ApiError.invalid_request(f"Invalid value for 'order': {order!r}. Expected 'asc' or 'desc'.",
                                       param="order")
    return count, order


async def list_files(caller: Caller, *, purpose: str | None = None, limit: str | None = None,
                     after: str | None = None, order: str | None = None) -> dict[str, Any]:
    """The person's files, newest first unless `order=asc`, a page of `limit` after the file `after`."""
    count, order = _list_params(limit, order)
    rows = BatchFile.objects.filter(owner_id=caller.user_id)
    if purpose:
        rows = rows.filter(purpose=purpose)
    if after:
        anchor = await BatchFile.objects.filter(public_id=after, owner_id=caller.user_id).afirst()
        if anchor is None:
            raise ApiError.invalid_request(f"Invalid value for 'after': no file {after!r}.", param="after")
        rows = rows.filter(pk__gt=anchor.pk) if order == "asc" else rows.filter(pk__lt=anchor.pk)
    rows = rows.order_by("pk" if order == "asc" else "-pk")
    page = [row async for row in rows[:count + 1]]
    data = [file_object(row) for row in page[:count]]
    return {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None, "has_more": len(page) > count}


async def open_content(row: BatchFile) -> IO[bytes]:
    try:
        return await sync_to_async(storage.open_object, thread_sensitive=False)(row.object_name)
    except OSError:
        log.error("the stored object %s of batch file %s is missing", row.object_name, row.public_id, exc_info=True)
        raise ApiError(500, f"The content of {row.public_id} cannot be read.", type="server_error") from None


async def chunks(handle: IO[bytes]) -> AsyncIterator[bytes]:
    """The stored bytes, a chunk at a time, each read in a worker thread; the handle is closed at the end."""
    try:
        while chunk := await sync_to_async(handle.read, thread_sensitive=False)(storage.CHUNK_BYTES):
            yield chunk
    finally:
        await sync_to_async(handle.close, thread_sensitive=False)()
