"""Celery tasks for usage records. Thin: the work is in plain functions."""

from __future__ import annotations

from celery import shared_task

from usage import drain, rollup


@shared_task(ignore_result=True)
def drain_usage() -> int:
    return drain.drain()


@shared_task(ignore_result=True)
def roll_up_usage() -> tuple[int, int]:
    return rollup.roll_up()
