"""Upstream generations: each holds one slot from grant to release, and their failures become ApiErrors.

An `UpstreamCall` owns one ticket (inference/scheduler/slots.py). Whatever happens (completion, an upstream
error, cancellation because the client left, a sibling choice failing) its `finally` releases the
ticket exactly once. A node that fails before the call has produced anything is taken out, and the
call goes back to the front of the queue to run on another node.

A streamed request's calls are pumped by one task each into a `MergedStream`. The response waits a
short moment for every call's first part, so errors before generation (unknown model on the node,
a missing capability, a full queue) keep their HTTP status; a request still queued after that
moment starts its stream and receives keep-alive comments until its turn comes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx

from common.apierrors import ApiError
from inference import engines, registry
from inference.accounting.metering import CallMeter
from inference.engines import NodeFailure
from inference.engines.parts import Embeddings, Part
from inference.engines.request import GenerationRequest
from inference.registry import NodeInfo
from inference.scheduler import nodehealth

log = logging.getLogger(__name__)


def node_failure_error(failure: NodeFailure) -> ApiError:
    if isinstance(failure.cause, httpx.TimeoutException):
        return ApiError.backend_unavailable("The model server took too long to answer. Please retry.", retry_after=5)
    return ApiError.backend_unavailable("The model server is not reachable right now. Please retry shortly.",
                                        retry_after=5)


def upstream_error(exc: BaseException) -> ApiError | None:
    """The API error a call's failure is reported as, or None for what is not a call's failure."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, NodeFailure):
        return node_failure_error(exc)
    return None


class Payloads:
    """A request's calls translated for each engine kind its nodes speak, made before admission (so a
    request no engine can take never holds a slot) and looked up when a call learns its node."""

    def __init__(self, request: GenerationRequest) -> None:
        self.request = request
        self._by_kind: dict[str, list[Any]] = {}

    def prepare(self, kinds: set[str]) -> None:
        for kind in sorted(kinds):
            self.for_kind(kind)

    def for_kind(self, kind: str) -> list[Any]:
        payloads = self._by_kind.get(kind)
        if payloads is None:
            payloads = self._by_kind[kind] = engines.for_kind(kind).prepare(self.request)
        return payloads


async def _node(url: str) -> NodeInfo:
    # A node removed from the catalogue after the grant still gets its call, as the kind it was.
    return await registry.node_info(url) or NodeInfo(url, 0, True)


class UpstreamCall:
    """One call to a node for one choice of a request, holding its ticket until it ends."""

    def __init__(self, ticket, payloads: Payloads, index: int, meter: CallMeter | None = None) -> None:
        self.ticket = ticket
        self.payloads = payloads
        self.index = index
        self.operation = payloads.request.operation
        self.attempts = 0
        self.meter = meter or CallMeter(0)  # the tokens it used, for rate limits

    async def _node_failed(self, failure: NodeFailure) -> None:
        """Take the node out; go back to the queue if another node may serve, else give up."""
        await nodehealth.mark_down(failure.node, str(failure))
        self.attempts += 1
        if self.attempts >= max(1, len(self.ticket.route.node_urls)):
            raise node_failure_error(failure) from failure
        await self.ticket.requeue_after_node_failure()

    async def _granted_node(self) -> tuple[NodeInfo, Any]:
        node = await _node(await self.ticket.granted())
        self.meter.start(node.url)
        return node, self.payloads.for_kind(node.kind)[self.index]

    async def result(self) -> Part | Embeddings:
        """A non-streamed call: wait for a slot, call the node, return its answer."""
        try:
            while True:
                node, payload = await self._granted_node()
                try:
                    answer = await engines.for_node(node).call(node, self.operation, payload)
                except NodeFailure as exc:
                    await self._node_failed(exc)
                    continue
                self.meter.observe(answer)
                return answer
        finally:
            self.ticket.release()

    async def parts(self) -> AsyncIterator[Part]:
        """A streamed call: wait for a slot, open the stream (retrying on another node while nothing
        has been received), then yield its parts."""
        iterator = None
        try:
            while True:
                node, payload = await self._granted_node()
                iterator = engines.for_node(node).stream(node, self.operation, payload)
                try:
                    first = await anext(iterator)
                    break
                except NodeFailure as exc:
                    await _close(iterator)
                    iterator = None
                    await self._node_failed(exc)
            self.meter.observe(first)
            yield first
            async for part in iterator:
                self.meter.observe(part)
                yield part
        finally:
            # Closing the engine's generator closes its HTTP response, which stops the server generating.
            await _close(iterator)
            self.ticket.release()


async def gather_results(calls: list[UpstreamCall]) -> list[Part | Embeddings]:
    """Run non-streamed calls concurrently; if one fails (or we are cancelled), cancel the rest."""
    tasks = [asyncio.ensure_future(call.result()) for call in calls]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException as exc:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        error = upstream_error(exc)
        if error is not None and error is not exc:
            raise error from exc
        raise


_END = object()


class MergedStream:
    """Several streamed calls (one per choice) pumped concurrently, read as (index, part) pairs.

    Each call is pumped by its own task from the start, so choices that wait for a slot never hold
    up choices that run: their parts are buffered until read.
    """

    def __init__(self, calls: list[UpstreamCall], on_close: Callable[[MergedStream], None] | None = None) -> None:
        self._on_close = on_close  # once every call has ended: settle rate limits, record usage
        self.error: BaseException | None = None  # what ended the stream early, if anything did
        self.complete = False  # every call reached its end
        self._queue: asyncio.Queue = asyncio.Queue()
        self._buffer: list[tuple[int, Any, BaseException | None]] = []
        self._tasks = [asyncio.create_task(self._pump(i, call)) for i, call in enumerate(calls)]
        self._count = len(calls)
        self.opened_at: float | None = None

    async def _pump(self, index: int, call: UpstreamCall) -> None:
        try:
            async with contextlib.aclosing(call.parts()) as parts:
                async for part in parts:
                    self._queue.put_nowait((index, part, None))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - handed to the reader, which reports it
            error = upstream_error(exc) or exc
            self._queue.put_nowait((index, None, error))
            return
        self._queue.put_nowait((index, _END, None))

    async def open(self, wait_seconds: float) -> bool:
        """Wait until every call has its first part (True), or `wait_seconds` pass (False).

        Raises the first error that arrives meanwhile, so it can still be an HTTP error status.
        """
        opened: set[int] = set()
        try:
            async with asyncio.timeout(wait_seconds):
                while len(opened) < self._count:
                    item = await self._queue.get()
                    if item[2] is not None:
                        self.error = item[2]
                        raise item[2]
                    self._buffer.append(item)
                    opened.add(item[0])
        except TimeoutError:
            return False
        self.opened_at = time.monotonic()
        return True

    async def items(self, keepalive_seconds: float) -> AsyncIterator[tuple[int, Any] | None]:
        """(index, part) pairs until every call ends; None whenever nothing came for keepalive_seconds.
        Raises a call's error."""
        remaining = self._count
        pending, self._buffer = self._buffer, []
        while remaining:
            if pending:
                index, part, error = pending.pop(0)
            else:
                try:
                    async with asyncio.timeout(keepalive_seconds):
                        index, part, error = await self._queue.get()
                except TimeoutError:
                    yield None
                    continue
            if error is not None:
                self.error = error
                raise error
            if part is _END:
                remaining -= 1
                self.complete = remaining == 0
            else:
                yield index, part

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        try:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        finally:
            if self._on_close is not None:
                on_close, self._on_close = self._on_close, None
                on_close(self)


async def _close(iterator) -> None:
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(Exception):
            await aclose()
