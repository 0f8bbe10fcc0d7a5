"""The scale simulation (bench/scale/) at a tiny scale: four nodes, six models, thirty people, one
simulated hour through Gatehouse's own Lua scripts and swap actor on a virtual clock, against a
redis-server of its own. What must hold whatever the figures: the nodes never run more calls of a
model than its slots, every admitted request ends, every refusal says when to come back, the counts
add up, the simulation's picture of the queues is Redis's, and Redis is left with nothing queued."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from bench.scale import report, workload
from bench.scale.driver import Simulation
from bench.scale.harness import SimRedis

# An hour busy enough for every path: swaps, full queues, queue timeouts and a batch.
TINY = workload.Spec(nodes=4, models=6, people=30, interactive_per_day=20_000, batch_people=6, hours=1.0,
                     start_hour=10.0, web_processes=2, seed=29)


@pytest.fixture(scope="module")
def finished():
    server = SimRedis()
    try:
        simulation = Simulation(workload.build(TINY), server.socket_url, check_seconds=600, renew_sample_seconds=120)
        asyncio.run(simulation.run())
        with simulation.scheduler:  # read what Redis holds afterwards through the same code
            leftovers = asyncio.run(simulation.scheduler.read_real_states())
        yield simulation, report.collect(simulation), leftovers
    finally:
        server.stop()


def test_the_workload_is_the_same_for_the_same_seed():
    first, second = workload.build(TINY), workload.build(TINY)
    assert [dataclasses.astuple(a) for a in first.arrivals] == [dataclasses.astuple(a) for a in second.arrivals]
    assert [j.lines for j in first.batch_jobs] == [j.lines for j in second.batch_jobs]
    assert all(m.route.node_urls for m in first.models), "every model must fit on some node"


def test_no_node_ever_runs_more_calls_of_a_model_than_its_slots(finished):
    simulation, _, _ = finished
    assert sum(node.calls for node in simulation.nodes.values()) > 0
    for node in simulation.nodes.values():
        assert node.violations == []
        assert max(node.max_running.values(), default=0) <= workload.CONCURRENCY


def test_every_admitted_request_ends_and_every_refusal_says_when_to_come_back(finished):
    simulation, _, _ = finished
    assert simulation.live == {}
    for call in simulation.calls:
        assert all(retry_after_ms > 0 for _, retry_after_ms in call.refusals), call.id
        if call.admitted_ms is not None:
            assert call.outcome in ("served", "timed_out"), (call.id, call.outcome)
        else:
            assert call.outcome == "refused" and call.refusals, (call.id, call.outcome)
        if call.outcome == "served":
            assert call.admitted_ms <= call.granted_ms <= call.ended_ms


def test_the_counts_add_up(finished):
    simulation, raw, _ = finished
    world = simulation.world
    summary = report.summarize(raw)
    sent = len(world.arrivals) + sum(len(job.lines) for job in world.batch_jobs)
    assert len(simulation.calls) == sent > 100
    outcomes = {**summary["outcomes"]["interactive"]}
    for outcome, count in summary["outcomes"]["batch"].items():
        outcomes[outcome] = outcomes.get(outcome, 0) + count
    assert sum(outcomes.values()) == sent
    assert outcomes.get("unfinished", 0) == 0
    # Every attempt was refused or admitted; only a batch line the queue timed out is admitted again.
    assert sum(len(c.refusals) + c.admissions for c in simulation.calls) == sum(c.attempts for c in simulation.calls)
    for call in simulation.calls:
        if call.batch:  # each queue timeout was an admission, and so was the one it was served in
            assert call.admissions == call.transient + (call.outcome == "served"), call.id
        else:
            assert call.admissions == (call.admitted_ms is not None), call.id
    assert summary["swaps"]["loads"] > 0 and summary["swaps"]["unloads_by_actor"] > 0
    assert summary["retry_after"]["refusals"] > 0 and summary["outcomes"]["interactive"].get("timed_out", 0) > 0
    assert summary["outcomes"]["batch"].get("served", 0) > 0
    assert 0 < summary["utilisation"]["loaded_slots"] <= 1
    assert summary["redis"]["request_path"]["per_request"] > 0


def test_fairness_is_an_index_between_zero_and_one(finished):
    _, raw, _ = finished
    fairness = report.summarize(raw)["fairness"]
    assert 0 < fairness["jain_served_share"] <= 1
    assert 0 < fairness["jain_speed"] <= 1


def test_the_simulation_sees_what_redis_holds_and_redis_is_left_empty(finished):
    simulation, _, leftovers = finished
    assert simulation.checks and all(check["differences"] == [] for check in simulation.checks)
    assert simulation.anomalies == []
    for model, state in leftovers.items():
        assert state.waiting == 0, model
        assert not any(state.running.values()), model
