"""Celery tasks: thin wrappers that call plain functions, kept thin like views."""

from __future__ import annotations

from celery import shared_task

from inference import catalogue


@shared_task(ignore_result=True)
def sync_catalogue() -> list[dict]:
    # Periodic: if a sync is already running, its result is as fresh as ours would be.
    return [report.__dict__ for report in catalogue.sync_catalogue(wait=0)]
