from __future__ import annotations

import os

from celery import Celery
from celery.signals import worker_ready

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

app = Celery("portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_ready.connect
def _sync_catalogue_at_start(sender, **kwargs):  # noqa: ARG001
    # Beat's first run comes one interval after start; fill the catalogue now instead.
    sender.app.send_task("inference.tasks.sync_catalogue")
