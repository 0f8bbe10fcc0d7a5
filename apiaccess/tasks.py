"""Celery tasks for API keys. Thin: the work is in plain functions."""

from __future__ import annotations

from celery import shared_task

from apiaccess import last_used


@shared_task(ignore_result=True)
def flush_key_last_used() -> int:
    return last_used.flush()
