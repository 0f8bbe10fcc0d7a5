"""keep_alive: per model, last explicit value wins, idle timers, forever, explicit unload (Ollama server/sched.go)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime, timedelta

import httpx
import ollama
import pytest

from tests.sim.simkit import CHAT, CODER, clean, loaded_names, sim_config
from tests.support.processes import eventually
from tests.support.simulator import SimulatorProcess

pytestmark = pytest.mark.timeout(60)

HI = [{"role": "user", "content": "hi"}]
# ka_sim's: short, so a test sees the idle unload, and long enough to read /api/ps before it on a busy machine.
DEFAULT_KEEP_ALIVE = timedelta(seconds=2)


@pytest.fixture(scope="module")
def ka_sim() -> Iterator[SimulatorProcess]:
    with SimulatorProcess(sim_config({"keep_alive": "2s", "tokens_per_second": 100,
                                      "response_tokens": [100, 200]})) as sim:
        yield sim


@pytest.fixture
def sim(ka_sim: SimulatorProcess) -> SimulatorProcess:
    return clean(ka_sim)


def expires_at(sim: SimulatorProcess, model: str = CHAT) -> datetime:
    row = next(m for m in httpx.get(sim.url + "/api/ps").json()["models"] if m["name"] == model)
    return datetime.fromisoformat(row["expires_at"])


def seconds_left(sim: SimulatorProcess, model: str = CHAT) -> float:
    return (expires_at(sim, model) - datetime.now().astimezone()).total_seconds()


def generate(sim: SimulatorProcess, **body) -> dict:
    payload = {"model": CHAT, "prompt": "x", "stream": False, "options": {"num_predict": 1}, **body}
    response = httpx.post(sim.url + "/api/generate", json=payload, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def test_it_unloads_an_idle_model_after_the_default_keep_alive(sim):
    # The timer starts when the request ends, which is between these two moments, however busy the machine.
    before = datetime.now().astimezone()
    generate(sim)
    assert CHAT in loaded_names(sim), "unloaded within 2 s of the end (or the test was held up that long)"
    expires = expires_at(sim)
    after = datetime.now().astimezone()
    slack = timedelta(milliseconds=50)  # clock reads in two processes
    assert before + DEFAULT_KEEP_ALIVE - slack <= expires <= after + DEFAULT_KEEP_ALIVE + slack, (before, expires, after)
    eventually(lambda: loaded_names(sim) == [], timeout=30, what="idle unload")
    stats = sim.model_stats(CHAT)
    assert stats["unloads"] == 1 and stats["evictions"] == 0


def test_it_reads_numbers_as_seconds_and_strings_as_go_durations(sim):
    generate(sim, keep_alive="1h30m")
    assert 5390 < seconds_left(sim) <= 5400
    generate(sim, keep_alive=90)
    assert 80 < seconds_left(sim) <= 90
    generate(sim, keep_alive="1.5m")
    assert 80 < seconds_left(sim) <= 90
    generate(sim, keep_alive=0.3)
    eventually(lambda: loaded_names(sim) == [], timeout=30, what="unload after 0.3 s")


def test_it_keeps_negative_keep_alive_forever(sim):
    client = ollama.Client(host=sim.url)
    assert client.generate(model=CHAT, keep_alive=-1).done_reason == "load"
    assert client.ps().models[0].expires_at.year >= 2300  # now + MaxInt64 ns, about 2318
    generate(sim, model=CODER, keep_alive="-5m")
    years = sorted(m.expires_at.year for m in client.ps().models)
    assert years[0] >= 2300


def test_it_lets_the_last_explicit_keep_alive_win_and_absent_ones_leave_it(sim):
    generate(sim, keep_alive="2m")
    assert 110 < seconds_left(sim) <= 120
    generate(sim)  # no keep_alive: the runner keeps 2m, not the 2s default
    assert 110 < seconds_left(sim) <= 120
    # The OpenAI layer cannot express keep_alive (and drops it if sent), so it never resets it.
    response = httpx.post(sim.url + "/v1/chat/completions", json={
        "model": CHAT, "messages": HI, "max_tokens": 1, "keep_alive": 0}, timeout=30)
    assert response.status_code == 200
    assert 110 < seconds_left(sim) <= 120
    generate(sim, keep_alive="10m")
    assert 590 < seconds_left(sim) <= 600
    assert sim.stats()["loaded"][0]["keep_alive"] == 600


def test_it_unloads_as_soon_as_a_keep_alive_zero_request_ends(sim):
    reply = generate(sim, keep_alive=0)
    assert reply["done"] is True and reply["eval_count"] == 1
    eventually(lambda: loaded_names(sim) == [], timeout=30, what="unload at idle")
    assert sim.model_stats(CHAT)["unloads"] == 1


@pytest.mark.asyncio
async def test_it_starts_the_idle_timer_only_when_the_last_request_ends(sim):
    # 70 tokens at 25 a second: the simulator's clock paces the stream, so the request lasts at least
    # 2.8 s (no sleep in the test), longer than its 2 s keep_alive.
    sim.set_faults(CHAT, tokens_per_second=25)
    keep_alive, lasts = timedelta(seconds=2), timedelta(seconds=70 / 25)
    async with ollama.AsyncClient(host=sim.url) as client:
        parts = 0
        sent = datetime.now().astimezone()
        async for part in await client.generate(model=CHAT, prompt="x", keep_alive=2, stream=True,
                                                options={"num_predict": 70}):
            parts += 1
            if parts == 65:  # 2.6 s in: a timer started with the request would have unloaded it
                assert CHAT in await asyncio.to_thread(loaded_names, sim)
            if part.done:
                assert part.eval_count == 70
        # The timer started when the request ended, which was at least 2.8 s after it was sent.
        assert CHAT in loaded_names(sim), "unloaded within 2 s of the end (or the test was held up that long)"
        assert expires_at(sim) >= sent + lasts + keep_alive
        await asyncio.to_thread(eventually, lambda: loaded_names(sim) == [], timeout=30,
                                what="unload 2 s after the end")


@pytest.mark.asyncio
async def test_it_unloads_a_busy_model_only_after_its_requests_finish(sim):
    async with ollama.AsyncClient(host=sim.url) as client:
        parts = []

        async def stream() -> None:
            async for part in await client.chat(model=CHAT, messages=HI, stream=True, options={"num_predict": 50}):
                parts.append(part)

        task = asyncio.create_task(stream())
        await asyncio.to_thread(eventually, lambda: len(parts) >= 3, what="stream started")
        unload = await client.chat(model=CHAT, messages=[], keep_alive=0)
        assert unload.done_reason == "unload"  # answered at once, while the stream goes on
        assert not parts[-1].done
        assert CHAT in await asyncio.to_thread(loaded_names, sim)
        await task
    assert parts[-1].done and parts[-1].eval_count == 50
    await asyncio.to_thread(eventually, lambda: loaded_names(sim) == [], timeout=30, what="unload after the stream")
