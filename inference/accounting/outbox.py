"""Writes that must reach Redis even when it is busy or blinked: slot releases, rate-limit settlements,
usage records.

Each is put here as a function that makes the call; a few workers per process run them, and one that
fails because Redis is unreachable (or the pool has no free connection) goes back in line and is
tried again with a growing pause, until Redis takes it. So a burst of thousands of requests ending at
once, or a Redis restart, delays these writes but never drops them. Every write put here must be safe
to repeat: a call that timed out may have run.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from common.store.client import REDIS_ERRORS

log = logging.getLogger(__name__)

WORKERS = 8
MAX_PAUSE_SECONDS = 2.0
# Far more than a process ever has in flight; beyond it the oldest writes go, with a log line, rather
# than the process's memory.
MAX_PENDING = 200_000

Write = Callable[[], Awaitable[object]]


class Outbox:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[str, Write]] = asyncio.Queue()
        self.pause = 0.0
        self.dropped = 0
        self.retried = 0
        self._workers = [asyncio.create_task(self._work()) for _ in range(WORKERS)]

    def put(self, what: str, write: Write) -> None:
        if self.queue.qsize() >= MAX_PENDING:
            self.queue.get_nowait()
            self.dropped += 1
            log.error("outbox full: dropped the oldest pending Redis write")
        self.queue.put_nowait((what, write))

    @property
    def pending(self) -> int:
        return self.queue.qsize()

    async def _work(self) -> None:
        while True:
            what, write = await self.queue.get()
            try:
                if self.pause:
                    await asyncio.sleep(self.pause)
                await write()
                self.pause = 0.0
            except REDIS_ERRORS as exc:
                self.retried += 1
                if not self.pause:  # once per outage, not once per pending write
                    log.warning("%s waits for Redis (%s); pending writes are retried until it answers", what, exc)
                self.pause = min(MAX_PAUSE_SECONDS, max(0.05, self.pause * 2))
                self.queue.put_nowait((what, write))
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a bad write must not stop the others
                log.exception("%s failed", what)
            finally:
                self.queue.task_done()


_outboxes: dict[int, Outbox] = {}


def outbox() -> Outbox:
    """This event loop's outbox (daphne has one loop; tests may have several)."""
    loop = asyncio.get_running_loop()
    box = _outboxes.get(id(loop))
    if box is None:
        box = _outboxes[id(loop)] = Outbox()
    return box


def put(what: str, write: Write) -> None:
    outbox().put(what, write)


async def flush(seconds: float) -> int:
    """Wait, up to `seconds`, until this loop's pending writes have reached Redis: a process that
    stops runs it last, so the slots of the requests it cancelled come back at once and their usage
    records are kept. Returns how many writes were still pending when it gave up."""
    box = _outboxes.get(id(asyncio.get_running_loop()))
    if box is None:
        return 0
    try:
        await asyncio.wait_for(box.queue.join(), seconds)
    except TimeoutError:
        log.warning("stopping with %d Redis write(s) not made", box.pending)
    return box.pending
