"""From a finished simulation to the figures: slot utilisation, swaps, queue waits, fairness,
Retry-After accuracy and Redis operations. `collect` takes plain data out of the simulation,
`summarize` turns it into the JSON the results file holds; bench/scale/render.py writes the
Markdown and the plots from that JSON.
"""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np

from bench.scale.accounting import HOUR_MS
from bench.scale.driver import Simulation
from bench.scale.harness import EPOCH_MS
from bench.scale.workload import CONCURRENCY, GIB, SIZE_CLASSES
from inference.scheduler import swapper

REAL_ROUNDS_PER_SECOND = 1 / swapper.ROUND_SECONDS
WEB_RENEW_EVERY_S = {True: 1.0, False: 5.0}  # slots.Broker: every second while a ticket waits, else lease / 3
NODE_POLL_SECONDS = 2.0  # the default NODE_PS_POLL_SECONDS the report charges polls at


def collect(sim: Simulation) -> dict:
    """Everything the summary needs, as plain data (picklable, independent of Redis and asyncio)."""
    world = sim.world
    calls = [(c.kind, c.model, c.person, c.arrival_ms, c.attempts, c.admitted_ms, c.granted_ms, c.ended_ms,
              c.outcome, c.refusals, c.prompt, c.completion) for c in sim.calls]
    return {
        "spec": world.spec.__dict__ | {"start_ms": world.start_ms, "end_ms": world.end_ms},
        "nodes": [(n.url, n.gpu_memory_bytes) for n in world.nodes],
        "models": {m.name: {"vram": m.vram_bytes, "class": m.size_class, "share": m.share,
                            "nodes": len(m.route.node_urls), "tokens_per_s": m.decode_tokens_per_s,
                            "load_ms": m.load_ms} for m in world.models},
        "people": len(world.person_weight),
        "web_processes": len(sim.owners),
        "calls": calls,
        "refusals": [(r.model, r.at_ms, r.told_ms, r.opened_ms) for r in sim.watch.refusals],
        "integrals": {name: getattr(sim, name).hours for name in ("busy_slots", "ready_slots", "busy_memory",
                                                                   "loaded_memory")},
        "swaps": [(hour, kind, size, count) for (hour, kind, size), count in sim.swaps.items()],
        "redis": {"calls": {c: dict(v) for c, v in sim.counters.calls.items()},
                  "usec": {c: dict(v) for c, v in sim.counters.usec.items()},
                  "brackets": dict(sim.counters.brackets), "events": dict(sim.counters.events),
                  "cpu_seconds": sim.redis_cpu_seconds},
        "renew_samples": sim.renew_samples,
        "checks": sim.checks,
        "hourly": sim.hourly,
        "violations": [v for node in sim.nodes.values() for v in node.violations],
        "max_running": max((n for node in sim.nodes.values() for n in node.max_running.values()), default=0),
        "anomalies": sim.anomalies,
        "wake_publishes": sim.wake_publishes,
        "placements": [(at - EPOCH_MS, model, node, victims, forced)
                       for at, model, node, victims, forced in sim.scheduler.placements],
        "scheduler_counts": sim.scheduler.counts,
        "wall_seconds": sim.wall_seconds,
    }


def pct(values, q) -> float | None:
    return round(float(np.percentile(values, q)) / 1000, 2) if len(values) else None


def jain(values) -> float:
    values = np.asarray(values, dtype=float)
    return float(values.sum() ** 2 / (len(values) * (values ** 2).sum())) if len(values) and values.any() else 1.0


