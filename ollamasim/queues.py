"""The two waiting lines of Ollama's scheduler (server/sched.go, llm/llama_server.go).

`PendingQueue` is `pendingReqCh`, the bounded channel of requests that need a load; `Slots` is a
runner's `semaphore.NewWeighted(numParallel)`, an unbounded FIFO wait for a free slot.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class Slots:
    """A FIFO semaphore: the runner's `semaphore.NewWeighted(numParallel)`."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.busy = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        return sum(1 for fut in self._waiters if not fut.done())

    def try_acquire(self) -> bool:
        if self.busy < self.size and not self._waiters:
            self.busy += 1
            return True
        return False

    async def acquire(self) -> None:
        if self.try_acquire():
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # granted just as the client left: pass the slot on
            else:
                self._waiters.remove(fut)
            raise

    def release(self) -> None:
        self.busy -= 1
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                self.busy += 1
                fut.set_result(None)
                return


class PendingQueue(Generic[T]):
    """A Go buffered channel with a non-blocking send: the receiver, when waiting, takes an item
    directly; otherwise up to `capacity` items wait. Cancelled items keep their place until taken."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.items: deque[T] = deque()
        self._getter: asyncio.Future[T] | None = None

    def offer(self, item: T) -> bool:
        if self._getter is not None and not self._getter.done():
            self._getter.set_result(item)
            self._getter = None
            return True
        if len(self.items) >= self.capacity:
            return False
        self.items.append(item)
        return True

    async def take(self) -> T:
        if self.items:
            return self.items.popleft()
        self._getter = asyncio.get_running_loop().create_future()
        return await self._getter
