"""The simulated world: a fleet of nodes, a catalogue of models, people, and a day of their requests.

Everything here is generated from one seed with numpy's PCG64, so a run is repeatable; nothing here
talks to Redis. The day is always generated whole and a shorter run (`hours`) takes a window of it,
so a quick run sees the same requests as the same hours of the full one.

Sizes are GiB of GPU memory. A model's footprint is its weights plus the KV cache of its slots, which
is exactly the swap actor's first guess for a model it has not measured yet
(`swapper.KV_BYTES_PER_TOKEN_GUESS`), so the simulated nodes and the actor agree on sizes from the
start (and the nodes report the same figure in /api/ps).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from inference.registry import ModelRoute, NodeInfo
from inference.scheduler.swapper import KV_BYTES_PER_TOKEN_GUESS

GIB = 1 << 30
DAY_MS = 86_400_000
CONTEXT_LENGTH = 4096
CONCURRENCY = 4  # the default DEFAULT_MODEL_CONCURRENCY: slots per node where a model is ready
MAX_QUEUE = 64  # the default DEFAULT_MAX_QUEUE
NODE_MEMORY_PATTERN_GIB = (24, 48, 24, 48, 80)  # 40 % 24 GiB, 40 % 48 GiB, 20 % 80 GiB
SIZE_CLASSES = (("<= 8 GiB", 8), ("8-24 GiB", 24), ("24-48 GiB", 48), ("> 48 GiB", math.inf))
KINDS = ("chat", "long", "fanout", "burst", "batch")  # what a request is, for the report


@dataclass(frozen=True)
class Spec:
    """What to simulate. `full()` is the issue's: 100 nodes, 200 models, 5,000 people, a day."""

    nodes: int = 100
    models: int = 200
    people: int = 5000
    interactive_per_day: int = 250_000  # chat, long streams, fan-outs and bursts together
    batch_people: int = 150
    hours: float = 24.0
    start_hour: float = 0.0
    web_processes: int = 8
    zipf_exponent: float = 1.1
    seed: int = 18

    @classmethod
    def full(cls) -> Spec:
        return cls()

    def scaled(self, factor: float) -> Spec:
        """The same world with `factor` of the nodes, models, people and requests."""
        return dataclasses.replace(
            self, nodes=max(3, round(self.nodes * factor)), models=max(4, round(self.models * factor)),
            people=max(20, round(self.people * factor)),
            interactive_per_day=max(200, round(self.interactive_per_day * factor)),
            batch_people=max(1, round(self.batch_people * factor)))


@dataclass(frozen=True)
class ModelSpec:
    route: ModelRoute
    rank: int  # 0 = the most popular
    share: float  # of all requests, by popularity
    vram_bytes: int
    decode_tokens_per_s: float  # one stream's speed
    load_ms: int

    @property
    def name(self) -> str:
        return self.route.ollama_name

    @property
    def size_class(self) -> str:
        return size_class(self.vram_bytes)

    def service_ms(self, prompt_tokens: int, completion_tokens: int) -> int:
        """One call: prompt processing at forty times the decode speed, then the answer token by token."""
        prefill_s = 0.15 + prompt_tokens / (40 * self.decode_tokens_per_s)
        return int(1000 * (prefill_s + completion_tokens / self.decode_tokens_per_s))


def size_class(vram_bytes: int) -> str:
    gib = vram_bytes / GIB
    return next(name for name, upper in SIZE_CLASSES if gib <= upper)


@dataclass
class Arrival:
    """One interactive request, as its client sends it the first time."""

    at_ms: int
    person: int
    model: int
    prompt_tokens: int
    completion_tokens: int
    kind: str


@dataclass
class BatchJob:
    at_ms: int
    person: int
    model: int
    lines: list[tuple[int, int]]  # (prompt tokens, completion tokens) of each line


@dataclass
class World:
    spec: Spec
    nodes: list[NodeInfo]
    models: list[ModelSpec]
    person_weight: np.ndarray  # how active each person is (relative)
    arrivals: list[Arrival]  # sorted by time, inside the simulated window
    batch_jobs: list[BatchJob]  # sorted by time, inside the simulated window
    start_ms: int  # the window, in ms since midnight of the simulated day
    end_ms: int


def build(spec: Spec) -> World:
    rng = np.random.default_rng(np.random.PCG64(spec.seed))
    nodes = _nodes(spec)
    models = _models(spec, rng, nodes)
    weight = rng.lognormal(0.0, 1.4, spec.people)
    favourites = _favourites(spec, rng, models)
    arrivals = _chat(spec, rng, models, weight, favourites) + _fanouts(spec, rng, weight, favourites) \
        + _bursts(spec, rng, models)
    jobs = _batch_jobs(spec, rng, models, weight)
    start = int(spec.start_hour * 3_600_000)
    end = min(DAY_MS, start + int(spec.hours * 3_600_000))
    arrivals = sorted((a for a in arrivals if start <= a.at_ms < end), key=lambda a: (a.at_ms, a.person))
    jobs = sorted((j for j in jobs if start <= j.at_ms < end), key=lambda j: (j.at_ms, j.person))
    return World(spec, nodes, models, weight, arrivals, jobs, start, end)


