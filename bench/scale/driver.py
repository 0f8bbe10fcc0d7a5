"""The discrete-event loop: a virtual clock, the day's requests, the web processes' and the batch
feeder's side of each request, the swap actor's rounds, and the simulated nodes' timers.

Everything Gatehouse decides is decided by its own code (bench/scale/harness.py says which); this
module only plays the clients, the web processes' bookkeeping (a ticket per call, its release when
the call ends or its wait runs out) and time. Events run in time order; at one moment they run in
the order they were scheduled. The clock stands still while an event runs.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections import Counter

from django.conf import settings

from bench.scale.accounting import HOUR_MS, HourlyIntegral, PlaceWatch, RedisCounters, Refusal
from bench.scale.feeder import BatchFeeding, BatchRun
from bench.scale.harness import EPOCH_MS, Scheduler, VirtualClock
from bench.scale.nodes import SimEngine, SimNode
from bench.scale.sampling import Sampling
from bench.scale.workload import CONCURRENCY, MAX_QUEUE, World
from inference.scheduler import queue, swapper

KEEP_ALIVE_MS = 30 * 60_000  # OLLAMA_KEEP_ALIVE's default, 30m
# The actor polls every node every NODE_PS_POLL_SECONDS (2 s): it finds a model Ollama unloaded a second
# later on average. Only those polls are simulated; the others find nothing new (their Redis writes are
# counted at the real rate by the report).
POLL_FINDS_IT_MS = 1000
SDK_RETRIES = 2  # the OpenAI SDKs' default max_retries; they wait retry-after-ms before each
WARMUP_MS = 60_000  # the clock starts this long before the window: every model's state is born then
NEEDS_A_ROUND = frozenset({"cold", "saturated", "spread", "drained"})  # see Simulation.conditions


class Call:
    """One request (an interactive request, or one batch line) from first try to its end."""

    __slots__ = ("id", "person", "model", "kind", "batch", "job", "prompt", "completion", "arrival_ms",
                 "attempts", "ticket", "owner", "admitted_ms", "granted_ms", "node", "ended_ms", "outcome",
                 "refusals", "watch", "transient", "admissions")

    def __init__(self, id: int, person: int, model: str, kind: str, prompt: int, completion: int,
                 arrival_ms: int, job: BatchRun | None = None) -> None:
        self.id, self.person, self.model, self.kind = id, person, model, kind
        self.batch = job is not None
        self.job = job
        self.prompt, self.completion, self.arrival_ms = prompt, completion, arrival_ms
        self.attempts = 0
        self.ticket = self.owner = self.node = None
        self.admitted_ms = self.granted_ms = self.ended_ms = None
        self.outcome: str | None = None  # served | refused (gave up) | timed_out | unfinished
        self.refusals: list[tuple[int, int]] = []  # (when, retry_after_ms)
        self.watch: Refusal | None = None
        self.transient = 0  # a batch line's queue timeouts: the feeder sends it again
        self.admissions = 0  # one, or for a batch line sent again, one per time it was in the queue


class Simulation(BatchFeeding, Sampling):
    def __init__(self, world: World, redis_url: str, *, round_seconds: float = swapper.ROUND_SECONDS,
                 renew_sample_seconds: float = 300.0, check_seconds: float = 1800.0, drain_seconds: float = 3600.0,
                 every_round: bool = False, progress=None) -> None:
        self.world = world
        self.models = {m.name: m for m in world.models}
        self.start_ms, self.end_ms = world.start_ms, world.end_ms
        self.stop_ms = world.end_ms + int(drain_seconds * 1000)
        self.round_ms, self.renew_sample_ms = int(round_seconds * 1000), int(renew_sample_seconds * 1000)
        self.check_ms = int(check_seconds * 1000)
        self.every_round = every_round
        self.progress = progress
        self.clock = VirtualClock(EPOCH_MS + self.start_ms - WARMUP_MS)
        self.heap: list = []
        self.sequence = itertools.count()
        self.nodes = {n.url: SimNode(n, CONCURRENCY, self.keep_alive) for n in world.nodes}
        self.engines = {url: SimEngine(node, lambda m: self.models[m].vram_bytes, lambda m: self.models[m].load_ms,
                                       self.clock, self._at_absolute, self.on_memory)
                        for url, node in self.nodes.items()}
        self.scheduler = Scheduler(redis_url, [m.route for m in world.models], world.nodes, self.engines, self.clock,
                                   self.on_grants, self.on_place)
        self.owners = [f"gh-sim-web-{i}" for i in range(world.spec.web_processes)]
        self.feeder_owner = "gh-sim-feeder"
        self.live: dict[str, Call] = {}
        self.calls: list[Call] = []
        self.ids = itertools.count()
        self.jobs: dict[str, list[BatchRun]] = {}
        self.batch_in_flight: Counter = Counter()
        self.batch_paused_until: dict[str, int] = {}
        self.retries_pending = 0
        self.wake_publishes = 0
        self.grants = 0
        self.round_at: int | None = None  # when the next swap-actor round is planned
        self.busy_slots = HourlyIntegral(self.start_ms, self.end_ms)
        self.ready_slots = HourlyIntegral(self.start_ms, self.end_ms)
        self.busy_memory = HourlyIntegral(self.start_ms, self.end_ms)
        self.loaded_memory = HourlyIntegral(self.start_ms, self.end_ms)
        self.swaps: Counter = Counter()  # (hour, load | unload | expired, size class)
        self.watch = PlaceWatch()
        self.counters = RedisCounters(redis_url)
        self.flags: dict[str, frozenset[str]] = {}  # model -> what the actor could act on (conditions)
        self.placed_on: dict[str, set[str]] = {}  # node -> models placed there (any state), as the actor counts memory
        self.node_sets = {m.name: frozenset(m.route.node_urls) for m in world.models}
        self.renew_samples: list[dict] = []
        self.checks: list[dict] = []
        self.hourly: list[dict] = []
        self.anomalies: list[str] = []
        self.wall_seconds = 0.0
        self.redis_cpu_seconds = 0.0

    # -- time --------------------------------------------------------------------------------------

    @property
    def now(self) -> int:
        """Milliseconds since the simulated day's midnight."""
        return self.clock.now_ms - EPOCH_MS

    def at(self, when_ms: int, handler, *args) -> None:
        heapq.heappush(self.heap, (when_ms, next(self.sequence), handler, args))

    def _at_absolute(self, when_ms: int, callback) -> None:
        self.at(when_ms - EPOCH_MS, self._node_timer, callback)

    async def run(self) -> Simulation:
        self.began = began = time.perf_counter()
        with self.scheduler:
            await self.scheduler.born()
            self.clock.now_ms = EPOCH_MS + self.start_ms
            start = self.counters.snapshot()
            cpu_start = self.counters.cpu_seconds()
            if self.world.arrivals:
                self.at(self.world.arrivals[0].at_ms, self.arrive, 0)
            for job in self.world.batch_jobs:
                self.at(job.at_ms, self.submit_batch, job)
            for handler, every in ((self.sample_renewals, self.renew_sample_ms),
                                   (self.check, self.check_ms)):
                self.at(self.start_ms + every, handler, every)
            self.at(self.start_ms, self.hour_mark, HOUR_MS)  # hour marks from the start: per-hour deltas
            while self.heap:
                when, _, handler, args = heapq.heappop(self.heap)
                if when > self.stop_ms or (when >= self.end_ms and self.quiet()):
                    break
                self.clock.now_ms = max(self.clock.now_ms, EPOCH_MS + when)
                await handler(*args)
            self.clock.now_ms = max(self.clock.now_ms, EPOCH_MS + self.end_ms)
            for integral in (self.busy_slots, self.ready_slots, self.busy_memory, self.loaded_memory):
                integral.advance(self.end_ms)
            self.counters.finish(start)
            self.redis_cpu_seconds = self.counters.cpu_seconds() - cpu_start
            self.counters.close()
            for call in self.calls:
                if call.outcome is None:
                    call.outcome = "unfinished"
        self.wall_seconds = time.perf_counter() - began
        return self

    def quiet(self) -> bool:
        """After the window: nothing in flight, nothing to retry, no batch line left."""
        return not self.live and not self.retries_pending and not any(
            run.pending or run.retries or run.in_flight for runs in self.jobs.values() for run in runs)

    # -- interactive requests ------------------------------------------------------------------------

    async def arrive(self, index: int) -> None:
        arrivals = self.world.arrivals
        if index + 1 < len(arrivals):
            self.at(arrivals[index + 1].at_ms, self.arrive, index + 1)
        a = arrivals[index]
        await self.attempt(self.new_call(a.person, self.world.models[a.model].name, a.kind, a.prompt_tokens,
                                         a.completion_tokens))

    def new_call(self, person: int, model: str, kind: str, prompt: int, completion: int,
                 job: BatchRun | None = None) -> Call:
        call = Call(next(self.ids), person, model, kind, prompt, completion, self.now, job)
        self.calls.append(call)
        return call

    async def retry(self, call: Call) -> None:
        self.retries_pending -= 1
        await self.attempt(call)

    async def attempt(self, call: Call) -> bool:
        """Admission, as the web process (or the feeder) asks for it: True when admitted."""
        if call.watch is not None:
            self.watch.came_back(call.watch)
            call.watch = None
        call.attempts += 1
        ticket = f"{call.id}.{call.attempts}"
        owner = self.feeder_owner if call.batch else self.owners[(call.id + call.attempts) % len(self.owners)]
        result = await queue.admit(call.model, self.scheduler.policy(call.model), owner=owner, user=str(call.person),
                                   batch=call.batch, tickets=[ticket])
        if result.admitted:
            call.admissions += 1
            call.ticket, call.owner, call.admitted_ms = ticket, owner, self.now
            self.live[ticket] = call
            book = self.scheduler.mirror[call.model]
            book.waiting[ticket] = self.clock.now_ms
            if call.batch:
                book.batch_waiting.add(ticket)
            self.on_grants(call.model, result.granted)
            if call.granted_ms is None:
                self.at(self.now + int(settings.QUEUE_TIMEOUT_SECONDS * 1000), self.time_out, call, ticket)
            if result.waiting > 0:  # admit.lua published gh:actor:wake (every web process hears it)
                self.wake_publishes += 1
                if self.every_round:
                    self.wake_actor()  # as the real actor does; otherwise only when it has something new
            self.model_changed(call.model)
            return True
        retry_ms = result.retry_after_ms
        call.refusals.append((self.now, retry_ms))
        if call.batch:
            self.batch_refused(call, retry_ms)
            return False
        comes_back = call.attempts <= SDK_RETRIES
        call.watch = self.watch.refused(call.model, self.now, self.now + retry_ms, comes_back)
        self.model_changed(call.model)
        if comes_back:
            self.retries_pending += 1
            self.at(self.now + retry_ms, self.retry, call)
        else:
            call.outcome, call.ended_ms = "refused", self.now
        return False

    def on_grants(self, model: str, granted: dict[str, str]) -> None:
        """Slots granted by any script (admit, release, or the actor's dispatch): the call starts on its node."""
        if not granted:
            return
        book = self.scheduler.mirror[model]
        spec = self.models[model]
        for ticket, node in granted.items():
            call = self.live.get(ticket)
            if call is None or call.granted_ms is not None:
                self.anomalies.append(f"{self.now}: a grant of {ticket} ({model}) the simulation does not expect")
                continue
            book.waiting.pop(ticket, None)
            book.batch_waiting.discard(ticket)
            book.running.setdefault(node, set()).add(ticket)
            call.granted_ms, call.node = self.now, node
            self.grants += 1
            self.nodes[node].start_call(model, self.clock.now_ms)
            self.busy_slots.change(self.now, 1)
            self.busy_memory.change(self.now, spec.vram_bytes / CONCURRENCY)
            self.at(self.now + spec.service_ms(call.prompt, call.completion), self.finish, call)
        self.model_changed(model)  # grants from the actor's own dispatches change what it may act on too

    async def finish(self, call: Call) -> None:
        spec = self.models[call.model]
        self.nodes[call.node].end_call(call.model, self.clock.now_ms)
        book = self.scheduler.mirror[call.model]
        book.running[call.node].discard(call.ticket)
        duration = self.now - call.granted_ms
        book.avg_ms = duration if book.avg_ms is None else book.avg_ms * 0.8 + duration * 0.2
        self.busy_slots.change(self.now, -1)
        self.busy_memory.change(self.now, -spec.vram_bytes / CONCURRENCY)
        granted = await queue.release(call.model, self.scheduler.policy(call.model), call.ticket, duration,
                                      owner=call.owner)
        del self.live[call.ticket]
        call.outcome, call.ended_ms = "served", self.now
        self.on_grants(call.model, granted)
        self.model_changed(call.model)
        if call.batch:
            self.batch_line_ended(call)

    async def time_out(self, call: Call, ticket: str) -> None:
        """QUEUE_TIMEOUT_SECONDS in the queue: the web process answers 503 and releases the ticket."""
        if call.ticket != ticket or call.granted_ms is not None or ticket not in self.live:
            return
        book = self.scheduler.mirror[call.model]
        book.waiting.pop(ticket, None)
        book.batch_waiting.discard(ticket)
        granted = await queue.release(call.model, self.scheduler.policy(call.model), ticket, -1, owner=call.owner)
        del self.live[ticket]
        self.on_grants(call.model, granted)
        self.model_changed(call.model)
        if call.batch:
            self.batch_timed_out(call)
        else:
            call.outcome, call.ended_ms = "timed_out", self.now

    # -- the swap actor and the nodes ------------------------------------------------------------------

    def wake_actor(self, at_ms: int | None = None) -> None:
        """A round now (the actor's wake-up event), or at `at_ms`, unless one is due sooner already. A
        round planned for later is superseded (it finds `round_at` moved)."""
        when = max(self.now, at_ms or 0)
        if self.round_at is None or when < self.round_at:
            self.round_at = when
            self.at(when, self.actor_round)

    async def actor_round(self) -> None:
        if self.round_at != self.now:
            return  # superseded by an earlier round
        self.round_at = None
        actor, counts = self.scheduler.actor, self.scheduler.counts
        before = (set(actor.actions), counts["place"], self.grants)
        with self.counters.bracket("actor_round", every=8):
            await self.scheduler.actor_round()
        acted = (set(actor.actions) - before[0]) or counts["place"] != before[1] or self.grants != before[2]
        self.after_actor()
        if self.every_round or (acted and any(flags & NEEDS_A_ROUND for flags in self.flags.values())):
            self.wake_actor(self.now + self.round_ms)  # SwapActor.run_forever: the next round 0.2 s on
            return
        # A round that changed nothing changes nothing the next time either, until something happens
        # (which wakes the actor anyway) or a moment comes that the actor acts on by itself: one of its
        # timers runs out, or a node's poll finds a model Ollama has unloaded. The next round is the
        # first of the actor's 0.2 s rounds at or after that moment.
        deadline = self.next_deadline()
        if deadline is not None:
            rounds = -(-(deadline - self.now) // self.round_ms)
            self.wake_actor(self.now + max(1, rounds) * self.round_ms)

    def next_deadline(self) -> int | None:
        """The next moment a round may act with nothing else happening first: while a model waits with
        nowhere to run, SWAP_MAX_WAIT_SECONDS after its oldest request (then it may force a swap) and half
        of that after a model was loaded (SwapActor._may_force_out)."""
        if not self.any_cold():
            return None
        swap_ms = int(settings.SWAP_MAX_WAIT_SECONDS * 1000)
        moments = [next(iter(self.scheduler.mirror[m].waiting.values())) - EPOCH_MS + swap_ms
                   for m, flags in self.flags.items() if "cold" in flags]
        moments += [self.clock.day_ms_of_monotonic(since) + swap_ms // 2
                    for since in self.scheduler.actor.ready_since.values()]
        future = [m for m in moments if m > self.now]
        return min(future) if future else None

    def after_actor(self) -> None:
        """The actor's own wake-ups (a load or an unload finished) ask for the next round at once; it can
        only act on what it freed or loaded if some model is cold, saturated or drained (or every round)."""
        wake = self.scheduler.actor.wake
        if wake.is_set():
            wake.clear()
            if self.every_round or any(flags & NEEDS_A_ROUND for flags in self.flags.values()):
                self.wake_actor()

    async def _node_timer(self, callback) -> None:
        """A load or unload on a simulated node ends: the actor's task waiting on it goes on."""
        with self.counters.bracket("actor_node", every=4):
            callback()
            await self.scheduler.settle()
        self.after_actor()

    def on_place(self, model: str, node: str, old: str | None, new: str | None) -> None:
        if new is None:
            self.placed_on.get(node, set()).discard(model)
        else:
            self.placed_on.setdefault(node, set()).add(model)
        if old == "ready":
            self.ready_slots.change(self.now, -CONCURRENCY)
        if new == "ready":
            self.ready_slots.change(self.now, CONCURRENCY)
        self.model_changed(model)

    def keep_alive(self, node: SimNode, model: str, idle_since_ms: int) -> None:
        """A model went idle on a node: Ollama unloads it after OLLAMA_KEEP_ALIVE unless it is used again."""
        self.at(idle_since_ms - EPOCH_MS + KEEP_ALIVE_MS + POLL_FINDS_IT_MS, self.keep_alive_ran_out, node, model,
                idle_since_ms)

    async def keep_alive_ran_out(self, node: SimNode, model: str, idle_since_ms: int) -> None:
        """Ollama unloaded the model, and the actor's next poll of the node finds it: that poll (the real
        SwapActor._poll, with the bookkeeping of _poll_nodes), then the round it belongs to."""
        if not node.expire(model, idle_since_ms):
            return
        self.on_memory(node, model, "expired")
        view = self.scheduler.actor.views.get(node.url)
        if view is not None:
            with self.counters.bracket("actor_node", every=4):
                view.polled_at = self.clock.monotonic()
                await self.scheduler.actor._poll(view)
        self.wake_actor()

    def on_memory(self, node: SimNode, model: str, event: str) -> None:
        spec = self.models[model]
        if event == "load":
            self.loaded_memory.change(self.now, spec.vram_bytes)
        elif event in ("unload", "expired"):
            self.loaded_memory.change(self.now, -spec.vram_bytes)
        if event != "ready" and self.start_ms <= self.now < self.end_ms:
            self.swaps[((self.now - self.start_ms) // HOUR_MS, event, spec.size_class)] += 1

    # -- when the actor has something to act on ----------------------------------------------------------

    def model_changed(self, model: str) -> None:
        """After anything that changes a model's queue or placement: Retry-After's watch, and whether the
        actor now has something new to act on (a round then, as admit.lua's wake-up would start one)."""
        if self.watch.watching(model):
            self.watch.places_changed(model, self.free_places(model), self.now)
        old, new = self.flags.get(model, frozenset()), self.conditions(model)
        if new == old:
            return
        if new:
            self.flags[model] = new
        else:
            del self.flags[model]
        gained = new - old
        if gained & NEEDS_A_ROUND or any(self.frees_room(flag) for flag in gained - NEEDS_A_ROUND):
            self.wake_actor()

    def frees_room(self, flag: str) -> bool:
        """Whether a model that went quiet or idle lets a model waiting with nowhere to run be placed:
        idle on a node the waiting model is on, where unloading every idle model would make room for it
        (SwapActor._place without force); quiet, once the waiting model may force a swap. A saturated
        model with half its queue waiting may take a node idle models hold too (SwapActor._serve_demand)."""
        cold = [m for m, flags in self.flags.items() if "cold" in flags]
        spreading = [m for m, flags in self.flags.items() if "spread" in flags]
        if flag.startswith("idle:"):
            node = flag.removeprefix("idle:")
            cold += [m for m in spreading if self.scheduler.mirror[m].placement.get(node) is None]
        if not cold:
            return False
        if flag == "quiet":
            forced = self.now - int(settings.SWAP_MAX_WAIT_SECONDS * 1000)
            return any(next(iter(self.scheduler.mirror[m].waiting.values())) - EPOCH_MS <= forced for m in cold)
        node = flag.removeprefix("idle:")
        placed = self.placed_on.get(node, set())
        mirror = self.scheduler.mirror
        room = self.nodes[node].info.gpu_memory_bytes - sum(self.models[m].vram_bytes for m in placed) + sum(
            self.models[m].vram_bytes for m in placed if mirror[m].placement.get(node) == "ready"
            and not mirror[m].waiting and not mirror[m].running.get(node))
        return any(node in self.node_sets[m] and self.models[m].vram_bytes <= room for m in cold)

    def conditions(self, model: str) -> frozenset[str]:
        """What SwapActor's round acts on, for one model. cold: requests wait and it is nowhere (a load,
        maybe unloading idle models first, or after SWAP_MAX_WAIT_SECONDS busy ones); saturated: every
        ready slot busy, nothing loading, more than a node's worth waiting (it may get another node);
        spread: saturated with half its queue waiting (idle models may make room for another node);
        drained: a node drained for another model has nothing running left (it is unloaded). And what
        makes a model one the actor may unload for a cold one: quiet (nothing waiting) and idle:<node>
        (nothing running there either). In any other state a round leaves the model as it is."""
        book = self.scheduler.mirror[model]
        found = set()
        if any(p == "draining" and not book.running.get(n) for n, p in book.placement.items()):
            found.add("drained")
        ready = [n for n, p in book.placement.items() if p == "ready"]
        if book.waiting:
            if not book.placement:
                found.add("cold")
            elif ready and "loading" not in book.placement.values() and len(book.waiting) > CONCURRENCY \
                    and all(len(book.running.get(n, ())) >= CONCURRENCY for n in ready):
                found.add("saturated")
                if 2 * len(book.waiting) >= MAX_QUEUE:
                    found.add("spread")
        elif ready:
            found.add("quiet")
            found.update(f"idle:{n}" for n in ready if not book.running.get(n))
        return frozenset(found)

    def any_cold(self) -> bool:
        return any("cold" in flags for flags in self.flags.values())

    # -- Retry-After: places in a model's queue ------------------------------------------------------

    def free_places(self, model: str) -> int:
        """How many more one-call interactive requests admit.lua's bound takes now, reservations aside."""
        book = self.scheduler.mirror[model]
        ready = [n for n, p in book.placement.items() if p == "ready"]
        loading = sum(1 for p in book.placement.values() if p == "loading")
        capacity = CONCURRENCY * (len(ready) + loading) or CONCURRENCY
        running = sum(len(book.running.get(n, ())) for n in ready)
        return MAX_QUEUE + capacity - (len(book.waiting) - len(book.batch_waiting)) - running

    # -- periodic: the measurements of sampling.py -------------------------------------------------------

    def again(self, handler, every: int) -> None:
        if self.now + every <= self.stop_ms:
            self.at(self.now + every, handler, every)