def summarize(raw: dict) -> dict:
    spec, models = raw["spec"], raw["models"]
    window_s = (spec["end_ms"] - spec["start_ms"]) / 1000
    hours = len(raw["integrals"]["busy_slots"])
    calls = raw["calls"]
    interactive = [c for c in calls if c[0] != "batch"]
    batch = [c for c in calls if c[0] == "batch"]
    fleet_memory = sum(memory for _, memory in raw["nodes"])
    out = {"spec": spec, "world": _world(raw, interactive, batch, fleet_memory),
           "runtime": {"wall_seconds": round(raw["wall_seconds"], 1), "simulated_seconds": window_s,
                       "redis_cpu_seconds": round(raw["redis"]["cpu_seconds"], 1)},
           "outcomes": {"interactive": dict(Counter(c[8] for c in interactive)),
                        "batch": dict(Counter(c[8] for c in batch)),
                        "by_kind": {k: dict(Counter(c[8] for c in calls if c[0] == k)) for k in sorted({c[0] for c in calls})}},
           "checks": {"node_violations": len(raw["violations"]), "first_violations": raw["violations"][:5],
                      "most_calls_at_once_on_a_node": raw["max_running"], "concurrency": CONCURRENCY,
                      "state_checks": len(raw["checks"]),
                      "state_differences": sum(len(c["differences"]) for c in raw["checks"]),
                      "first_differences": [d for c in raw["checks"] for d in c["differences"]][:5],
                      "unexpected_grants": len(raw["anomalies"])}}
    out["utilisation"] = _utilisation(raw, fleet_memory)
    out["swaps"] = _swaps(raw, hours)
    out["queue_wait"] = _waits(interactive, batch, models)
    out["fairness"] = _fairness(interactive, batch, models)
    out["retry_after"] = _retry_after(raw, interactive)
    out["hourly"] = _hourly(raw, interactive, hours)
    out["redis"] = _redis(raw, calls, window_s)
    return out


