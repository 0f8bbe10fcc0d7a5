"""The swap actor: decides which models are loaded on which node, and when to swap.

It runs in every web process, but only the process holding a short Redis lease (`gh:actor:leader`,
`SET NX PX`, renewed each round) acts, so decisions come from one place at a time; if that process
dies another takes over within the lease time. Each round (a fraction of a second, or at once when
an admission finds its model not loaded) it:

1. reads every node's `/api/ps` now and then: a node that does not answer is taken out, one that
   answers again comes back, and the loaded models and their memory are recorded;
2. reconciles the placements with what the nodes report (a model Ollama unloaded on its own);
3. unloads drained models whose last running request finished;
4. loads models that have waiting requests: on a node where the model fits the memory budget and
   the node's model-count limit, else by unloading idle models (a model larger than a whole budget loads alone on a node), else (once the oldest request has waited SWAP_MAX_WAIT_SECONDS)
   by draining a busy model: it gets no new requests there, and is unloaded when its running ones
   end (its own waiting requests look for another node meanwhile).
   A model's larger-context variant and the model itself share weights, and Ollama runs one of them
   per node, so loading one first unloads the other (idle, or drained once forced).
   A model that is ready but busy gets a second node when its queue builds up and one has room;
5. keeps pinned models loaded;
6. runs a dispatch for every model with waiting requests (which also reaps expired leases).

Loads and unloads are explicit (an empty request with the model's num_ctx and keep_alive; then
`keep_alive: 0`), so Ollama never has to choose what to evict. A model is "ready" on a node only
once its preload answered, because since Ollama 0.30 requests for a model that is still loading
would wait in Ollama's own queue, out of our sight.

Every node kind goes through its engine (inference/engines/): Ollama and llama-server's router mode
load and unload; other OpenAI-compatible servers report every model they list as loaded, so their
models are adopted as ready and never swapped (their nodes have no memory budget).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass, field

from django.conf import settings

from common.store import keys, scripts
from common.store.client import REDIS_ERRORS, redis_client
from inference import engines, registry
from inference.accounting import telemetry
from inference.engines import NodeFailure
from inference.engines.base import LoadRefused
from inference.registry import ModelRoute, NodeInfo
from inference.scheduler import nodehealth, queue
from inference.scheduler.queue import policy_for

log = logging.getLogger(__name__)

LEASE_MS = 3000
ROUND_SECONDS = 0.2
LOAD_RETRY_SECONDS = 10.0  # after a failed load, wait this long before trying that model there again
KV_BYTES_PER_TOKEN_GUESS = 131072  # before a model was measured: weights + num_ctx x slots x this


@dataclass
class NodeView:
    info: NodeInfo
    loaded: dict[str, int] = field(default_factory=dict)  # ollama name -> size_vram, from /api/ps
    polled_at: float = 0.0
    answered: bool = False


class SwapActor:
    def __init__(self, owner: str, wake: asyncio.Event, connected: asyncio.Event) -> None:
        self.owner = owner
        self.wake = wake
        self.connected = connected  # the broker has seen this Redis (its restart hold is known)
        self.views: dict[str, NodeView] = {}
        self.actions: dict[tuple[str, str], asyncio.Task] = {}  # (model, node) -> load/unload under way
        self.ready_since: dict[tuple[str, str], float] = {}
        self.failed_at: dict[tuple[str, str], float] = {}
        self.sizes: dict[str, int] = {}
        self.leader = False
        self._renew = scripts.get(redis_client(), "lease_renew")

    async def run_forever(self) -> None:
        await self.connected.wait()
        while True:
            try:
                self.leader = bool(await self._renew(keys=[keys.LEADER], args=[self.owner, LEASE_MS]))
                if self.leader:
                    await self.round()
            except asyncio.CancelledError:
                raise
            except REDIS_ERRORS as exc:
                log.warning("swap actor: Redis unavailable (%s)", exc)
                await asyncio.sleep(1)
            except Exception:  # noqa: BLE001 - one bad round must not stop scheduling for good
                log.exception("swap actor round failed")
                await asyncio.sleep(1)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(ROUND_SECONDS if self.leader else LEASE_MS / 3000):
                    await self.wake.wait()
            self.wake.clear()

    # -- one round -------------------------------------------------------------------------------

    async def round(self) -> None:
        routes = await registry.all_models()
        infos = await registry.all_nodes()
        await queue.note_born([route.ollama_name for route in routes])
        await self._poll_nodes(infos)
        usable = {url for url, view in self.views.items() if view.info.enabled and not nodehealth.is_down(url)}
        states = await queue.model_states({route.ollama_name: list(route.node_urls) for route in routes})
        claimed: set[str] = set()  # nodes already given a load or unload this round
        for route in routes:
            await self._reconcile(route, states[route.ollama_name])
        for route in routes:
            self._finish_drains(route, states[route.ollama_name], claimed)
        for route in routes:
            if route.pinned:
                for url in route.node_urls:
                    if url in usable and url not in states[route.ollama_name].placement:
                        self._place(route, url, states, routes, usable, claimed, force=True)
        waiting = sorted((r for r in routes if states[r.ollama_name].waiting), key=lambda r: -states[r.ollama_name].oldest_wait_ms)
        for route in waiting:
            self._serve_demand(route, states, routes, usable, claimed)
            await queue.dispatch(route.ollama_name, policy_for(route))

    async def _poll_nodes(self, infos: list[NodeInfo]) -> None:
        now = time.monotonic()
        due = []
        for info in infos:
            view = self.views.setdefault(info.url, NodeView(info))
            view.info = info
            if now - view.polled_at >= settings.NODE_PS_POLL_SECONDS:
                view.polled_at = now
                due.append(view)
        for url in set(self.views) - {info.url for info in infos}:
            del self.views[url]
        await asyncio.gather(*(self._poll(view) for view in due))

    async def _poll(self, view: NodeView) -> None:
        url = view.info.url
        try:
            async with asyncio.timeout(max(1.0, settings.NODE_PS_POLL_SECONDS)):
                models = await engines.for_node(view.info).loaded(view.info)
        except (NodeFailure, TimeoutError) as exc:
            view.answered = False
            if not nodehealth.is_down(url):
                await nodehealth.mark_down(url, f"/api/ps failed: {type(exc).__name__}: {exc}")
            return
        view.answered = True
        view.loaded = {m["name"]: m["size_vram"] or m["size"] for m in models}
        for name, size in view.loaded.items():
            self.sizes[name] = size
        client = redis_client()
        async with client.pipeline(transaction=False) as pipe:
            pipe.hset(keys.NODES_PS, url, json.dumps({"at": time.time(), "models": models}))
            if view.loaded:
                pipe.hset(keys.MODEL_SIZES, mapping=view.loaded)
            await pipe.execute()
        await nodehealth.mark_up(url)

    async def _reconcile(self, route: ModelRoute, state: queue.ModelState) -> None:
        model = route.ollama_name
        for url, place in list(state.placement.items()):
            view = self.views.get(url)
            busy = (model, url) in self.actions
            if view is None or nodehealth.is_down(url) or url not in route.node_urls:
                if not busy:
                    await queue.set_place(model, url, "gone")
                    state.placement.pop(url, None)
                continue
            if place == "ready" and not busy and view.answered and model not in view.loaded:
                # Ollama no longer has it (its idle timer, a crash): only trust a poll made after it was ready.
                if view.polled_at > self.ready_since.get((model, url), 0) + 0.5:
                    await queue.set_place(model, url, "gone")
                    state.placement.pop(url, None)
        for url, view in self.views.items():
            if model in view.loaded and url not in state.placement and url in route.node_urls \
                    and (model, url) not in self.actions and not nodehealth.is_down(url):
                # Loaded before we knew (a restart of Gatehouse): adopt it.
                await queue.set_place(model, url, "ready")
                self.ready_since[(model, url)] = time.monotonic()
                state.placement[url] = "ready"

    def _finish_drains(self, route: ModelRoute, state: queue.ModelState, claimed: set[str]) -> None:
        for url, place in state.placement.items():
            if place == "draining" and state.running.get(url, 0) == 0 and (route.ollama_name, url) not in self.actions:
                claimed.add(url)
                self._start(route, url, self._unload(route, url))

    # -- placement decisions ------------------------------------------------------------------------

    def _size(self, route: ModelRoute) -> int:
        measured = self.sizes.get(route.ollama_name)
        if measured:
            return measured
        slots = 1 if route.kind == "embedding" else route.concurrency
        return route.size_bytes + route.context_length * slots * KV_BYTES_PER_TOKEN_GUESS

    def _free_memory(self, url: str, states: dict[str, queue.ModelState], routes: list[ModelRoute]) -> float:
        budget = self.views[url].info.gpu_memory_bytes
        if budget <= 0:
            return float("inf")
        used = sum(self._size(r) for r in routes if url in states[r.ollama_name].placement)
        return budget - used

    def _over_count(self, url: str, states, routes: list[ModelRoute], leaving: int) -> int:
        """How many more models must leave `url`, beyond `leaving`, before one more may load there. The
        server's own limit (OLLAMA_MAX_LOADED_MODELS) is never exceeded by Gatehouse's loads, so the
        server never picks a victim itself (one it picks while busy and we keep busy is never unloaded,
        and every load there hangs behind it: ollama/ollama#17408). Models on their way on or off the
        node count too."""
        limit = self.views[url].info.max_loaded_models
        if limit <= 0:
            return 0
        on_node = sum(1 for r in routes if url in states[r.ollama_name].placement)
        return max(0, on_node - leaving + 1 - limit)

    def _fits(self, route: ModelRoute, url: str, states, routes: list[ModelRoute]) -> bool:
        """Whether `route` loads on `url` as things are: its memory is free and the server holds fewer
        models than its limit."""
        return self._free_memory(url, states, routes) >= self._size(route) and not self._over_count(url, states, routes, 0)

    def _serve_demand(self, route: ModelRoute, states, routes, usable: set[str], claimed: set[str]) -> None:
        state = states[route.ollama_name]
        placed = {url: p for url, p in state.placement.items() if url in usable}
        if "loading" in placed.values():
            return
        ready = [url for url, p in placed.items() if p == "ready"]
        if ready:
            free = sum(route.concurrency - state.running.get(url, 0) for url in ready)
            if free > 0 or state.waiting <= route.concurrency:
                return
            # The queue builds up on busy nodes: add a node that has room without evicting anything.
            spare = [url for url in route.node_urls if url in usable and url not in placed and url not in claimed]
            for url in spare:
                if self._fits(route, url, states, routes):
                    self._place(route, url, states, routes, usable, claimed, force=False)
                    return
            # Half its queue full (a class sending at once, say): idle models make room for it too,
            # before the queue overflows into 503s.
            if state.waiting * 2 >= route.max_queue:
                for url in spare:
                    if self._place(route, url, states, routes, usable, claimed, force=False):
                        return
            return
        # Draining or unloading where it is: its waiting requests look for another node meanwhile. A drain
        # lasts as long as the longest call running there, a stream of many minutes, say, and waiting it
        # out would hold them past SWAP_MAX_WAIT_SECONDS and into their queue timeout.
        forced = state.oldest_wait_ms >= settings.SWAP_MAX_WAIT_SECONDS * 1000
        candidates = [url for url in route.node_urls if url in usable and url not in claimed and url not in placed]
        for url in candidates:  # a node where it fits as things are
            if self._fits(route, url, states, routes) \
                    and self._place(route, url, states, routes, usable, claimed, force=False):
                return
        for url in candidates:  # a node where unloading idle models makes room
            if self._place(route, url, states, routes, usable, claimed, force=False):
                return
        if forced:
            for url in candidates:
                if self._place(route, url, states, routes, usable, claimed, force=True):
                    return

    def _place(self, route: ModelRoute, url: str, states, routes, usable, claimed: set[str], *, force: bool) -> bool:
        """Load `route` on `url`, first unloading what must go. Without `force` only idle models go;
        with it, busy ones are drained (never while requests run on them). Pinned models never go.
        A model on the same weights (a variant and its base) must always go: Ollama runs one of them."""
        victims = self._same_weights_victims(route, url, states, routes, force=force)
        if victims is None:
            return False
        need = self._size(route) - self._free_memory(url, states, routes) - sum(self._size(v) for v in victims)
        over = self._over_count(url, states, routes, len(victims))
        if need > 0 or over > 0:
            others = [r for r in routes if r is not route and states[r.ollama_name].placement.get(url) == "ready"
                      and not r.pinned and r not in victims]
            idle = [r for r in others if not states[r.ollama_name].running.get(url)
                    and not states[r.ollama_name].waiting]
            busy = [r for r in others if r not in idle and self._may_force_out(r, url, states)] if force else []
            # Idle models first, then the busy model with the least waiting work; largest first within each.
            order = sorted(idle, key=lambda r: -self._size(r)) + sorted(
                busy, key=lambda r: (states[r.ollama_name].waiting, -self._size(r)))
            for victim in order:
                if need <= 0 and over <= 0:
                    break
                victims.append(victim)
                need -= self._size(victim)
                over -= 1
            if over > 0 or (need > 0 and not self._alone_after(route, url, states, routes, victims)):
                return False
        claimed.add(url)
        if victims:
            for victim in victims:
                log.info("swap on %s: unloading %s to make room for %s", url, victim.public_id, route.public_id)
                self._start(victim, url, self._unload(victim, url))
                states[victim.ollama_name].placement[url] = "unloading"
            return True  # load once the room is there (a later round)
        states[route.ollama_name].placement[url] = "loading"
        self._start(route, url, self._load(route, url))
        return True

    def _alone_after(self, route: ModelRoute, url: str, states, routes, victims: list[ModelRoute]) -> bool:
        """Whether `route` would be the only model on `url` once `victims` are gone. A model larger than a
        node's whole budget (a long-context variant with many slots, say) still loads there alone, as
        Ollama then keeps part of it in system memory: slower, but served, rather than waiting forever."""
        return all(r is route or r in victims or url not in states[r.ollama_name].placement for r in routes)

    def _same_weights_victims(self, route: ModelRoute, url: str, states, routes, *, force: bool) -> list[ModelRoute] | None:
        """The models on `route`'s weights placed on `url`, which must be unloaded first; None while one
        of them cannot go yet (loading or unloading, pinned, or busy without `force`)."""
        victims = []
        for other in routes:
            if not other.shares_weights_with(route) or url not in states[other.ollama_name].placement:
                continue
            state = states[other.ollama_name]
            idle = not state.running.get(url) and not state.waiting
            if state.placement[url] != "ready" or other.pinned or not (
                    idle or (force and self._may_force_out(other, url, states))):
                return None
            victims.append(other)
        return victims

    def _may_force_out(self, route: ModelRoute, url: str, states) -> bool:
        # A model just loaded keeps its node for a while, so two busy models cannot thrash.
        since = self.ready_since.get((route.ollama_name, url), 0.0)
        return time.monotonic() - since >= settings.SWAP_MAX_WAIT_SECONDS / 2 or not states[route.ollama_name].waiting

    # -- actions -----------------------------------------------------------------------------------

    def _start(self, route: ModelRoute, url: str, coro) -> None:
        key = (route.ollama_name, url)
        task = asyncio.get_running_loop().create_task(coro)
        self.actions[key] = task
        task.add_done_callback(lambda _t, key=key: self.actions.pop(key, None))

    async def _load(self, route: ModelRoute, url: str) -> None:
        model = route.ollama_name
        if time.monotonic() - self.failed_at.get((model, url), -1e9) < LOAD_RETRY_SECONDS:
            return
        await queue.set_place(model, url, "loading")
        started = time.monotonic()
        try:
            await engines.for_node(self.views[url].info).load(self.views[url].info, route)
        except (NodeFailure, LoadRefused, TimeoutError) as exc:
            log.warning("loading %s on %s failed: %s", model, url, exc)
            self.failed_at[(model, url)] = time.monotonic()
            await queue.set_place(model, url, "gone")
            if isinstance(exc, NodeFailure):
                await nodehealth.mark_down(url, f"load failed: {exc}")
            elif isinstance(exc, LoadRefused):  # the model itself cannot load: tell its waiters
                failure = {"model": model, "status": exc.status, "error": exc.text}
                await redis_client().publish(keys.LOAD_FAILED_CHANNEL, json.dumps(failure))
            return
        log.info("loaded %s on %s in %.1f s", model, url, time.monotonic() - started)
        with contextlib.suppress(*REDIS_ERRORS):
            await telemetry.add_swap(redis_client(), "load", model, url, time.monotonic() - started)
        self.ready_since[(model, url)] = time.monotonic()
        await queue.set_place(model, url, "ready", load_ms=int((time.monotonic() - started) * 1000))
        self.views[url].polled_at = 0  # measure its memory soon
        await queue.dispatch(model, policy_for(route))
        self.wake.set()

    async def _unload(self, route: ModelRoute, url: str) -> None:
        model = route.ollama_name
        if not await queue.set_place(model, url, "unloading"):
            return  # requests run there: it drains, and a later round unloads it
        try:
            await engines.for_node(self.views[url].info).unload(self.views[url].info, model)
        except (NodeFailure, LoadRefused, TimeoutError) as exc:
            log.warning("unloading %s on %s failed: %s", model, url, exc)
        else:
            with contextlib.suppress(*REDIS_ERRORS):
                await telemetry.add_swap(redis_client(), "unload", model, url)
        await queue.set_place(model, url, "gone")
        self.views[url].loaded.pop(model, None)
        self.ready_since.pop((model, url), None)
        self.wake.set()
