"""Simulated GPU nodes: the only part of the scheduler's world that is not Gatehouse's own code.

A `SimNode` is an Ollama server as the swap actor and the scheduler see it: models in GPU memory,
loads and unloads that take time, at most `concurrency` calls of a model at once, and Ollama's own
keep-alive timer, which unloads a model that has been idle for OLLAMA_KEEP_ALIVE (the simulation
runs that timer: `on_idle`). It also checks, at
the node, what must always hold: no model runs more calls than its slots, a call only reaches a node
where its model is ready, and the loaded models never need more memory than the node has.

`SimEngine` stands in for an engine of inference/engines/ (`loaded`, `load`, `unload`): the swap
actor's real code calls it where it would make HTTP calls to Ollama. A load or unload waits on an
asyncio future that the simulation resolves when the virtual clock reaches its end.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from inference.registry import ModelRoute, NodeInfo

UNLOAD_MS = 1000  # Ollama answers keep_alive: 0 once the runner has stopped


@dataclass
class Residency:
    """One model in a node's memory."""

    vram_bytes: int
    state: str  # loading | ready | unloading
    running: int = 0
    idle_since_ms: int = 0  # when its last call ended (Ollama's keep-alive timer starts then)


@dataclass
class SimNode:
    info: NodeInfo
    concurrency: int
    on_idle: Callable[[SimNode, str, int], None]  # (node, model, idle since): the keep-alive timer starts
    models: dict[str, Residency] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    max_running: dict[str, int] = field(default_factory=dict)  # model -> most calls at once seen here
    calls: int = 0

    @property
    def url(self) -> str:
        return self.info.url

    @property
    def used_bytes(self) -> int:
        return sum(r.vram_bytes for r in self.models.values())

    # -- calls -------------------------------------------------------------------------------------

    def start_call(self, model: str, now_ms: int) -> None:
        resident = self.models.get(model)
        if resident is None or resident.state != "ready":
            self.violations.append(f"{now_ms}: a call of {model} reached {self.url}, where it is "
                                   f"{resident.state if resident else 'not loaded'}")
            return
        resident.running += 1
        self.calls += 1
        self.max_running[model] = max(self.max_running.get(model, 0), resident.running)
        if resident.running > self.concurrency:
            self.violations.append(f"{now_ms}: {resident.running} calls of {model} at once on {self.url}")

    def end_call(self, model: str, now_ms: int) -> None:
        resident = self.models.get(model)
        if resident is None:
            self.violations.append(f"{now_ms}: a call of {model} ended on {self.url} after it was unloaded")
            return
        resident.running -= 1
        if resident.running == 0:
            resident.idle_since_ms = now_ms
            self.on_idle(self, model, now_ms)

    # -- memory --------------------------------------------------------------------------------------

    def begin_load(self, model: str, vram_bytes: int, now_ms: int) -> None:
        if model in self.models:
            self.violations.append(f"{now_ms}: {model} loaded on {self.url} while it is {self.models[model].state}")
        self.models[model] = Residency(vram_bytes, "loading", idle_since_ms=now_ms)
        if self.used_bytes > self.info.gpu_memory_bytes:
            self.violations.append(f"{now_ms}: {self.url} over-committed: {self.used_bytes} bytes of "
                                   f"{self.info.gpu_memory_bytes}")

    def end_load(self, model: str, now_ms: int) -> None:
        self.models[model].state = "ready"
        self.models[model].idle_since_ms = now_ms
        self.on_idle(self, model, now_ms)

    def begin_unload(self, model: str, now_ms: int) -> None:
        resident = self.models.get(model)
        if resident is not None and resident.running:
            self.violations.append(f"{now_ms}: {model} unloaded on {self.url} with {resident.running} calls running")
        if resident is not None:
            resident.state = "unloading"

    def end_unload(self, model: str) -> Residency | None:
        return self.models.pop(model, None)

    def expire(self, model: str, idle_since_ms: int) -> bool:
        """Ollama's keep-alive ran out: unload the model if it has been idle since then."""
        resident = self.models.get(model)
        if resident is None or resident.state != "ready" or resident.running or resident.idle_since_ms != idle_since_ms:
            return False
        del self.models[model]
        return True


class SimEngine:
    """The engine the swap actor gets for a simulated node (inference/engines/base.py's interface,
    the part the actor uses)."""

    def __init__(self, node: SimNode, vram: Callable[[str], int], load_ms: Callable[[str], int],
                 clock, schedule, on_memory) -> None:
        self.node = node
        self.vram = vram
        self.load_ms = load_ms
        self.clock = clock
        self.schedule = schedule  # (at_ms, callback) -> None: run the callback when the clock gets there
        self.on_memory = on_memory  # (node, model, event) -> None: the simulation's bookkeeping

    def can_swap(self, node: NodeInfo) -> bool:
        return True

    async def loaded(self, node: NodeInfo) -> list[dict]:
        return [{"name": m, "model": m, "size": r.vram_bytes, "size_vram": r.vram_bytes}
                for m, r in self.node.models.items() if r.state == "ready"]

    async def load(self, node: NodeInfo, route: ModelRoute) -> None:
        model = route.ollama_name
        self.node.begin_load(model, self.vram(model), self.clock.now_ms)
        self.on_memory(self.node, model, "load")
        await self._wait(self.load_ms(model))
        self.node.end_load(model, self.clock.now_ms)
        self.on_memory(self.node, model, "ready")

    async def unload(self, node: NodeInfo, name: str) -> None:
        self.node.begin_unload(name, self.clock.now_ms)
        await self._wait(UNLOAD_MS)
        if self.node.end_unload(name) is not None:
            self.on_memory(self.node, name, "unload")

    async def _wait(self, ms: int) -> None:
        done = asyncio.get_running_loop().create_future()
        self.schedule(self.clock.now_ms + ms, lambda: done.done() or done.set_result(None))
        await done