def _world(raw, interactive, batch, fleet_memory) -> dict:
    models = raw["models"]
    per_model = Counter(c[1] for c in raw["calls"])
    return {"nodes": len(raw["nodes"]), "node_memory_gib": dict(Counter(m // GIB for _, m in raw["nodes"])),
            "fleet_memory_gib": fleet_memory // GIB, "models": len(models),
            "models_by_size": dict(Counter(m["class"] for m in models.values())),
            "catalogue_memory_gib": round(sum(m["vram"] for m in models.values()) / GIB),
            "nodes_per_model_mean": round(float(np.mean([m["nodes"] for m in models.values()])), 1),
            "nodes_per_request_mean": round(sum(models[m]["nodes"] * n for m, n in per_model.items())
                                            / max(1, sum(per_model.values())), 1),
            "people": raw["people"], "people_active": len({c[2] for c in raw["calls"]}),
            "interactive_requests": len(interactive), "batch_lines": len(batch),
            "by_kind": dict(Counter(c[0] for c in raw["calls"])),
            "top_model_share": round(max(per_model.values(), default=0) / max(1, len(raw["calls"])), 3),
            "web_processes": raw["web_processes"]}


def _utilisation(raw, fleet_memory) -> dict:
    integrals = {name: np.array(values) for name, values in raw["integrals"].items()}
    span_ms = (raw["spec"]["end_ms"] - raw["spec"]["start_ms"])
    hours_ms = np.full(len(integrals["busy_slots"]), HOUR_MS, dtype=float)
    hours_ms[-1] = span_ms - HOUR_MS * (len(hours_ms) - 1)
    busy, ready = integrals["busy_slots"], integrals["ready_slots"]

    def ratio(a, b):
        return round(float(a / b), 4) if b else None

    return {"loaded_slots": ratio(busy.sum(), ready.sum()),
            "fleet_memory_busy": ratio(integrals["busy_memory"].sum(), fleet_memory * span_ms),
            "fleet_memory_loaded": ratio(integrals["loaded_memory"].sum(), fleet_memory * span_ms),
            "mean_busy_slots": round(float(busy.sum() / span_ms), 1),
            "mean_ready_slots": round(float(ready.sum() / span_ms), 1),
            "peak_hour_loaded_slots": max((ratio(b, r) or 0 for b, r in zip(busy, ready, strict=True)), default=None),
            "hourly_loaded_slots": [ratio(b, r) for b, r in zip(busy, ready, strict=True)],
            "hourly_fleet_memory_busy": [round(float(b / (fleet_memory * h)), 4)
                                         for b, h in zip(integrals["busy_memory"], hours_ms, strict=True)],
            "hourly_fleet_memory_loaded": [round(float(b / (fleet_memory * h)), 4)
                                           for b, h in zip(integrals["loaded_memory"], hours_ms, strict=True)],
            "hourly_busy_slots": [round(float(b / h), 1) for b, h in zip(busy, hours_ms, strict=True)],
            "hourly_ready_slots": [round(float(r / h), 1) for r, h in zip(ready, hours_ms, strict=True)]}


def _swaps(raw, hours) -> dict:
    per_hour = defaultdict(lambda: [0] * hours)
    by_size = Counter()
    for hour, kind, size, count in raw["swaps"]:
        per_hour[kind][hour] += count
        by_size[(kind, size)] += count
    loads, unloads, expired = (per_hour[k] for k in ("load", "unload", "expired"))
    swaps = [a + b + c for a, b, c in zip(loads, unloads, expired, strict=True)]
    span_h = (raw["spec"]["end_ms"] - raw["spec"]["start_ms"]) / HOUR_MS
    return {**_room_making(raw), "loads": sum(loads), "unloads_by_actor": sum(unloads), "unloads_by_keep_alive": sum(expired),
            "per_hour_mean": round(sum(swaps) / span_h, 1), "per_hour_max": max(swaps, default=0),
            "per_node_hour_mean": round(sum(swaps) / span_h / len(raw["nodes"]), 2),
            "hourly_loads": loads, "hourly_unloads": [a + b for a, b in zip(unloads, expired, strict=True)],
            "loads_by_size": {size: by_size[("load", size)] for size, _ in SIZE_CLASSES}}


def _room_making(raw) -> dict:
    """SwapActor._place either loads a model or unloads others to make room for it (the load follows in
    a later round). Room made on a node where the model then did not load was not needed for it: count
    the unloads started for a model before its next load on nodes other than the one it loaded on, and
    how many of the models unloaded there were loaded again within half an hour."""
    placements = raw.get("placements", [])
    loads: dict[str, list[int]] = {}
    for at, model, _, victims, _ in placements:
        if not victims:
            loads.setdefault(model, []).append(at)
    pending: dict[str, list] = {}
    made, elsewhere, reloaded, episodes, nodes_per_episode = 0, 0, 0, 0, []
    for at, model, node, victims, _ in placements:
        if victims:
            pending.setdefault(model, []).append((at, node, victims))
            made += len(victims)
            continue
        rooms = pending.pop(model, [])
        if not rooms:
            continue
        episodes += 1
        nodes_per_episode.append(len({where for _, where, _ in rooms}))
        for when, where, victims in rooms:
            if where != node:
                elsewhere += len(victims)
                reloaded += sum(any(when < t <= when + 1_800_000 for t in loads.get(v, ())) for v in victims)
    return {"unloads_to_make_room": made, "unloads_to_make_room_on_another_node": elsewhere,
            "of_those_loaded_again_within_30_min": reloaded, "room_making_episodes": episodes,
            "nodes_room_was_made_on_per_episode_mean": round(float(np.mean(nodes_per_episode)), 2) if nodes_per_episode else None,
            "nodes_room_was_made_on_per_episode_max": max(nodes_per_episode, default=0)}


def _waits(interactive, batch, models) -> dict:
    out = {}
    for name, rows in (("interactive", interactive), ("batch", batch)):
        by_size = {}
        for size, _ in [*SIZE_CLASSES, ("all", None)]:
            waits = [c[6] - c[5] for c in rows if c[6] is not None and (size == "all" or models[c[1]]["class"] == size)]
            by_size[size] = {"requests": len(waits), "p50_s": pct(waits, 50), "p95_s": pct(waits, 95),
                             "p99_s": pct(waits, 99), "max_s": round(max(waits) / 1000, 1) if waits else None}
        out[name] = by_size
    # From the first try to the start of the call, Retry-After waits included (what a person feels).
    start = [c[6] - c[3] for c in interactive if c[6] is not None]
    out["interactive_from_first_try"] = {"p50_s": pct(start, 50), "p95_s": pct(start, 95), "p99_s": pct(start, 99)}
    in_system = [c[7] - c[5] for c in [*interactive, *batch] if c[8] == "served"]
    out["mean_time_in_system_s"] = round(float(np.mean(in_system)) / 1000, 2) if in_system else 0.0
    return out


def _fairness(interactive, batch, models) -> dict:
    """Jain's index over people of two ratios: served share = requests served / requests sent (each
    request counted once, however often its client retried), and speed = the mean over a person's
    served requests of service time / (queue wait + service time): 1 when nothing waited."""
    sent, served, speed = Counter(), Counter(), defaultdict(list)
    for c in interactive:
        sent[c[2]] += 1
        if c[8] == "served":
            served[c[2]] += 1
            service = c[7] - c[6]
            speed[c[2]].append(service / max(1, service + c[6] - c[5]))
    people = sorted(sent)
    share = [served[p] / sent[p] for p in people]
    speeds = [float(np.mean(speed[p])) if speed[p] else 0.0 for p in people]
    heavy = set(sorted(people, key=lambda p: -sent[p])[:max(1, len(people) // 100)])

    def group(members):
        rows = [c for c in interactive if c[2] in members]
        waits = [c[6] - c[5] for c in rows if c[6] is not None]
        return {"people": len(members), "requests": len(rows),
                "served_share": round(sum(c[8] == "served" for c in rows) / max(1, len(rows)), 4),
                "wait_p50_s": pct(waits, 50), "wait_p95_s": pct(waits, 95)}

    return {"jain_served_share": round(jain(share), 4), "jain_speed": round(jain(speeds), 4),
            "people": len(people), "heaviest_1_percent": group(heavy),
            "everyone_else": group(set(people) - heavy),
            "heaviest_1_percent_request_share": round(sum(sent[p] for p in heavy) / max(1, sum(sent.values())), 3)}


def _retry_after(raw, interactive) -> dict:
    refused_once = [c for c in interactive if c[9]]
    first_retry_in = [c for c in refused_once if len(c[9]) == 1 and c[5] is not None]
    told = [r[2] - r[1] for r in raw["refusals"]]
    errors = [(r[2] - r[3]) / 1000 for r in raw["refusals"] if r[3] is not None]
    late = [e for e in errors if e > 0]
    return {"refusals": len(raw["refusals"]), "requests_refused_at_least_once": len(refused_once),
            "in_on_first_retry": len(first_retry_in),
            "in_on_first_retry_share": round(len(first_retry_in) / max(1, len(refused_once)), 4),
            "in_eventually_share": round(sum(c[5] is not None for c in refused_once) / max(1, len(refused_once)), 4),
            "gave_up": sum(c[8] == "refused" for c in refused_once),
            "retry_after_p50_s": pct(told, 50), "retry_after_p95_s": pct(told, 95),
            "retry_after_capped_share": round(sum(t >= 60_000 for t in told) / max(1, len(told)), 4),
            "matched_to_a_place": len(errors),
            "error_s_p10": round(float(np.percentile(errors, 10)), 2) if errors else None,
            "error_s_p50": round(float(np.percentile(errors, 50)), 2) if errors else None,
            "error_s_p90": round(float(np.percentile(errors, 90)), 2) if errors else None,
            "told_too_early_share": round(sum(e < 0 for e in errors) / max(1, len(errors)), 4),
            "told_late_by_more_than_5s_share": round(sum(e > 5 for e in late) / max(1, len(errors)), 4)}


def _hourly(raw, interactive, hours) -> dict:
    start = raw["spec"]["start_ms"]
    arrivals, refused, waits = [0] * hours, [0] * hours, [[] for _ in range(hours)]
    for c in raw["calls"]:
        hour = (c[3] - start) // HOUR_MS
        if 0 <= hour < hours:
            arrivals[hour] += 1
    for c in interactive:
        hour = (c[3] - start) // HOUR_MS
        if 0 <= hour < hours:
            refused[hour] += len(c[9])
            if c[6] is not None:
                waits[hour].append(c[6] - c[5])
    return {"arrivals": arrivals, "refusals": refused,
            "wait_p95_s": [pct(w, 95) for w in waits], "wait_p50_s": [pct(w, 50) for w in waits]}


def _per_second(samples: list[dict], field: str) -> float:
    """A renewal sample's `field` at the rate its process renews (slots.Broker._renew_forever)."""
    return float(np.mean([s[field] / WEB_RENEW_EVERY_S[s["waiting"]] for s in samples])) if samples else 0.0


def _redis(raw, calls, window_s) -> dict:
    """Redis commands (INFO commandstats, those inside scripts included) per request and per second.
    Command counts are exact; Redis's CPU per command comes from bench/scale/ceiling.py, since INFO's
    time per command is wall-clock time and this machine is shared."""
    redis = raw["redis"]
    total = {category: sum(values.values()) for category, values in redis["calls"].items()}
    requests = len(calls)
    admissions = sum(c[4] for c in calls)
    samples = raw["renew_samples"]
    web = [s for s in samples if s["owner"] == "web"]
    feeder = [s for s in samples if s["owner"] == "feeder"]
    # Renewals at the real rate: each web process (and the batch feeder) renews all its tickets every
    # second while one of them waits, else every 5 s. Each sample is one process's round at that moment.
    renew_per_s = raw["web_processes"] * _per_second(web, "commands") + _per_second(feeder, "commands")
    renew_scripts_per_s = raw["web_processes"] * _per_second(web, "scripts") + _per_second(feeder, "scripts")
    renew_per_ticket_s = sum(s["commands"] / WEB_RENEW_EVERY_S[s["waiting"]] for s in samples) / max(
        1, sum(s["tickets"] for s in samples))
    # The actor at its real pace: five rounds a second, each renewing the leader lease, marking every
    # model born and reading every model's state, and dispatching every model with waiting requests;
    # a poll of each node every 2 s. Its loads and unloads are as many as in the simulation.
    checks = raw["checks"]
    reads = float(np.mean([c["cost"]["states"][0] + c["cost"]["note_born"][0] for c in checks])) if checks else 0.0
    dispatch = float(np.mean([c["cost"]["dispatch"][0] / c["models_waiting"] for c in checks if c["models_waiting"]] or [0]))
    poll = float(np.mean([c["cost"]["poll"][0] for c in checks])) if checks else 0.0
    waiting_models = float(np.mean([s["models_waiting"] for s in samples])) if samples else 0.0
    dispatch_and_poll = REAL_ROUNDS_PER_SECOND * (1 + waiting_models * dispatch) + len(raw["nodes"]) / NODE_POLL_SECONDS * poll
    actor_real_per_s = REAL_ROUNDS_PER_SECOND * reads + dispatch_and_poll
    actions = total.get("actor_round", 0) + total.get("actor_node", 0)
    request_per_s = total.get("request", 0) / window_s
    request_calls = Counter(redis["calls"].get("request", {}))
    # PUBLISH inside the scripts: a wake-up for the actor reaches every web process, a grant one.
    publishes = sum(redis["calls"].get(c, {}).get("publish", 0) for c in ("request", "actor_round", "actor_node"))
    wakes = raw.get("wake_publishes", 0)
    return {
        "requests": requests, "admissions": admissions,
        "request_path": {"commands": total.get("request", 0),
                         "per_request": round(total.get("request", 0) / max(1, requests), 1),
                         "per_admission": round(total.get("request", 0) / max(1, admissions), 1),
                         "scripts_per_request": round(request_calls["evalsha"] / max(1, requests), 2),
                         "per_second": round(request_per_s, 1),
                         "publishes_per_request": round(publishes / max(1, requests), 3),
                         "deliveries_per_request": round((publishes - wakes + wakes * raw["web_processes"]) / max(1, requests), 3),
                         "top_commands": request_calls.most_common(12)},
        "actor_in_simulation": {"commands": actions, "rounds": redis["events"].get("actor_round", 0),
                                "load_and_unload_steps": redis["events"].get("actor_node", 0),
                                "per_second": round(actions / window_s, 1)},
        "actor_at_real_pace": {"per_second": round(actor_real_per_s, 1), "reads_per_round": round(reads),
                               "models_waiting_mean": round(waiting_models, 1),
                               "commands_per_dispatch": round(dispatch, 1), "commands_per_poll": round(poll, 1),
                               "dispatch_and_poll_commands_per_second": round(dispatch_and_poll, 1)},
        "renewals_at_real_pace": {"per_second": round(renew_per_s, 1), "scripts_per_second": round(renew_scripts_per_s, 2),
                                  "commands_per_ticket_second": round(renew_per_ticket_s, 2), "samples": len(samples),
                                  "tickets_per_round_mean": round(float(np.mean([s["tickets"] for s in samples])), 1) if samples else 0},
        "scheduler_total_per_second": round(request_per_s + actor_real_per_s + renew_per_s, 1),
        "scheduler_total_per_request": round((request_per_s + actor_real_per_s + renew_per_s) * window_s / max(1, requests), 1),
        "hourly_per_second": _hourly_redis(raw),
    }


def _hourly_redis(raw) -> list[float]:
    """Commands per second in each simulated hour as the simulation ran them (the request path and the
    actor at the simulation's pace), without the measurement samples."""
    counts = [mark["calls"] - mark["bracketed"].get("check", 0) - mark["bracketed"].get("renew", 0)
              for mark in raw["hourly"] if mark["at_ms"] <= raw["spec"]["end_ms"]]
    return [round((b - a) / 3600, 1) for a, b in zip(counts, counts[1:], strict=False)]
