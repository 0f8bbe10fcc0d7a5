"""Gatehouse's own scheduler code, run on a virtual clock against a real redis-server.

What is real: the Lua scripts (admit, dispatch, release, renew, place, lease_renew) loaded through
common/store/scripts.py, the key builders, inference/scheduler/queue.py's functions around them
(`admit`, `release`, `dispatch`, `renew`, `set_place`, `policy_for`, `model_states`, `note_born`), and
the swap actor (inference/scheduler/swapper.py `SwapActor`): its round, placement decisions, loads and
unloads, node polls and telemetry, unchanged.

What is replaced, and how:
- the clock: `queue.now_ms` and the swap actor's `time` read the simulation's virtual clock, so the
  scripts get virtual milliseconds in ARGV and the actor's timers (SWAP_MAX_WAIT_SECONDS, ready_since)
  run on it too;
- the transport: `InlineRedis` is an asyncio Redis client whose commands run on a synchronous
  connection, so a coroutine of the real code finishes without waiting on a socket and the virtual
  clock stands still while it runs (the commands sent are the same);
- the catalogue: `registry.all_models` / `all_nodes` return the simulated catalogue (no database);
- the nodes: `engines.for_node` returns a SimEngine (bench/scale/nodes.py) instead of HTTP to Ollama;
- the web processes: there is no Broker. The simulation calls the queue functions the Broker calls,
  and learns of grants from the scripts' replies (every script that grants returns its grants; the
  dispatches the actor makes are read through a tap on `queue.dispatch`), not from pub/sub;
- the actor's view of the queues: `queue.model_states` is answered from the simulation's own copy of
  what the scripts did (`Mirror`), since the real read is one pipeline of thousands of commands per
  round; the copy is checked against the real `model_states` every few simulated minutes, and the
  real read's Redis cost is measured then (the report adds it at the real rate). `note_born` runs
  once at the start for the same reason;
- leases: SLOT_LEASE_SECONDS is three days, because no web process dies here and renewals are sampled
  rather than run every second (their cost is measured by the simulation's samples);
- node polls: the actor polls a node when the simulation says its poll would find a model Ollama
  unloaded (NODE_PS_POLL_SECONDS is out of reach otherwise); the polls that find nothing are not run,
  and the report adds their Redis commands at the real rate (every node every 2 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import types
from dataclasses import dataclass, field
from unittest import mock

import redis
import redis.asyncio as aioredis
from django.test import override_settings

from common.store import keys
from inference import engines, registry
from inference.scheduler import nodehealth, queue, redis_epoch, swapper
from tests.support.processes import STARTING, RedisServer, eventually, port_open, spawn

EPOCH_MS = 1_767_571_200_000  # Monday 5 January 2026, 00:00 UTC: the simulated day's midnight
SETTLE_STEPS = 3  # loop turns for the actor's tasks to run up to their next wait (each step is inline)


class SimRedis(RedisServer):
    """The suite's throwaway redis-server (a free port, nothing on disk), also listening on a Unix
    socket: a script call costs the simulation about a quarter less through it than through TCP."""

    def start(self) -> None:
        self.socket = os.path.join(self.dir, "redis.sock")
        self.proc = spawn(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--unixsocket", self.socket,
             "--unixsocketperm", "700", "--save", "", "--appendonly", "no", "--dir", self.dir,
             "--maxmemory-policy", "noeviction"],
            what=f"redis-server :{self.port}")
        eventually(lambda: port_open(self.port), timeout=10, what="redis-server", proc=self.proc, ignore=STARTING)

    @property
    def socket_url(self) -> str:
        return f"unix://{self.socket}?db=0"


class VirtualClock:
    """Milliseconds since the epoch, moved only by the simulation."""

    def __init__(self, now_ms: int) -> None:
        self.now_ms = now_ms
        self.origin_ms = now_ms

    def get_ms(self) -> int:
        return self.now_ms

    def monotonic(self) -> float:
        return (self.now_ms - self.origin_ms) / 1000 + 1_000_000.0  # far from 0, as a real monotonic clock is

    def time(self) -> float:
        return self.now_ms / 1000

    def day_ms_of_monotonic(self, seconds: float) -> int:
        """A moment read from `monotonic`, in ms since the simulated day's midnight."""
        return int(self.origin_ms + (seconds - 1_000_000.0) * 1000) - EPOCH_MS


class InlinePipeline:
    """An asyncio pipeline's interface over a synchronous pipeline."""

    def __init__(self, pipe: redis.client.Pipeline) -> None:
        self._pipe = pipe

    def __getattr__(self, name: str):
        return getattr(self._pipe, name)

    async def execute(self, raise_on_error: bool = True) -> list:
        return self._pipe.execute(raise_on_error)

    async def __aenter__(self) -> InlinePipeline:
        return self

    async def __aexit__(self, *exc) -> None:
        self._pipe.reset()


