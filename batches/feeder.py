"""The feeder: runs every batch's lines on slots nobody else wants, a bounded number at a time per model.

One feeder runs at a time, wherever Celery starts it (batches/tasks.py): it holds a lease in Redis
(keys.BATCH_FEEDER), renewed while it runs, and a feeder that finds the lease taken exits at once. Beat
starts it every BATCH_FEED_SECONDS, and creating a batch starts it at once; it exits once no batch has
been active for BATCH_FEEDER_IDLE_SECONDS.

Each line runs as a batch-class request through the model's queue (batches/lines.py), so it gets a slot
only when no interactive request waits for one (or once it has waited BATCH_MAX_WAIT_SECONDS). The feeder
keeps at most BATCH_LINES_PER_SLOT lines per slot of a model in flight, over all batches: the next lines
already wait when a slot frees, so the slots stay busy, and a batch never fills a queue.

Everything it knows lives in the database and Redis: a feeder killed with kill -9 loses only the lines it
had in flight, which are still PENDING, and the next feeder (after the lease expires) runs them again.
A line's result is written once (batches/lines.py `record`), so none is lost and none counted twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import Counter, defaultdict

from asgiref.sync import sync_to_async
from django.conf import settings
from django.utils import timezone

from batches import lines, output
from batches.models import Batch, BatchLine
from common.store import keys, scripts
from common.store.client import REDIS_ERRORS, redis_client
from inference import registry
from inference.accounting.outbox import outbox
from inference.scheduler import slots

log = logging.getLogger(__name__)

TICK_SECONDS = 1.0  # the longest the feeder sleeps with nothing finishing
CALLER_REFRESH_SECONDS = 30.0  # how often a batch's key is checked again (revoked, expired)
FETCH = 20  # lines read from the database at a time, per batch (a few more than usually start)
OUTBOX_FLUSH_SECONDS = 30.0
# A node that failed mid-answer (it died, or answered 5xx) may serve the line on a second try; after
# TRANSIENT_ATTEMPTS tries its error is the line's result, as OpenAI's error file would have it.
TRANSIENT_STATUSES = (502, 503, 504)
TRANSIENT_ATTEMPTS = 3
TRANSIENT_RETRY_SECONDS = 5.0


def active_batches() -> list[Batch]:
    return list(Batch.objects.filter(status__in=Batch.ACTIVE).select_related("input_file").order_by("pk"))


def pending_lines(batch_pk: int, from_index: int, count: int) -> list[BatchLine]:
    return list(BatchLine.objects.filter(batch_id=batch_pk, status=BatchLine.Status.PENDING, index__gte=from_index)
                .order_by("index")[:count])


def has_pending(batch_pk: int) -> bool:
    return BatchLine.objects.filter(batch_id=batch_pk, status=BatchLine.Status.PENDING).exists()


def start_running(batch: Batch, total: int) -> None:
    Batch.objects.filter(pk=batch.pk, status=Batch.Status.VALIDATING).update(
        status=Batch.Status.IN_PROGRESS, in_progress_at=timezone.now(), total_count=total)


def start_finalizing(batch: Batch) -> None:
    Batch.objects.filter(pk=batch.pk, status=Batch.Status.IN_PROGRESS).update(
        status=Batch.Status.FINALIZING, finalizing_at=timezone.now())


def fail_batch(batch: Batch, code: str, reason: str) -> None:
    """The batch cannot go on (its key was revoked, its input file deleted before it was read): what has not
    run is not run, and `errors` says why."""
    Batch.objects.filter(pk=batch.pk).update(errors={"object": "list", "data": [
        {"code": code, "message": reason, "param": None, "line": None}]})
    lines.close_pending(batch, BatchLine.Status.CANCELLED)


class Feeder:
    def __init__(self) -> None:
        self.owner = secrets.token_hex(8)
        self.holding = True
        self.wake = asyncio.Event()
        self.tasks: dict[int, dict[int, asyncio.Task]] = defaultdict(dict)  # batch pk -> line pk -> its run
        self.in_flight: Counter[str] = Counter()  # model (its public id) -> lines running or queued
        self.model_paused: dict[str, float] = {}  # model -> until (its queue was full)
        self.cursor: dict[int, int] = {}  # batch pk -> the next line index to read
        self.retries: dict[int, list[tuple[float, BatchLine]]] = defaultdict(list)  # batch pk -> (ready at, line)
        self.paused: dict[int, float] = {}  # batch pk -> until (a limit of its key or person is closed)
        self.attempts: Counter[int] = Counter()  # line pk -> times it ran and failed with a transient error
        # batch pk -> (checked at, key generation, caller or None, why None)
        self.callers: dict[int, tuple[float, int | None, object | None, str]] = {}

    # -- the lease -------------------------------------------------------------------------------

    async def renew(self) -> bool:
        ttl_ms = int(settings.BATCH_FEEDER_LEASE_SECONDS * 1000)
        try:
            return bool(await scripts.get(redis_client(), "lease_renew")(keys=[keys.BATCH_FEEDER], args=[self.owner, ttl_ms]))
        except REDIS_ERRORS as exc:
            log.warning("batch feeder could not renew its lease: %s", exc)
            return True  # keep going until the lease would have expired; the next renewal decides

    async def keep_lease(self) -> None:
        while self.holding:
            await asyncio.sleep(settings.BATCH_FEEDER_LEASE_SECONDS / 3)
            if not await self.renew():
                log.warning("batch feeder lost its lease; another feeder runs the batches now")
                self.holding = False
                self.wake.set()

    # -- the loop --------------------------------------------------------------------------------

    async def run(self) -> str:
        if not await self.renew():
            return "another feeder is running"
        slots.start()
        renewal = asyncio.create_task(self.keep_lease())
        idle_since = time.monotonic()
        try:
            while self.holding:
                self.wake.clear()  # before reading: a line that ends from here on wakes the wait below
                batches = await sync_to_async(active_batches)()
                if batches or self.running():
                    idle_since = time.monotonic()
                elif time.monotonic() - idle_since > settings.BATCH_FEEDER_IDLE_SECONDS:
                    break
                for batch in batches:
                    try:
                        await self.advance(batch)
                    except Exception:  # noqa: BLE001 - one batch's trouble (a database blip) must not stop the others
                        log.exception("batch %s could not advance; trying again", batch.public_id)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.next_due()):
                        await self.wake.wait()
        finally:
            self.holding = False
            renewal.cancel()
            await self.stop_all()
            with contextlib.suppress(TimeoutError):  # usage records and settlements reach Redis first
                async with asyncio.timeout(OUTBOX_FLUSH_SECONDS):
                    await outbox().queue.join()
            with contextlib.suppress(*REDIS_ERRORS):
                await scripts.get(redis_client(), "lease_release")(keys=[keys.BATCH_FEEDER], args=[self.owner])
        return "no batch left to feed"

    def next_due(self) -> float:
        """Seconds until a pause ends or a line's retry is due, or TICK_SECONDS if that is sooner."""
        now = time.monotonic()
        due = [*self.model_paused.values(), *self.paused.values(),
               *(ready_at for waiting in self.retries.values() for ready_at, _ in waiting)]
        return max(0.0, min([TICK_SECONDS, *(at - now for at in due if at > now)]))

    def running(self) -> int:
        return sum(len(tasks) for tasks in self.tasks.values())

    async def stop_batch(self, batch_pk: int) -> None:
        """Cancel the batch's lines in flight (their slots are released) and wait until they are gone."""
        tasks = list(self.tasks.get(batch_pk, {}).values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def stop_all(self) -> None:
        for batch_pk in list(self.tasks):
            await self.stop_batch(batch_pk)

    async def advance(self, batch: Batch) -> None:
        status = batch.status
        if status == Batch.Status.VALIDATING:
            try:
                total = await sync_to_async(lines.load_lines)(batch)
            except FileNotFoundError:
                await sync_to_async(fail_batch)(batch, "invalid_input_file",
                                                f"The input file {batch.input_file_public_id} was deleted before "
                                                "the batch could read it.")
                await self.finish(batch, Batch.Status.FAILED)
                return
            await sync_to_async(start_running)(batch, total)
        elif status == Batch.Status.IN_PROGRESS:
            if timezone.now() >= batch.expires_at:
                await self.stop_batch(batch.pk)
                await sync_to_async(lines.close_pending)(batch, BatchLine.Status.EXPIRED)
                await self.finish(batch, Batch.Status.EXPIRED)
            elif await self.feed(batch):
                await sync_to_async(start_finalizing)(batch)
                await self.finish(batch, Batch.Status.COMPLETED)
        elif status == Batch.Status.CANCELLING:
            if not self.tasks.get(batch.pk):  # lines already running finish first
                await sync_to_async(lines.close_pending)(batch, BatchLine.Status.CANCELLED)
                await self.finish(batch, Batch.Status.CANCELLED)
        elif status == Batch.Status.FINALIZING:  # a feeder stopped while finalizing it
            await self.finish(batch, Batch.Status.COMPLETED)

    async def finish(self, batch: Batch, status: str) -> None:
        await sync_to_async(output.finish)(batch, status)
        for state in (self.tasks, self.cursor, self.retries, self.paused, self.callers):
            state.pop(batch.pk, None)
        log.info("batch %s %s", batch.public_id, status)

    async def caller_for(self, batch: Batch):
        """Who the batch's lines run as, loaded again when any key changed (the same signal that web
        processes drop their cached keys on: apiaccess/revocation.py) or every CALLER_REFRESH_SECONDS."""
        from apiaccess import revocation
        from apiaccess.auth import batch_principal  # the key's owner and limits, at batch priority

        generation = await revocation.current()
        checked = self.callers.get(batch.pk)
        if checked is None or checked[1] != generation or time.monotonic() - checked[0] > CALLER_REFRESH_SECONDS:
            caller, reason = (None, "The API key that created this batch was deleted.") if batch.key_id is None \
                else await sync_to_async(batch_principal)(batch.key_id)
            checked = self.callers[batch.pk] = (time.monotonic(), generation, caller, reason)
        return checked[2], checked[3]

    # -- feeding ---------------------------------------------------------------------------------

    async def room(self, model: str) -> tuple[str, int]:
        """The model a line's name means (\"m\" and \"m:latest\" are one model, with one queue) and how
        many of its batch lines may be in flight at once: BATCH_LINES_PER_SLOT per slot, but no more
        waiting than the model's queue holds."""
        route = await registry.get_model(model)
        if route is None:
            return model, 1  # it fails at once with the endpoint's own error; one at a time is enough
        slot_count = route.concurrency * max(1, len(route.node_urls))
        return route.public_id, slot_count + min(slot_count * (settings.BATCH_LINES_PER_SLOT - 1), route.max_queue)

    async def feed(self, batch: Batch) -> bool:
        """Start the batch's next lines while their models have room; True when every line has its result."""
        caller, reason = await self.caller_for(batch)
        if caller is None:
            await self.stop_batch(batch.pk)
            await sync_to_async(fail_batch)(batch, "invalid_api_key", reason)
            await self.finish(batch, Batch.Status.FAILED)
            return False
        now = time.monotonic()
        if self.paused.get(batch.pk, 0) > now:
            return False
        ready = [entry for entry in self.retries[batch.pk] if entry[0] <= now]
        for entry in ready:
            if not await self.start(batch, caller, entry[1]):
                break
            self.retries[batch.pk].remove(entry)
        cursor = self.cursor.get(batch.pk, 0)
        while True:
            fetched = await sync_to_async(pending_lines)(batch.pk, cursor, FETCH)
            for line in fetched:
                if line.pk in self.tasks[batch.pk] or any(line.pk == held.pk for _, held in self.retries[batch.pk]):
                    cursor = line.index + 1
                    continue
                if not await self.start(batch, caller, line):
                    self.cursor[batch.pk] = line.index
                    return False
                cursor = line.index + 1
            self.cursor[batch.pk] = cursor
            if len(fetched) < FETCH:
                break
        if self.tasks[batch.pk] or self.retries[batch.pk]:
            return False
        if await sync_to_async(has_pending)(batch.pk):  # a line this feeder has not seen: read from the start
            self.cursor[batch.pk] = 0
            return False
        return True

    async def start(self, batch: Batch, caller, line: BatchLine) -> bool:
        """Run the line if its model has room for one more; False if not."""
        model, cap = await self.room(line.model)
        if self.in_flight[model] >= cap or self.model_paused.get(model, 0) > time.monotonic():
            return False
        self.in_flight[model] += 1
        task = asyncio.create_task(self.run_line(batch, caller, line, model))
        self.tasks[batch.pk][line.pk] = task
        task.add_done_callback(lambda _: self.line_done(batch.pk, line, model, task))
        return True

    def line_done(self, batch_pk: int, line: BatchLine, model: str, task: asyncio.Task) -> None:
        self.in_flight[model] -= 1
        if not task.cancelled() and task.exception() is None and task.result():  # it ran: its queue place is free
            self.model_paused.pop(model, None)
        self.tasks.get(batch_pk, {}).pop(line.pk, None)
        self.wake.set()

    async def run_line(self, batch: Batch, caller, line: BatchLine, model: str) -> bool:
        """Run the line and record its result; False if it did not run and waits for another try."""
        try:
            outcome = await lines.run_line(caller, batch.endpoint, line.body)
            self.attempts[line.pk] += 1
            if outcome.status_code in TRANSIENT_STATUSES and self.attempts[line.pk] < TRANSIENT_ATTEMPTS:
                raise lines.Retry(TRANSIENT_RETRY_SECONDS)
        except lines.Retry as retry:
            ready_at = time.monotonic() + retry.seconds
            if retry.scope == lines.Retry.BATCH:
                self.paused[batch.pk] = ready_at
            elif retry.scope == lines.Retry.MODEL:
                # The queue is full: no line of the model asks again until a place should be free, which
                # is when one of its lines ends (line_done) or when the refusal said; this one goes first.
                self.model_paused[model] = max(ready_at, self.model_paused.get(model, 0))
                ready_at = time.monotonic()
            self.retries[batch.pk].append((ready_at, line))
            return False
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - a bug must fail the line, not stop the feeder
            log.exception("batch %s line %s failed", batch.public_id, line.custom_id)
            outcome = lines.Outcome(500, {"error": {"message": "The server had an error while processing this request.",
                                                    "type": "server_error", "param": None, "code": None}})
        await sync_to_async(lines.record)(line, outcome)
        self.attempts.pop(line.pk, None)
        return True


_running: Feeder | None = None  # the feeder of this process, while it runs


def stop_feeding() -> None:
    """Stop the feeder running in this process (its worker is shutting down) instead of letting it run
    until no batch is left: its lines in flight are cancelled and stay pending, its slots and its lease
    are released, so the next feeder, wherever it starts, carries on at once."""
    if _running is not None:
        _running.holding = False
        _running.wake.set()


async def feed() -> str:
    global _running
    _running = Feeder()
    try:
        return await _running.run()
    finally:
        _running = None
