"""Celery tasks: thin wrappers that call plain functions, kept thin like views."""

from __future__ import annotations

import asyncio

from celery import shared_task
from celery.signals import worker_shutting_down
from django.db import close_old_connections

from batches import feeder

_loop: asyncio.AbstractEventLoop | None = None


def _feeder_loop() -> asyncio.AbstractEventLoop:
    # One event loop for the worker process's life: the scheduler's broker and the outbox are kept per
    # loop (inference/scheduler/slots.py), so a fresh loop per run would start them again each time.
    global _loop
    if _loop is None or _loop.is_closed():
        _loop = asyncio.new_event_loop()
    return _loop


@shared_task(ignore_result=True)
def feed_batches() -> str:
    # Long-running: it runs until no batch is left, in the worker that consumes the "batches" queue
    # (settings.CELERY_TASK_ROUTES). A second feeder exits at once (the lease in batches/feeder.py).
    try:
        return _feeder_loop().run_until_complete(feeder.feed())
    finally:
        close_old_connections()


@worker_shutting_down.connect
def stop_feeding_on_shutdown(**_) -> None:
    # A warm shutdown (SIGTERM, a first Ctrl-C) waits for the running task, and the feeder would go on
    # until no batch is left (then the worker is killed, its lease held until it lapses). Celery sends
    # this signal from its signal handler, in the thread that runs the loop: hand the stop to the loop.
    if _loop is not None and not _loop.is_closed():
        _loop.call_soon_threadsafe(feeder.stop_feeding)
