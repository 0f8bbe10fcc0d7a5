"""Where batch files' bytes live: Django's storage under the "batch_files" alias (settings.STORAGES).

Plain sync functions (storage backends are sync): async views call them through sync_to_async.
"""

from __future__ import annotations

import logging
from typing import IO

from django.core.files import File
from django.core.files.storage import Storage, storages

log = logging.getLogger(__name__)

ALIAS = "batch_files"
CHUNK_BYTES = 1024 * 1024


def batch_storage() -> Storage:
    return storages[ALIAS]


def object_name_for(owner_id: int, file_id: str) -> str:
    return f"{owner_id}/{file_id}.jsonl"


def save_object(name: str, content: IO[bytes]) -> str:
    """Store the content under `name` (or the name the storage picks instead) and return that name."""
    content.seek(0)
    return batch_storage().save(name, File(content, name=name))


def delete_object(name: str) -> None:
    try:
        batch_storage().delete(name)
    except Exception:  # the row is gone either way; an orphan object is logged, not an error to the caller
        log.warning("could not delete the stored batch file %s", name, exc_info=True)


def open_object(name: str) -> IO[bytes]:
    return batch_storage().open(name, "rb")

