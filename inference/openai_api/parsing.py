"""Parse request bodies without stalling the event loop.

json.loads and pydantic's validation run in C and Rust holding the GIL, so a thread does not help:
an 18 MB body held every other request on the loop for seconds. Small bodies (nearly all of them)
are parsed in place; bodies over PARSE_OFFLOAD_BYTES go to a separate process that parses, checks
the limits (inference/openai_api/limits.py) and validates, and sends back the validated model, or the error.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from django.conf import settings

from common.apierrors import ApiError
from inference.openai_api.schemas import M, parse_body

_pool: ProcessPoolExecutor | None = None


def _executor() -> ProcessPoolExecutor:
    global _pool
    if _pool is None:
        # spawn, not fork: the web process has an event loop, threads and open sockets.
        _pool = ProcessPoolExecutor(max_workers=settings.PARSE_WORKERS,
                                    mp_context=multiprocessing.get_context("spawn"))
    return _pool


def _parse_in_child(model_cls: type[M], raw: bytes) -> tuple[str, Any]:
    # ApiError does not survive pickling (keyword-only arguments), so errors travel as plain data.
    try:
        return "ok", parse_body(model_cls, raw)
    except ApiError as error:
        return "error", (error.status, error.message, error.param, error.code, getattr(error, "requested_model", None))


async def parse_request(model_cls: type[M], raw: bytes) -> M:
    """`parse_body`, with large bodies parsed in another process."""
    if len(raw) < settings.PARSE_OFFLOAD_BYTES:
        return parse_body(model_cls, raw)
    global _pool
    try:
        outcome, value = await asyncio.get_running_loop().run_in_executor(_executor(), _parse_in_child, model_cls, raw)
    except BrokenProcessPool:  # a parser process died (out of memory?): start afresh next time
        _pool = None
        raise
    if outcome == "ok":
        return value
    status, message, param, code, requested_model = value
    error = ApiError(status, message, param=param, code=code)
    error.requested_model = requested_model
    raise error
