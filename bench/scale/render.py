"""The results as Markdown (bench/results/scale.md) and plots (docs/images/scale-*.png)."""

from __future__ import annotations

from pathlib import Path

from bench.scale.workload import SIZE_CLASSES


def _n(value, digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and digits:
        return f"{value:,.{digits}f}"
    return f"{round(value):,}"


def _pc(value) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


def headline(s: dict) -> str:
    redis, util = s["redis"], s["utilisation"]
    line = (f"{s['world']['interactive_requests']:,} requests + {s['world']['batch_lines']:,} batch lines in "
            f"{s['runtime']['simulated_seconds'] / 3600:g} h simulated ({s['runtime']['wall_seconds']:.0f} s): "
            f"loaded slots {_pc(util['loaded_slots'])} busy, {s['swaps']['per_hour_mean']} swaps/h, "
            f"{redis['request_path']['per_request']} Redis commands per request")
    if "ceiling" in s:
        line += f"; one Redis core carries ~{_n(s['ceiling']['requests_per_second_one_core'])} requests/s"
    return line


def markdown(s: dict) -> str:
    w, o, u, sw, qw, f, ra, r = (s[k] for k in ("world", "outcomes", "utilisation", "swaps", "queue_wait",
                                                 "fairness", "retry_after", "redis"))
    interactive = o["interactive"]
    lines = [
        "# Scale simulation (bench/scale/)", "",
        f"{w['nodes']} nodes ({', '.join(f'{n} x {g} GiB' for g, n in sorted(w['node_memory_gib'].items()))}), "
        f"{w['models']} models, {w['people']:,} people, {s['runtime']['simulated_seconds'] / 3600:g} simulated hours "
        f"from {s['spec']['start_hour']:g}:00, on a virtual clock through Gatehouse's own Lua scripts and swap actor "
        f"against a real redis-server. {s['runtime']['wall_seconds']:.0f} s of real time on {s['machine']['cpus']} CPUs "
        f"(load average at the end {s['machine']['load_average_at_end'][0]:.2f}). docs/scale.md explains the figures.", "",
        "| figure | value |", "|---|---|",
        f"| interactive requests / batch lines | {w['interactive_requests']:,} / {w['batch_lines']:,} |",
        f"| interactive: served / refused after {2} retries / timed out in the queue / unfinished | "
        f"{_n(interactive.get('served'))} / {_n(interactive.get('refused', 0))} / {_n(interactive.get('timed_out', 0))} / "
        f"{_n(interactive.get('unfinished', 0))} |",
        f"| batch lines: served / timed out / unfinished at the end | {_n(o['batch'].get('served', 0))} / "
        f"{_n(o['batch'].get('timed_out', 0))} / {_n(o['batch'].get('unfinished', 0))} |",
        f"| slot utilisation of loaded models (day / busiest hour) | {_pc(u['loaded_slots'])} / {_pc(u['peak_hour_loaded_slots'])} |",
        f"| fleet GPU memory doing work / holding a model | {_pc(u['fleet_memory_busy'])} / {_pc(u['fleet_memory_loaded'])} |",
        f"| slots busy / slots ready (mean over the window) | {u['mean_busy_slots']} / {u['mean_ready_slots']} |",
        f"| swaps per hour: mean / busiest hour (loads + unloads + keep-alive expiries) | {sw['per_hour_mean']} / {sw['per_hour_max']} |",
        f"| loads / unloads by the actor / by Ollama's keep-alive | {sw['loads']:,} / {sw['unloads_by_actor']:,} / {sw['unloads_by_keep_alive']:,} |",
    ]
    for size, _ in [*SIZE_CLASSES, ("all", None)]:
        q = qw["interactive"][size]
        lines.append(f"| queue wait, interactive, {size} ({q['requests']:,} served): p50 / p95 / p99 | "
                     f"{_n(q['p50_s'], 2)} s / {_n(q['p95_s'], 2)} s / {_n(q['p99_s'], 2)} s |")
    q = qw["batch"]["all"]
    lines += [
        f"| queue wait, batch lines: p50 / p95 / p99 | {_n(q['p50_s'], 2)} s / {_n(q['p95_s'], 2)} s / {_n(q['p99_s'], 2)} s |",
        f"| from first try to a slot, interactive (Retry-After waits included): p50 / p95 / p99 | "
        f"{_n(qw['interactive_from_first_try']['p50_s'], 2)} s / {_n(qw['interactive_from_first_try']['p95_s'], 2)} s / "
        f"{_n(qw['interactive_from_first_try']['p99_s'], 2)} s |",
        f"| Jain's index over {f['people']:,} people: served / sent, and speed (service / (wait + service)) | "
        f"{f['jain_served_share']} / {f['jain_speed']} |",
        f"| heaviest 1 % of people ({_pc(f['heaviest_1_percent_request_share'])} of requests): served, wait p95 | "
        f"{_pc(f['heaviest_1_percent']['served_share'])}, {_n(f['heaviest_1_percent']['wait_p95_s'], 2)} s |",
        f"| everyone else: served, wait p95 | {_pc(f['everyone_else']['served_share'])}, {_n(f['everyone_else']['wait_p95_s'], 2)} s |",
        f"| 503 queue_full answers / requests refused at least once | {ra['refusals']:,} / {ra['requests_refused_at_least_once']:,} |",
        f"| refused requests in on their first retry at Retry-After / in eventually | {_pc(ra['in_on_first_retry_share'])} / {_pc(ra['in_eventually_share'])} |",
        f"| Retry-After given: p50 / p95; capped at 60 s | {_n(ra['retry_after_p50_s'], 2)} s / {_n(ra['retry_after_p95_s'], 2)} s; {_pc(ra['retry_after_capped_share'])} |",
        f"| Retry-After minus when a place opened for it: p10 / p50 / p90 (negative: too early) | "
        f"{_n(ra['error_s_p10'], 2)} s / {_n(ra['error_s_p50'], 2)} s / {_n(ra['error_s_p90'], 2)} s |",
        f"| Redis commands per request, request path (admit, release; inside scripts included) | "
        f"{r['request_path']['per_request']} ({r['request_path']['scripts_per_request']} script calls) |",
        f"| Redis commands per second, day's mean: request path / swap actor at 5 rounds a second (fixed) / lease renewals | "
        f"{_n(r['request_path']['per_second'])} / {_n(r['actor_at_real_pace']['per_second'])} / {_n(r['renewals_at_real_pace']['per_second'])} |",
        f"| unloads to make room for a model / on a node it then did not load on / those models loaded again within 30 min | "
        f"{_n(sw.get('unloads_to_make_room'))} / {_n(sw.get('unloads_to_make_room_on_another_node'))} / "
        f"{_n(sw.get('of_those_loaded_again_within_30_min'))} |",
        f"| state checks (the simulation's copy against Redis): differences | {s['checks']['state_checks']}: {s['checks']['state_differences']} |",
        f"| most calls of one model at once on one node (bound {s['checks']['concurrency']}); violations at the nodes | "
        f"{s['checks']['most_calls_at_once_on_a_node']}; {s['checks']['node_violations']} |",
    ]
    if "ceiling" in s:
        c = s["ceiling"]
        parts = c["per_request_cpu_us"]
        lines += ["", "## The Redis ceiling", "",
                  f"Redis CPU per request (us): model queue {parts['model']:.0f} (admit, release: "
                  f"{r['request_path']['scripts_per_request']} script calls at {c['cpu_us_per_model_script']} us), "
                  f"lease renewals {parts['renewals']:.0f} ({c['renew_scripts_per_request']} calls of "
                  f"{c['renew_tickets_per_call']} tickets at {c['cpu_us_per_renew_script']} us, an upper bound), rate limits {parts['person']:.0f}, "
                  f"usage record {parts['usage']:.0f}: "
                  f"{c['redis_cpu_us_per_request']:.0f} in all. Whatever the load, the swap actor takes "
                  f"{_pc(c['fixed_cpu_share'])} of a core. One core: **~{_n(c['requests_per_second_one_core'])} requests/s**; "
                  f"the day's busiest hour ({c['day_peak_requests_per_second']} requests/s) used "
                  f"{_pc(c['day_peak_share_of_one_core'])} of one. Measured from {c['client_processes']} client processes, "
                  f"Redis {_pc(c['redis_busy_share'])} busy, on a shared 2-CPU machine.", "",
                  "| Redis Cluster shards | requests/s (estimate) | the busiest shard's share of the per-request load |",
                  "|---|---|---|"]
        lines += [f"| {row['shards']} | {_n(row['requests_per_second'])} | {_pc(row['busiest_share'])} |" for row in c["shards"]]
    return "\n".join(lines) + "\n"


def plots(s: dict, directory: Path) -> list[str]:
    try:
        import matplotlib
    except ImportError:
        return ["plots skipped: matplotlib is not installed (pip install -e '.[bench]')"]
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    start = s["spec"]["start_hour"]
    hours = [start + h for h in range(len(s["utilisation"]["hourly_loaded_slots"]))]
    written = []

    fig, left = plt.subplots(figsize=(9, 4.2))
    left.bar(hours, s["hourly"]["arrivals"][:len(hours)], width=0.8, color="#c8d4e3", label="requests arriving (left)")
    left.set_xlabel("hour of the day")
    left.set_ylabel("requests per hour")
    right = left.twinx()
    right.plot(hours, [100 * (v or 0) for v in s["utilisation"]["hourly_loaded_slots"]], color="#1f4e79", marker="o",
               label="loaded slots busy")
    right.plot(hours, [100 * v for v in s["utilisation"]["hourly_fleet_memory_loaded"]], color="#8c564b",
               linestyle="--", label="fleet GPU memory holding a model")
    right.plot(hours, [100 * v for v in s["utilisation"]["hourly_fleet_memory_busy"]], color="#d62728",
               label="fleet GPU memory doing work")
    right.set_ylabel("%")
    right.set_ylim(0, 100)
    handles = left.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    labels = left.get_legend_handles_labels()[1] + right.get_legend_handles_labels()[1]
    left.legend(handles, labels, loc="upper left", fontsize=8)
    left.set_title("Load and utilisation over the day")
    written.append(_save(fig, directory / "scale-utilisation.png"))

    fig, ax = plt.subplots(figsize=(9, 3.6))
    ax.bar(hours, s["swaps"]["hourly_loads"], width=0.4, align="edge", label="loads", color="#2ca02c")
    ax.bar([h + 0.4 for h in hours], s["swaps"]["hourly_unloads"], width=0.4, align="edge",
           label="unloads (actor + keep-alive)", color="#ff7f0e")
    ax.set_xlabel("hour of the day")
    ax.set_ylabel("per hour")
    ax.legend(fontsize=8)
    ax.set_title(f"Swaps: {s['swaps']['per_hour_mean']} an hour on average over {s['world']['nodes']} nodes")
    written.append(_save(fig, directory / "scale-swaps.png"))

    fig, ax = plt.subplots(figsize=(9, 3.8))
    sizes = [size for size, _ in SIZE_CLASSES]
    for i, (q, colour) in enumerate((("p50_s", "#9ecae1"), ("p95_s", "#4292c6"), ("p99_s", "#08519c"))):
        values = [s["queue_wait"]["interactive"][size][q] or 0 for size in sizes]
        bars = ax.bar([x + 0.27 * i for x in range(len(sizes))], values, width=0.27, label=q.removesuffix("_s"),
                      color=colour)
        ax.bar_label(bars, labels=[f"{v:.0f} s" if v >= 1 else f"{v:.1f} s" for v in values], fontsize=7)
    ax.set_xticks([x + 0.27 for x in range(len(sizes))],
                  [f"{size}\n({s['queue_wait']['interactive'][size]['requests']:,} served)" for size in sizes])
    ax.set_ylabel("queue wait (s)")
    ax.set_title("Interactive queue wait by model size")
    ax.legend(fontsize=8)
    written.append(_save(fig, directory / "scale-waits.png"))

    if "ceiling" in s:
        c = s["ceiling"]
        fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
        per_hour = s["redis"]["hourly_per_second"]
        a.plot(hours[:len(per_hour)], per_hour, marker="o", color="#1f4e79")
        a.set_xlabel("hour of the day")
        a.set_ylabel("commands / s")
        a.set_title("Redis commands per second, as simulated")
        shards = [row["shards"] for row in c["shards"]]
        b.plot(shards, [row["requests_per_second"] for row in c["shards"]], marker="o", color="#d62728",
               label="estimate (busiest shard at one core)")
        b.plot(shards, [n * c["requests_per_second_one_core"] for n in shards], linestyle=":", color="grey",
               label="N x one shard")
        b.set_xlabel("Redis Cluster shards")
        b.set_ylabel("requests / s")
        b.set_title("What the design carries")
        b.legend(fontsize=8)
        written.append(_save(fig, directory / "scale-redis.png"))
    return [f"wrote {path}" for path in written]


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path
