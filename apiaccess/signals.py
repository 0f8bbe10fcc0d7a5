"""Announce changes that must reach every web process's key cache (apiaccess/revocation.py).

apiaccess.lifecycle announces revocations itself; these catch the other ways a key or its owner
changes: an admin editing a key's expiry, models or priority, deleting it, deactivating a person or
changing their account's priority.
"""

from __future__ import annotations

from django.conf import settings
from django.db.models.signals import m2m_changed, post_delete, post_save
from django.dispatch import receiver

from apiaccess import revocation
from apiaccess.models import Account, ApiKey


@receiver(post_save, sender=ApiKey)
def key_saved(sender, instance, created, **kwargs):
    if not created:  # a new key is in no cache yet
        revocation.announce_change()


@receiver(post_save, sender=Account)
def account_saved(sender, instance, **kwargs):
    revocation.announce_change()  # a person's priority is part of every cached key of theirs


@receiver(post_delete, sender=ApiKey)
def key_deleted(sender, instance, **kwargs):
    revocation.announce_change()


@receiver(m2m_changed, sender=ApiKey.allowed_models.through)
def key_models_changed(sender, instance, action, **kwargs):
    if action in ("post_add", "post_remove", "post_clear") and isinstance(instance, ApiKey):
        revocation.announce_change()


def _owner_changed(sender, instance, created=False, update_fields=None, **kwargs):
    if created or (update_fields is not None and set(update_fields) <= {"last_login"}):
        return  # signing in saves last_login: no key is affected
    revocation.announce_change()


def connect_user_signals() -> None:
    post_save.connect(_owner_changed, sender=settings.AUTH_USER_MODEL, dispatch_uid="apiaccess-owner-saved")
    post_delete.connect(_owner_changed, sender=settings.AUTH_USER_MODEL, dispatch_uid="apiaccess-owner-deleted")