# -- the fleet and the catalogue ------------------------------------------------------------------

def _nodes(spec: Spec) -> list[NodeInfo]:
    return [NodeInfo(url=f"http://node-{i:03d}:11434", gpu_memory_bytes=NODE_MEMORY_PATTERN_GIB[i % 5] * GIB,
                     enabled=True, kind="ollama") for i in range(spec.nodes)]


def _weights_gib(rng: np.random.Generator) -> float:
    """Quantised weights: many small models, fewer large ones, a handful of 70B-class ones."""
    low, high = [(1.0, 8.0), (8.0, 22.0), (22.0, 44.0), (44.0, 72.0)][rng.choice(4, p=[0.45, 0.30, 0.17, 0.08])]
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def _models(spec: Spec, rng: np.random.Generator, nodes: list[NodeInfo]) -> list[ModelSpec]:
    ranks = np.arange(1, spec.models + 1, dtype=float)
    shares = ranks ** -spec.zipf_exponent
    shares /= shares.sum()
    kv_bytes = CONTEXT_LENGTH * CONCURRENCY * KV_BYTES_PER_TOKEN_GUESS
    models = []
    for rank in range(spec.models):
        largest = max(n.gpu_memory_bytes for n in nodes)
        weights = min(int(_weights_gib(rng) * GIB), int(largest * 0.95) - kv_bytes)  # a small fleet: what fits
        vram = weights + kv_bytes
        fits = [n.url for n in nodes if n.gpu_memory_bytes >= vram]
        # Each node's disk holds part of the catalogue: the most requested models are pulled on every node
        # they fit on, the long tail on a few (at least 8, or all it fits on).
        wanted = min(len(fits), max(8, math.ceil(len(fits) * min(1.0, 40 * shares[rank]))))
        chosen = sorted(rng.choice(fits, size=wanted, replace=False).tolist()) if fits else []
        name = f"sim-{rank:03d}:latest"
        route = ModelRoute(public_id=name, ollama_name=name, kind="chat", capabilities=("completion",),
                           context_length=CONTEXT_LENGTH, concurrency=CONCURRENCY, max_queue=MAX_QUEUE,
                           created=0, node_urls=tuple(chosen), size_bytes=weights, weights=name)
        gib = vram / GIB
        models.append(ModelSpec(route=route, rank=rank, share=float(shares[rank]), vram_bytes=vram,
                                decode_tokens_per_s=2000.0 / (gib + 15.0),  # ~115 tok/s at 2 GiB, ~22 at 75
                                load_ms=int(1500 + gib / 1.5 * 1000)))  # 1.5 GiB/s from local disk
    return models


# -- people and their requests --------------------------------------------------------------------

def _diurnal(hours: np.ndarray) -> np.ndarray:
    """Requests per hour of the day (relative): a morning and an afternoon peak, a quiet night."""
    def bump(mean: float, width: float) -> np.ndarray:
        return np.exp(-0.5 * ((hours - mean) / width) ** 2)
    return 0.08 + 1.0 * bump(10.5, 1.6) + 0.9 * bump(15.0, 1.9) + 0.25 * bump(21.0, 1.5)


def _times(rng: np.random.Generator, count: int, lo_hour: float = 0.0, hi_hour: float = 24.0) -> np.ndarray:
    """`count` moments of the day (ms) drawn from the diurnal curve, between the two hours."""
    grid = np.linspace(lo_hour, hi_hour, 2001)
    cdf = np.cumsum(_diurnal(grid))
    cdf /= cdf[-1]
    hours = np.interp(rng.random(count), cdf, grid)
    return (hours * 3_600_000).astype(np.int64)


def _zipf_pick(rng: np.random.Generator, models: list[ModelSpec], count: int) -> np.ndarray:
    return rng.choice(len(models), size=count, p=np.array([m.share for m in models]))


def _favourites(spec: Spec, rng: np.random.Generator, models: list[ModelSpec]) -> np.ndarray:
    """Three favourite models per person, by popularity: most of what a person sends goes to them."""
    return _zipf_pick(rng, models, spec.people * 3).reshape(spec.people, 3)


def _tokens(rng: np.random.Generator, median: float, sigma: float, low: int, high: int, count: int) -> np.ndarray:
    return np.clip(rng.lognormal(math.log(median), sigma, count), low, high).astype(np.int64)


