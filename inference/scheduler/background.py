"""Fire-and-forget work of a request that must not delay its response: settling rate limits and
writing its usage record. The tasks are referenced until done, or asyncio may collect them halfway,
and they run on even when the request itself was cancelled (the client left)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

_tasks: set[asyncio.Task] = set()


def spawn(coro: Coroutine[Any, Any, Any]) -> None:
    task = asyncio.get_running_loop().create_task(coro)
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)
