"""Ollama's scheduler (server/sched.go) as asyncio code: runners, the pending queue, loads, eviction and
keep_alive timers.

Three waits, as in Ollama:
1. Requests that need a load (or reload) enter one bounded FIFO queue (`MAX_QUEUE`), drained by a single
   loop that loads one model at a time and blocks while it waits for an eviction (head-of-line blocking).
   When the queue is full the request fails at once with 503.
2. Requests for a loaded runner with matching load options skip that queue (the v0.11.5 fast path).
3. Each runner has NUM_PARALLEL slots; waiting for one is FIFO, unbounded and not counted in MAX_QUEUE.
   That wait lives in the request handlers (call.py), not here.

When a runner joins the loaded set depends on the version. Since v0.30.0 `llamaServerRunner.Load`
(llm/llama_server.go) returns only once llama-server runs, and only then does the runner enter
`s.loaded`: while a model loads, requests for it miss the fast path and wait in the pending queue
(counting against MAX_QUEUE), /api/ps does not list it, and a `keep_alive: 0` unload finds nothing to
unload. Before v0.30.0 the runner entered `s.loaded` at once, still loading; later requests took the
fast path and waited for that load, and /api/ps listed it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

from ollamasim.catalogue import ModelEntry
from ollamasim.config import ServerConfig
from ollamasim.options import Resolved, needs_reload
from ollamasim.queues import PendingQueue, Slots
from ollamasim.stats import Stats
from ollamasim.wire import MAX_DURATION_NS, ApiError, rfc3339nano_local

log = logging.getLogger("ollamasim.scheduler")

ERR_MAX_QUEUE = "server busy, please try again.  maximum pending requests exceeded"  # two spaces
GIB = 2**30
# HEAD adds a compute-graph surcharge for the larger automatic batch sizes (sched.go `load`).
_BATCH_SURCHARGE = {1024: 768 * 2**20, 2048: 2 * GIB}


@dataclass
class Trace:
    """Where one HTTP request is, for cancellation accounting: queue, load, slot or generation."""

    model: str | None = None
    stage: str = "queue"
    errored: bool = False
    started_ns: int = field(default_factory=time.monotonic_ns)  # handler start, for the durations


class Runner:
    """A loaded (or loading) model: `runnerRef`."""

    def __init__(self, key: str, entry: ModelEntry, resolved: Resolved, size: int, size_vram: int,
                 session: float) -> None:
        self.key = key
        self.entry = entry
        self.load_options = resolved.load_options
        self.num_ctx = resolved.num_ctx
        self.num_parallel = resolved.num_parallel
        self.size = size
        self.size_vram = size_vram
        self.session = session  # keep_alive in seconds; math.inf = forever; 0 = unload when idle
        self.expires_at_ns: int | None = None
        self.refcount = 0
        self.loading = True
        self.unloaded = False
        self.evicting = False
        self.ready: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.timer: asyncio.TimerHandle | None = None
        self.slots = Slots(resolved.num_parallel)

    @property
    def stats_name(self) -> str:
        return self.entry.name.short

    def stop_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


@dataclass
class Pending:
    entry: ModelEntry
    resolved: Resolved
    keep_alive: float | None
    trace: Trace
    future: asyncio.Future[Runner]
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)


class Scheduler:
    def __init__(self, config: ServerConfig, stats: Stats) -> None:
        self.config = config
        self.stats = stats
        self.loaded: dict[str, Runner] = {}
        # The runner being loaded when it is not yet in `loaded` (v0.30.0+): for /sim/stats and /sim/reset.
        self.loading: Runner | None = None
        self.queue: PendingQueue[Pending] = PendingQueue(config.max_queue)
        self._unloaded = asyncio.Event()
        self._faults_changed = asyncio.Event()  # wakes a load in progress to re-read its load time
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._process_pending(), name="pending-loop")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        for runner in list(self.loaded.values()):
            runner.stop_timer()

    # ---- sizes -------------------------------------------------------------------------------
    def predicted_size(self, entry: ModelEntry, resolved: Resolved) -> int:
        """weights + KV cache for num_ctx tokens in each of num_parallel slots (+ batch surcharge)."""
        kv = entry.config.kv_bytes_per_token or self.config.kv_bytes_per_token
        batch = _BATCH_SURCHARGE.get(resolved.get("num_batch"), 0)
        return entry.config.size + resolved.num_ctx * resolved.num_parallel * kv + batch

    def _vram_in_use(self) -> int:
        return sum(r.size_vram for r in self.loaded.values())

    # ---- the request side ----------------------------------------------------------------------
    async def acquire(self, entry: ModelEntry, resolved: Resolved, keep_alive: float | None,
                      trace: Trace) -> Runner:
        """getRunner: returns a runner with a reference held for the caller (release it when done)."""
        name = entry.name.short
        while True:
            runner = self.loaded.get(entry.blob)
            if not self.config.fast_path or runner is None:
                break
            if runner.loading:
                # Before v0.30.0 only: a request for a model still loading waits for that load (refMu)
                # and then shares it.
                trace.stage = "load"
                ok = await asyncio.shield(runner.ready)
                if not ok or self.loaded.get(entry.blob) is not runner:
                    continue  # the load failed or was aborted: try again from scratch
            if needs_reload(runner.load_options, resolved.load_options):
                break
            self._use(runner, keep_alive)
            self.stats.count(name, "fast_path")
            return runner

        fut: asyncio.Future[Runner] = asyncio.get_running_loop().create_future()
        pending = Pending(entry, resolved, keep_alive, trace, fut)
        trace.stage = "queue"
        if not self.queue.offer(pending):
            self.stats.count(name, "queue_full_rejections")
            self.stats.queue_full_rejections += 1
            raise ApiError(503, ERR_MAX_QUEUE)
        self.stats.enter(name, "queued")
        self.stats.set_queue_depth(len(self.queue.items))
        try:
            return await fut
        except asyncio.CancelledError:
            pending.cancelled.set()
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                self.release(fut.result())  # granted just as the client left
            raise

    def _use(self, runner: Runner, keep_alive: float | None) -> None:
        """useLoadedRunner: take a reference, stop the idle timer, and let an explicit keep_alive win."""
        runner.refcount += 1
        runner.stop_timer()
        if keep_alive is not None:
            runner.session = keep_alive

    def release(self, runner: Runner) -> None:
        """The handler returned: when the last reference goes, start the keep_alive timer or unload."""
        runner.refcount -= 1
        if runner.refcount > 0 or runner.unloaded or runner.loading:
            return
        now = time.time_ns()
        if runner.session <= 0:
            self._unload(runner)
        elif math.isinf(runner.session):
            runner.expires_at_ns = now + MAX_DURATION_NS
        else:
            runner.expires_at_ns = now + int(runner.session * 1e9)
            runner.timer = asyncio.get_running_loop().call_later(runner.session, self._timer_fired, runner)

    def _timer_fired(self, runner: Runner) -> None:
        runner.timer = None
        if runner.refcount == 0 and not runner.unloaded:
            self._unload(runner)

    def expire_model(self, entry: ModelEntry) -> None:
        """expireRunner (keep_alive 0 with an empty prompt): unload now, or when in-flight work ends.
        Only listed runners are found: since v0.30.0 a model still loading stays loaded."""
        runner = self.loaded.get(entry.blob)
        if runner is not None:
            self._expire(runner)

    def _expire(self, runner: Runner) -> None:
        runner.stop_timer()
        runner.session = 0
        runner.expires_at_ns = time.time_ns()
        # A loading runner is released by its loader, which then sees session 0 and unloads it.
        if runner.refcount <= 0 and not runner.loading:
            self._unload(runner)

    def _unload(self, runner: Runner) -> None:
        runner.stop_timer()
        runner.unloaded = True
        if self.loaded.get(runner.key) is runner:
            del self.loaded[runner.key]
        self.stats.count(runner.stats_name, "unloads")
        if runner.evicting:
            self.stats.count(runner.stats_name, "evictions")
        log.info("unloaded %s", runner.stats_name)
        self._unloaded.set()

    def unload_all(self) -> None:
        """/sim/reset's unload (not an Ollama call): a model still loading is unloaded once it is ready."""
        for runner in [*self.loaded.values(), *([self.loading] if self.loading else [])]:
            self._expire(runner)

    # ---- the single pending loop ---------------------------------------------------------------
    async def _process_pending(self) -> None:
        while True:
            pending = await self.queue.take()
            self.stats.set_queue_depth(len(self.queue.items))
            self.stats.leave(pending.entry.name.short, "queued")
            if pending.cancelled.is_set() or pending.future.done():
                continue  # the client left while queued: dropped silently, as Ollama does
            try:
                await self._schedule(pending)
            except Exception as exc:  # never let one request kill the loop
                log.exception("scheduling failed")
                if not pending.future.done():
                    pending.future.set_exception(ApiError(500, f"simulator scheduling error: {exc}"))

    async def _schedule(self, pending: Pending) -> None:
        entry, resolved = pending.entry, pending.resolved
        reloading: Runner | None = None
        while True:
            if pending.cancelled.is_set():
                return
            runner = self.loaded.get(entry.blob)
            if runner is not None:
                if not needs_reload(runner.load_options, resolved.load_options):
                    self._use(runner, pending.keep_alive)
                    self._grant(pending, runner)
                    return
                if reloading is not runner:  # count once, however many wake-ups the drain takes
                    reloading = runner
                    self.stats.count(entry.name.short, "reloads")
                victim = runner
            elif len(self.loaded) >= self.config.max_runners:
                victim = self._find_victim()
            else:
                size = self.predicted_size(entry, resolved)
                free = self.config.gpu_memory - self._vram_in_use()
                if not self.loaded:
                    # The first model may spill to CPU: only part of it is in VRAM.
                    await self._load(pending, size, min(size, self.config.gpu_memory))
                    return
                if size <= 0.8 * free:
                    await self._load(pending, size, size)
                    return
                victim = self._find_victim()
            if victim is not runner:
                victim.evicting = True
            # Wait for the victim to go. Nothing else in the queue moves meanwhile (ollama#14578),
            # and a request that resets the victim's keep_alive keeps it alive (ollama#17408).
            self._unloaded.clear()
            self._expire(victim)
            if not victim.unloaded:
                await self._unloaded.wait()

    def _find_victim(self) -> Runner:
        """findRunnerToUnload: shortest keep_alive first, then the weights' blob path (ByDurationAndName);
        the first idle one, else the first. Blob paths differ only in their digest, the runner key."""
        ordered = sorted(self.loaded.values(), key=lambda r: (r.session, r.key))
        for runner in ordered:
            if runner.refcount == 0:
                return runner
        return ordered[0]

    async def _load(self, pending: Pending, size: int, size_vram: int) -> None:
        entry = pending.entry
        name = entry.name.short
        session = self.config.keep_alive if pending.keep_alive is None else pending.keep_alive
        runner = Runner(entry.blob, entry, pending.resolved, size, size_vram, session)
        listed_when_ready = self.config.behaviour.llama_server_runners
        if listed_when_ready:
            self.loading = runner
        else:
            # Before v0.30.0: listed while loading, so /api/ps shows it and later requests wait for it.
            self.loaded[entry.blob] = runner
        pending.trace.stage = "load"
        error: str | None = entry.setting("load_error")
        if entry.setting("load_stalls"):
            error = "timed out waiting for llama-server to start - load stalled (simulated)"
        try:
            aborted = await self._wait_for_load(pending, size)
        finally:
            self.loading = None
        if aborted or error:
            # WaitUntilRunning failed: the half-loaded runner is thrown away and the next request
            # starts from scratch.
            runner.unloaded = True
            if self.loaded.get(entry.blob) is runner:
                del self.loaded[entry.blob]
            self.stats.count(name, "load_aborts" if aborted else "load_failures")
            runner.ready.set_result(False)
            self._unloaded.set()
            if not aborted and not pending.future.done():
                pending.future.set_exception(ApiError(500, error or "load failed"))
            return
        runner.loading = False
        if listed_when_ready:
            self.loaded[entry.blob] = runner
        self.stats.count(name, "loads")
        self._use(runner, None)
        runner.ready.set_result(True)
        self._grant(pending, runner)

    def faults_changed(self) -> None:
        """/sim/faults changed a model's knobs: a load in progress re-reads its load time, so a test can
        hold a load open (a long load_seconds) and release it (load_seconds 0) when it is ready."""
        self._faults_changed.set()

    def _load_seconds(self, entry: ModelEntry, size: int) -> float:
        if entry.setting("load_stalls"):
            # A stalled load never progresses, so only the stall timeout ends it.
            return self.config.load_timeout if self.config.load_timeout > 0 else math.inf
        seconds = entry.setting("load_seconds")
        return size / GIB * self.config.load_seconds_per_gib if seconds is None else float(seconds)

    async def _wait_for_load(self, pending: Pending, size: int) -> bool:
        """Wait out the load time; True when the client left first (WaitUntilRunning(req.ctx) aborts)."""
        started = time.monotonic()
        while True:
            remaining = started + self._load_seconds(pending.entry, size) - time.monotonic()
            if remaining <= 0:
                return False
            self._faults_changed.clear()
            waits = [asyncio.ensure_future(pending.cancelled.wait()),
                     asyncio.ensure_future(self._faults_changed.wait())]
            try:
                await asyncio.wait(waits, timeout=None if math.isinf(remaining) else remaining,
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                for wait in waits:
                    wait.cancel()
            if pending.cancelled.is_set():
                return True

    def _grant(self, pending: Pending, runner: Runner) -> None:
        if pending.future.done():
            self.release(runner)  # the requester is gone
        else:
            pending.future.set_result(runner)

    # ---- reporting -----------------------------------------------------------------------------
    def ps(self) -> list[dict[str, Any]]:
        now = time.time_ns()
        rows = []
        for runner in self.loaded.values():
            expires = runner.expires_at_ns
            if expires is None:
                # Not set until the runner first goes idle (e.g. still loading): ps shows now + keep_alive.
                expires = now + (MAX_DURATION_NS if math.isinf(runner.session) else int(runner.session * 1e9))
            entry = runner.entry
            rows.append((expires, {
                "name": entry.name.short,
                "model": entry.name.short,
                "size": runner.size,
                "digest": entry.digest,
                "details": entry.details(),
                "expires_at": rfc3339nano_local(expires),
                "size_vram": runner.size_vram,
                "context_length": runner.num_ctx,
            }))
        rows.sort(key=lambda row: row[0], reverse=True)
        return [row for _, row in rows]

    def loaded_summary(self) -> list[dict[str, Any]]:
        return [
            {"model": r.stats_name, "loading": r.loading, "refcount": r.refcount, "slots_busy": r.slots.busy,
             "slots_waiting": r.slots.waiting, "num_parallel": r.num_parallel, "num_ctx": r.num_ctx,
             "size": r.size, "size_vram": r.size_vram,
             "keep_alive": None if math.isinf(r.session) else r.session}
            for r in [*self.loaded.values(), *([self.loading] if self.loading else [])]
        ]
