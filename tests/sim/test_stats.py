"""GET /sim/stats, POST /sim/reset and /sim/faults: exact numbers other tests can rely on."""

from __future__ import annotations

import asyncio

import httpx
import ollama
import pytest

from tests.sim.simkit import CHAT, CODER, EMBEDDER, loaded_names
from tests.support.processes import eventually

pytestmark = pytest.mark.timeout(60)

HI = [{"role": "user", "content": "hi"}]


@pytest.mark.asyncio
async def test_it_counts_requests_outcomes_tokens_and_peaks_exactly(sim):
    async with ollama.AsyncClient(host=sim.url) as client:
        replies = await asyncio.gather(*(client.chat(model=CHAT, messages=HI, options={"num_predict": 5})
                                         for _ in range(3)))
        with pytest.raises(ollama.ResponseError):
            await client.chat(model=CHAT, messages=HI, think=True)  # 400 after the model was resolved
        with pytest.raises(ollama.ResponseError):
            await client.chat(model="unknown", messages=HI)  # never reaches a model: not counted per model
        with pytest.raises(ollama.ResponseError):
            await client.chat(model=CHAT, messages=HI, options={"sim_fail_after_tokens": 1})
    stats = sim.stats()
    chat = stats["models"][CHAT]
    assert chat["requests"] == 5 and chat["completed"] == 3 and chat["errors"] == 2
    assert chat["injected_faults"] == 1 and chat["cancellations"] == 0
    assert chat["in_flight"] == chat["generating"] == chat["waiting_for_slot"] == chat["queued"] == 0
    assert chat["max_in_flight"] == 3 and chat["max_generating"] == 1  # num_parallel defaults to 1
    assert chat["loads"] == 1
    assert chat["eval_tokens"] == 15
    assert chat["prompt_tokens"] == sum(r.prompt_eval_count for r in replies)
    assert "unknown" not in stats["models"]
    assert stats["endpoints"] == {"/api/chat": 6}
    assert stats["totals"]["requests"] == 5


def test_it_resets_counters_but_keeps_models_loaded_unless_asked(sim, http):
    http.post("/api/generate", json={"model": CHAT, "prompt": "x", "stream": False})
    assert sim.model_stats(CHAT)["requests"] == 1
    sim.reset()
    assert sim.model_stats(CHAT)["requests"] == 0 and sim.model_stats(CHAT)["loads"] == 0
    assert loaded_names(sim) == [CHAT]
    answer = sim.reset(unload=True)
    assert answer["status"] == "ok" and answer["loaded"] == []
    assert loaded_names(sim) == []
    assert sim.model_stats(CHAT)["unloads"] == 0  # counted before the counters were zeroed


def test_it_injects_and_clears_faults_at_run_time(sim, http):
    assert http.get("/sim/faults").json() == {}
    assert sim.set_faults(CHAT, fail_after_tokens=1, error_message="GPU fell off the bus") == {
        CHAT: {"fail_after_tokens": 1, "error_message": "GPU fell off the bus"}}
    lines = http.post("/api/chat", json={"model": CHAT, "messages": HI}).text.splitlines()
    assert lines[-1] == '{"error":"GPU fell off the bus"}'
    sim.set_faults(CHAT, clear=True)
    assert http.post("/api/chat", json={"model": CHAT, "messages": HI, "stream": False}).status_code == 200
    bad_key = http.post("/sim/faults", json={"model": CHAT, "explode": True})
    assert bad_key.status_code == 400
    assert http.post("/sim/faults", json={"model": "nope", "fail_after_tokens": 1}).status_code == 404


@pytest.mark.asyncio
async def test_it_stalls_a_stream_on_demand_until_the_client_leaves(sim):
    sim.set_faults(CODER, stall_after_tokens=2)
    async with httpx.AsyncClient(base_url=sim.url, timeout=httpx.Timeout(30, read=0.5)) as client:
        with pytest.raises(httpx.ReadTimeout):
            async with client.stream("POST", "/api/generate", json={"model": CODER, "prompt": "x"}) as response:
                async for _line in response.aiter_lines():
                    pass
    await asyncio.to_thread(eventually, lambda: sim.model_stats(CODER).get("generating") == 0, what="slot freed")
    assert sim.model_stats(CODER)["cancellations_by_stage"]["generation"] == 1


def test_it_reports_the_effective_configuration_and_loaded_runners(sim, http):
    http.post("/api/embed", json={"model": EMBEDDER, "input": "x", "keep_alive": -1})
    stats = sim.stats()
    assert stats["config"]["num_parallel"] == 1 and stats["config"]["max_queue"] == 512
    assert stats["config"]["keep_alive"] == 300 and stats["config"]["max_runners"] == 3
    assert stats["loaded"] == [{"model": EMBEDDER, "loading": False, "refcount": 0, "slots_busy": 0,
                                "slots_waiting": 0, "num_parallel": 1, "num_ctx": 512,
                                "size": stats["loaded"][0]["size"], "size_vram": stats["loaded"][0]["size"],
                                "keep_alive": None}]
    assert stats["pending_queue"] == {"depth": 0, "max_depth": 0, "capacity": 512}
