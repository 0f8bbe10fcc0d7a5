"""A file's stored object goes when its row goes, whoever deletes the row: the API, the admin, or the
deletion of its owner (a cascade). The object is deleted once the deletion is committed."""

from __future__ import annotations

from django.db import transaction
from django.db.models.signals import post_delete
from django.dispatch import receiver

from batches.models import BatchFile
from batches.storage import delete_object


@receiver(post_delete, sender=BatchFile)
def _delete_stored_object(sender, instance: BatchFile, **kwargs) -> None:
    transaction.on_commit(lambda: delete_object(instance.object_name))
