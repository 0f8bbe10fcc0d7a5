"""Celery tasks: thin wrappers that call plain functions, kept thin like views."""

from __future__ import annotations

from celery import shared_task

from inference import catalogue


@shared_task(ignore_result=True)
def sync_catalogue() -> list[dict]:
    return [report.__dict__ for report in catalogue.sync_catalogue()]
