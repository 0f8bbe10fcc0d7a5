"""Calls to Ollama nodes: start one or more upstream generations and turn their failures into ApiErrors.

A streaming call is "opened" by awaiting its first part before any byte goes to the client, so
errors that happen before generation (unknown model on the node, capability, busy, node down) become
ordinary HTTP errors with the right status; later failures become SSE error events.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import ollama

from inference.errors import ApiError

StreamFactory = Callable[[], Awaitable[AsyncIterator[Any]]]

# What a call to a node can fail with: Ollama's own errors (HTTP status or an error line in a stream),
# transport errors, and the ConnectionError ollama-python raises when it cannot connect.
UPSTREAM_ERRORS = (ollama.ResponseError, httpx.HTTPError, ConnectionError)


def upstream_error(exc: BaseException, model: str) -> ApiError:
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, ollama.ResponseError):
        return ApiError.from_ollama(exc.status_code, exc.error, model)
    if isinstance(exc, httpx.TimeoutException):
        return ApiError.backend_unavailable("The model server took too long to answer. Please retry.")
    if isinstance(exc, (ConnectionError, httpx.HTTPError)):
        return ApiError.backend_unavailable("The model server is not reachable right now. Please retry shortly.")
    raise exc


@contextlib.asynccontextmanager
async def translated_errors(model: str):
    try:
        yield
    except UPSTREAM_ERRORS as exc:
        raise upstream_error(exc, model) from exc


async def gather_choices(calls: list[Callable[[], Awaitable[Any]]], model: str) -> list[Any]:
    """Run non-streaming upstream calls concurrently; if one fails (or we are cancelled), cancel the rest."""
    tasks = [asyncio.ensure_future(call()) for call in calls]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException as exc:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if isinstance(exc, UPSTREAM_ERRORS):
            raise upstream_error(exc, model) from exc
        raise


class MergedStream:
    """Several upstream streams (one per choice) read concurrently, yielded as (index, part)."""

    def __init__(self, iterators: list[AsyncIterator[Any]], firsts: list[Any]) -> None:
        self._iterators = iterators
        self._firsts = firsts
        self._queue: asyncio.Queue = asyncio.Queue()
        self._tasks: list[asyncio.Task] = []

    @classmethod
    async def open(cls, factories: list[StreamFactory], model: str) -> MergedStream:
        iterators: list[AsyncIterator[Any]] = []
        try:
            async with translated_errors(model):
                iterators = list(await asyncio.gather(*(factory() for factory in factories)))
                firsts = list(await asyncio.gather(*(anext(it) for it in iterators)))
        except BaseException:
            # Includes CancelledError when the client leaves while we wait: close what was opened.
            await _close_all(iterators)
            raise
        return cls(iterators, firsts)

    async def _pump(self, index: int, iterator: AsyncIterator[Any]) -> None:
        try:
            async for part in iterator:
                await self._queue.put((index, part, None))
        except Exception as exc:  # noqa: BLE001 - handed to the consumer, which reports it in-stream
            await self._queue.put((index, None, exc))
        finally:
            await self._queue.put((index, None, StopAsyncIteration()))

    async def __aiter__(self):
        for index, first in enumerate(self._firsts):
            yield index, first
        if len(self._iterators) == 1:  # the common case: no tasks, no queue hop
            async for part in self._iterators[0]:
                yield 0, part
            return
        self._tasks = [asyncio.create_task(self._pump(i, it)) for i, it in enumerate(self._iterators)]
        remaining = len(self._tasks)
        while remaining:
            index, part, exc = await self._queue.get()
            if isinstance(exc, StopAsyncIteration):
                remaining -= 1
            elif exc is not None:
                raise exc
            else:
                yield index, part

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await _close_all(self._iterators)


async def _close_all(iterators: list[AsyncIterator[Any]]) -> None:
    # Closing the ollama client's generator closes its HTTP response, which makes Ollama stop generating.
    for iterator in iterators:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception):
                await aclose()