def _chat(spec, rng, models, weight, favourites) -> list[Arrival]:
    """85 % of interactive requests: sessions of a few requests (six on average, 45 s apart) a person
    sends while they work, answers of 700 tokens at the median (reasoning, code); 2 % of them are long
    streams (an agent or a long reasoning answer: 2 to 15 minutes). Three in four go to the person's
    favourite models."""
    total = int(spec.interactive_per_day * 0.85)
    person = np.repeat(np.arange(spec.people), rng.multinomial(total, weight / weight.sum()))
    first_of_person = np.r_[True, person[1:] != person[:-1]]
    new_session = first_of_person | (rng.random(total) < 1 / 6)
    session = np.cumsum(new_session) - 1
    session_start = _times(rng, int(new_session.sum()))
    think = rng.exponential(45_000, total).astype(np.int64)
    # Time since the start of its session: the think times so far, restarting at each session.
    since = np.cumsum(think)
    since -= np.maximum.accumulate(np.where(new_session, since - think, 0))
    at = (session_start[session] + since) % DAY_MS
    favourite = favourites[person, rng.choice(3, size=total, p=[0.6, 0.3, 0.1])]
    model = np.where(rng.random(total) < 0.75, favourite, _zipf_pick(rng, models, total))
    long = rng.random(total) < 0.02
    speed = np.array([m.decode_tokens_per_s for m in models])[model]
    completion = np.where(long, (rng.uniform(120, 900, total) * speed).astype(np.int64),
                          _tokens(rng, 700, 0.8, 10, 6000, total))
    prompt = _tokens(rng, 900, 1.0, 20, 30_000, total)
    return [Arrival(int(at[i]), int(person[i]), int(model[i]), int(prompt[i]), int(completion[i]),
                    "long" if long[i] else "chat") for i in range(total)]


def _fanouts(spec, rng, weight, favourites) -> list[Arrival]:
    """10 %: scripts and agents of the heaviest 5 % of people sending 20-60 requests at once to one model."""
    heavy = np.argsort(weight)[-max(1, spec.people // 20):]
    out: list[Arrival] = []
    budget = int(spec.interactive_per_day * 0.10)
    while len(out) < budget:
        person = int(rng.choice(heavy))
        model = int(favourites[person][0])
        at = int(_times(rng, 1)[0])
        count = int(rng.integers(20, 61))
        prompt, completion = _tokens(rng, 1500, 0.8, 50, 30_000, count), _tokens(rng, 500, 0.8, 10, 6000, count)
        for i, offset in enumerate(rng.integers(0, 2000, count)):
            out.append(Arrival(at + int(offset), person, model, int(prompt[i]), int(completion[i]), "fanout"))
    return out[:budget]


def _bursts(spec, rng, models) -> list[Arrival]:
    """5 %: a class or a workshop: 50-400 people send one to three requests to one popular model within
    a minute, in working hours."""
    out: list[Arrival] = []
    budget = int(spec.interactive_per_day * 0.05)
    top = max(1, min(len(models), 30))
    while len(out) < budget:
        model = int(rng.integers(0, top))
        at = int(_times(rng, 1, 9.0, 17.0)[0])
        cohort = rng.choice(spec.people, size=min(spec.people, int(rng.integers(50, 401))), replace=False)
        senders = np.repeat(cohort, rng.integers(1, 4, cohort.size))
        offsets = rng.integers(0, 60_000, senders.size)
        prompt, completion = _tokens(rng, 600, 0.7, 20, 8000, senders.size), _tokens(rng, 500, 0.7, 10, 4000, senders.size)
        out.extend(Arrival(at + int(offsets[i]), int(senders[i]), model, int(prompt[i]), int(completion[i]), "burst")
                   for i in range(senders.size))
    return out[:budget]


def _batch_jobs(spec, rng, models, weight) -> list[BatchJob]:
    """Batch API users (3 % of people, the more active more likely): about 1.3 jobs each a day, of a
    few hundred lines (up to 5,000), sent at any hour."""
    chosen = rng.choice(spec.people, size=min(spec.people, spec.batch_people), replace=False,
                        p=weight / weight.sum())
    jobs = []
    for person in chosen:
        for _ in range(max(1, int(rng.poisson(1.3)))):
            lines = int(_tokens(rng, 250, 0.9, 10, 5000, 1)[0])
            model = int(_zipf_pick(rng, models, 1)[0])
            prompt, completion = _tokens(rng, 600, 0.8, 20, 16_000, lines), _tokens(rng, 200, 0.8, 5, 2000, lines)
            jobs.append(BatchJob(int(rng.integers(0, DAY_MS)), int(person), model,
                                 list(zip(prompt.tolist(), completion.tolist(), strict=True))))
    return jobs