class InlineRedis(aioredis.Redis):
    """An asyncio Redis client that runs each command on a synchronous connection before it returns.

    Commands are packed here rather than by redis-py, remembering the bytes of every string argument:
    each scheduler script call carries the model's whole node list, and redis-py's pure-Python packing
    of it cost the simulation more than Redis took to run the script. The bytes sent are the same."""

    def __init__(self, sync: redis.Redis) -> None:
        super().__init__(decode_responses=True)
        self.sync = sync
        self.held = sync.connection_pool.get_connection()
        self._packed: dict[str, bytes] = {}

    def _pack(self, args: tuple) -> bytes:
        if " " in args[0]:  # "SCRIPT LOAD": a command name of two words, sent as two arguments
            args = (*args[0].split(), *args[1:])
        parts = [b"*%d\r\n" % len(args)]
        for arg in args:
            if isinstance(arg, str):
                piece = self._packed.get(arg)
                if piece is None:
                    data = arg.encode()
                    piece = b"$%d\r\n%s\r\n" % (len(data), data)
                    if len(self._packed) < 200_000:
                        self._packed[arg] = piece
            else:
                data = arg if isinstance(arg, bytes) else (b"%d" % arg if isinstance(arg, int) else repr(arg).encode())
                piece = b"$%d\r\n%s\r\n" % (len(data), data)
            parts.append(piece)
        return b"".join(parts)

    async def execute_command(self, *args, **options):
        self.held.send_packed_command([self._pack(args)])
        return self.sync.parse_response(self.held, args[0], **options)

    def pipeline(self, transaction: bool = True, shard_hint=None) -> InlinePipeline:
        return InlinePipeline(self.sync.pipeline(transaction=transaction))

    def release(self) -> None:
        self.sync.connection_pool.release(self.held)


@dataclass
class Book:
    """One model's queue as the scripts' replies have shown it to the simulation."""

    waiting: dict[str, int] = field(default_factory=dict)  # ticket -> enqueued at (ms), oldest first
    batch_waiting: set[str] = field(default_factory=set)
    running: dict[str, set[str]] = field(default_factory=dict)  # node -> tickets
    placement: dict[str, str] = field(default_factory=dict)
    avg_ms: float | None = None

    def state(self, nodes: list[str], now_ms: int) -> queue.ModelState:
        oldest = next(iter(self.waiting.values()), None)
        # Running counts of the nodes where something runs: the actor only ever asks `.get(node, 0)`.
        return queue.ModelState(len(self.waiting), 0 if oldest is None else max(0, now_ms - oldest),
                                dict(self.placement), {n: len(t) for n, t in self.running.items() if t},
                                self.avg_ms)


class Mirror:
    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock
        self.books: dict[str, Book] = {}

    def __getitem__(self, model: str) -> Book:
        book = self.books.get(model)
        if book is None:
            book = self.books[model] = Book()
        return book

    async def model_states(self, models: dict[str, list[str]]) -> dict[str, queue.ModelState]:
        return {model: self[model].state(nodes, self.clock.now_ms) for model, nodes in models.items()}

    def differences(self, real: dict[str, queue.ModelState]) -> list[str]:
        """Where the copy and Redis disagree (the real ModelState read from Redis by queue.model_states)."""
        out = []
        for model, state in real.items():
            mine = self[model].state(list(state.running), self.clock.now_ms)
            state.running = {node: count for node, count in state.running.items() if count}
            for name in ("waiting", "oldest_wait_ms", "placement", "running"):
                if getattr(mine, name) != getattr(state, name):
                    out.append(f"{model} {name}: simulation {getattr(mine, name)!r}, Redis {getattr(state, name)!r}")
            if (mine.avg_service_ms is None) != (state.avg_service_ms is None) or (
                    mine.avg_service_ms is not None and abs(mine.avg_service_ms - state.avg_service_ms) > 1):
                out.append(f"{model} avg_service_ms: simulation {mine.avg_service_ms}, Redis {state.avg_service_ms}")
        return out


class Scheduler:
    """The real scheduler code with the replacements above in place (while entered)."""

    def __init__(self, redis_url: str, routes: list, nodes: list, sim_engines: dict, clock: VirtualClock,
                 on_grants, on_place) -> None:
        self.sync = redis.Redis.from_url(redis_url, decode_responses=True)
        self.client = InlineRedis(self.sync)
        self.routes = sorted(routes, key=lambda r: r.public_id)
        self.by_name = {r.ollama_name: r for r in routes}
        self.nodes = nodes
        self.sim_engines = sim_engines
        self.clock = clock
        self.mirror = Mirror(clock)
        self.on_grants = on_grants  # (model, {ticket: node}) -> None
        self.on_place = on_place  # (model, node, old state or None, new state or None) -> None
        self.real_model_states = queue.model_states
        self.real_note_born = queue.note_born
        self.counts = {"dispatch": 0, "place": 0}
        self.placements: list[tuple] = []  # (ms, model, node, models unloaded for it, forced)
        self._stack = contextlib.ExitStack()
        self.actor: swapper.SwapActor | None = None

    def __enter__(self) -> Scheduler:
        real_dispatch, real_set_place = queue.dispatch, queue.set_place

        async def dispatch(model, policy, client=None):
            self.counts["dispatch"] += 1
            granted = await real_dispatch(model, policy, client)
            self.on_grants(model, granted)
            return granted

        async def set_place(model, node, state, client=None, load_ms=-1):
            self.counts["place"] += 1
            done = await real_set_place(model, node, state, client, load_ms)
            book = self.mirror[model]
            old = book.placement.get(node)
            if state == "gone":
                book.placement.pop(node, None)
            else:
                book.placement[node] = "draining" if state == "unloading" and not done else state
            self.on_place(model, node, old, book.placement.get(node))
            return done

        async def all_models():
            return self.routes

        async def all_nodes():
            return self.nodes

        async def note_born(models):
            return None

        def for_node(info):
            return self.sim_engines[info.url]

        clock_module = types.SimpleNamespace(monotonic=self.clock.monotonic, time=self.clock.time)
        patches = [
            mock.patch.object(queue, "redis_client", lambda: self.client),
            mock.patch.object(swapper, "redis_client", lambda: self.client),
            mock.patch.object(nodehealth, "redis_client", lambda: self.client),
            mock.patch.object(queue, "now_ms", self.clock.get_ms),
            mock.patch.object(swapper, "time", clock_module),
            mock.patch.object(queue, "dispatch", dispatch),
            mock.patch.object(queue, "set_place", set_place),
            mock.patch.object(queue, "model_states", self.mirror.model_states),
            mock.patch.object(queue, "note_born", note_born),
            mock.patch.object(registry, "all_models", all_models),
            mock.patch.object(registry, "all_nodes", all_nodes),
            mock.patch.object(engines, "for_node", for_node),
            # A Redis this process saw earlier (the test suite's) must not hold grants on the virtual clock.
            mock.patch.object(redis_epoch, "_current", None),
            mock.patch.object(nodehealth, "_down", set()),
            # Rounds poll no node by themselves: the polls that find something are the simulation's
            # (bench/scale/driver.py keep_alive_ran_out); the rest change nothing and are counted apart.
            override_settings(SLOT_LEASE_SECONDS=86_400.0 * 3, NODE_PS_POLL_SECONDS=1e9),
        ]
        for patch in patches:
            self._stack.enter_context(patch)
        logger = logging.getLogger("inference")
        self._stack.callback(logger.setLevel, logger.level)
        logger.setLevel(logging.WARNING)  # a swap is logged at INFO: thousands of them here
        self.actor = swapper.SwapActor("gh-sim-actor", asyncio.Event(), asyncio.Event())
        self._stack.enter_context(mock.patch.object(self.actor, "_place", self._watched_place(self.actor._place)))
        return self

    def _watched_place(self, place):
        """SwapActor._place as it is, noting what it started: a load, or unloads to make room (read only)."""
        def watched(route, url, states, routes, usable, claimed, *, force):
            before = set(self.actor.actions)
            done = place(route, url, states, routes, usable, claimed, force=force)
            started = set(self.actor.actions) - before
            if done and started:
                victims = sorted(model for model, _ in started if model != route.ollama_name)
                self.placements.append((self.clock.now_ms, route.ollama_name, url, victims, force))
            return done
        return watched

    def __exit__(self, *exc) -> None:
        self._stack.close()
        self.client.release()
        self.sync.close()

    def policy(self, model: str) -> queue.Policy:
        return queue.policy_for(self.by_name[model])

    async def born(self) -> None:
        """What the actor's first rounds do for every model: start its restart hold, long before the
        first request (the simulation starts its clock well before the window)."""
        await self.real_note_born([r.ollama_name for r in self.routes])

    async def actor_round(self) -> None:
        """One iteration of SwapActor.run_forever: renew the leader lease, then a round if leader."""
        actor = self.actor
        actor.leader = bool(await actor._renew(keys=[keys.LEADER], args=[actor.owner, swapper.LEASE_MS]))
        if actor.leader:
            await actor.round()
        await self.settle()

    async def settle(self) -> None:
        """Let the actor's load and unload tasks run up to their next wait on a node (inline steps)."""
        for _ in range(SETTLE_STEPS):
            await asyncio.sleep(0)

    async def read_real_states(self) -> dict[str, queue.ModelState]:
        return await self.real_model_states({r.ollama_name: list(r.node_urls) for r in self.routes})
