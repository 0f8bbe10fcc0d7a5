"""How many requests a second one Redis core carries, and a cluster of N shards.

1. The per-request sequence, through Gatehouse's own functions (the rate limiter's `acquire` and
   settlement, `queue.admit` and `queue.release`, a share of `queue.renew`, the usage record's write),
   run as fast as a few client processes can against a fresh redis-server, in three parts (the
   model's scripts, the person's, the usage record) and all together. Redis's own CPU time (INFO cpu,
   used_cpu_sys + used_cpu_user) per request, not the rate the clients reach, gives the ceiling: this
   machine's two cores cannot both run Redis flat out and drive it from Python.
2. The queues' state is set up like the simulated day's: each model is listed on as many nodes as the
   day's average request saw, a few of them ready, every slot busy and a few tickets waiting, so each
   admit and release walks the same node lists and forecasts as in the day. The model part is then
   scaled by the day's own measure (Redis time inside commands per request) against this one's.
3. Pub/sub on a cluster: grants are SPUBLISHed in the model's own slot (their cost is in the model
   part), but admit.lua's wake-up of the swap actor is a plain PUBLISH, which a Redis Cluster forwards
   to every shard. Measured on a local three-shard cluster: what a forwarded message costs a shard
   that has no subscriber, and one that delivers it.
4. N shards: every key of a model shares its hash tag, every key of a person theirs, and usage records
   spread over the usage shards, so load splits by the same CRC16 slots Redis Cluster uses, with the
   slots dealt to N shards in equal ranges as `redis-cli --cluster create` does. The busiest shard sets
   the pace; forwarded publishes and the actor's fixed reads do not spread.
"""

from __future__ import annotations

import itertools
import multiprocessing
import random
import time
import uuid
from collections import Counter, deque

import redis
from redis.crc import key_slot

from bench.scale.accounting import RedisCounters
from bench.scale.harness import InlineRedis, SimRedis
from common.store import keys
from tests.support.processes import eventually
from tests.support.redis_cluster import RedisCluster

CLIENT_PROCESSES = 2
MODELS = 24
READY_NODES = 3
WAITING = 8
SHARD_COUNTS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)
CLUSTER_SLOTS = 16384


class Limits:
    """Limits of a key and of its person, as the rate limiter reads them (inference/accounting/ratelimit.py)."""

    requests_per_minute = 600
    tokens_per_minute = 2_000_000
    concurrent_requests = 0  # a concurrency limit renews its claims from a task of its own: left out
    tokens_per_day = 50_000_000
    tokens_per_month = 1_000_000_000


def finish(coro):
    """Run a coroutine of the real code to its end: on an InlineRedis it never waits."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    raise RuntimeError("a coroutine waited on something the ceiling measurement does not provide")


def _use(client: InlineRedis) -> None:
    from inference.accounting import ratelimit, usage
    from inference.scheduler import queue, redis_epoch

    for module in (queue, ratelimit, usage):
        module.redis_client = lambda: client
    redis_epoch._current = None


def _policy(nodes: tuple[str, ...]):
    from inference.scheduler import queue

    return queue.Policy(concurrency=4, max_queue=64, lease_ms=600_000, batch_bound_ms=120_000, nodes=nodes)


def _prime(url: str, plan: dict) -> dict:
    """Every model: ready on a few of its nodes, every slot busy, WAITING tickets behind them."""
    from inference.scheduler import queue

    client = InlineRedis(redis.Redis.from_url(url, decode_responses=True))
    _use(client)
    state = {}
    for index, (model, nodes) in enumerate(plan["models"].items()):
        # Born a minute ago: a model's state younger than REDIS_RESTART_GRACE_SECONDS grants nothing.
        client.sync.set(keys.born(model), queue.now_ms() - 60_000)
        for node in nodes[:READY_NODES]:
            finish(queue.set_place(model, node, "ready"))
        owner = f"bench-{index % plan['workers']}"
        running, waiting = deque(), deque()
        for n in range(4 * READY_NODES + WAITING):
            ticket = f"p{index}-{n}"
            result = finish(queue.admit(model, _policy(nodes), owner=owner, user=str(n), batch=False, tickets=[ticket]))
            (running if ticket in result.granted else waiting).append(ticket)
        state[model] = (running, waiting)
    client.release()
    return state


def _worker(url: str, index: int, plan: dict, state: dict, parts: tuple[str, ...], seconds: float, out) -> None:
    try:
        out.put(_requests(url, index, plan, state, parts, seconds))
    except Exception as exc:  # noqa: BLE001 - the parent reports it instead of waiting for a count
        out.put(exc)


def _requests(url: str, index: int, plan: dict, state: dict, parts: tuple[str, ...], seconds: float) -> int:
    from inference.accounting import ratelimit, usage
    from inference.scheduler import queue

    client = InlineRedis(redis.Redis.from_url(url, decode_responses=True))
    _use(client)
    rng = random.Random(index)
    owner = f"bench-{index}"
    mine = [m for i, m in enumerate(plan["models"]) if i % plan["workers"] == index]
    renew_every = plan["requests_per_renewal"]
    count = 0
    deadline = time.perf_counter() + seconds
    for model in itertools.cycle(mine):
        if time.perf_counter() >= deadline:
            break
        nodes, (running, waiting) = plan["models"][model], state[model]
        if parts == ("renew",):  # a web process's renewal of its tickets of a model: counted per ticket
            tickets = [*list(waiting)[:1], *running][:plan["renew_tickets"]]
            finish(queue.renew(model, _policy(nodes), tickets))
            count += len(tickets)
            continue
        person = rng.randrange(1, plan["people"] + 1)
        grant = None
        if "person" in parts:
            grant = finish(ratelimit.acquire(user_id=person, key_id=person, key_limits=Limits, person_limits=Limits,
                                             estimate=300))
        if "model" in parts:
            ticket = f"{owner}-{count}"
            policy = _policy(nodes)
            result = finish(queue.admit(model, policy, owner=owner, user=str(person), batch=False, tickets=[ticket]))
            if result.admitted:
                waiting.append(ticket)
            granted = finish(queue.release(model, policy, running.popleft(), 12_000, owner=owner))
            for done in granted:
                waiting.remove(done)
                running.append(done)
            if renew_every and count % renew_every == 0:
                finish(queue.renew(model, policy, [*running, *waiting]))
        if grant is not None:
            finish(grant._settle(350))
        if "usage" in parts:
            at = time.time()
            fields = {"at": f"{at:.3f}", "user": str(person), "key": str(person), "model": model, "node": nodes[0],
                      "status": "200", "reason": "ok", "prompt_tokens": "300", "completion_tokens": "350",
                      "queue_wait_ms": str(rng.randrange(0, 5000)), "ttft_ms": "250", "duration_ms": "12000",
                      "gpu_seconds": "12.000000", "priority": "interactive", "streamed": "1", "disconnected": "0"}
            finish(usage._write(uuid.uuid4().hex, fields))
        count += 1
    client.release()
    return count


def _run(server: SimRedis, plan: dict, parts: tuple[str, ...], seconds: float, processes: int) -> dict:
    server_client = redis.Redis.from_url(server.url)
    server_client.flushall()
    server_client.close()
    state = _prime(server.url, plan | {"workers": processes})
    counters = RedisCounters(server.url)
    calls, usec = counters.snapshot()
    cpu = counters.cpu_seconds()
    out = multiprocessing.get_context("fork").Queue()
    workers = [multiprocessing.get_context("fork").Process(
        target=_worker, args=(server.url, i, plan | {"workers": processes}, state, parts, seconds, out))
        for i in range(processes)]
    began = time.perf_counter()
    for worker in workers:
        worker.start()
    counts = [out.get(timeout=seconds + 120) for _ in workers]
    for count in counts:
        if isinstance(count, Exception):
            raise RuntimeError("a ceiling client failed") from count
    done = sum(counts)
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - began
    after_calls, after_usec = counters.snapshot()
    cpu = counters.cpu_seconds() - cpu
    counters.close()
    return {"parts": parts, "requests": done, "seconds": round(elapsed, 2), "requests_per_second": round(done / elapsed),
            "redis_cpu_seconds": round(cpu, 3), "redis_busy_share": round(cpu / elapsed, 3),
            "cpu_us_per_request": round(cpu / max(1, done) * 1e6, 1),
            "commands_per_request": round((after_calls - calls).total() / max(1, done), 1),
            "scripts_per_request": round((after_calls - calls)["evalsha"] / max(1, done), 3),
            "cpu_us_per_script": round(cpu / max(1, (after_calls - calls)["evalsha"]) * 1e6, 1),
            "command_us_per_request": round((after_usec - usec).total() / max(1, done), 1),
            "evalsha_us_per_request": round((after_usec - usec)["evalsha"] / max(1, done), 1)}


# -- pub/sub on a cluster -------------------------------------------------------------------------------

def measure_forwarded_publish(messages: int = 100_000) -> dict:
    """CPU a shard spends on a PUBLISH made on another shard: without a subscriber, and delivering it to one."""
    cluster = RedisCluster()  # the suite's: three masters on free ports (tests/support/redis_cluster.py)
    try:
        origin, quiet, listening = (redis.Redis(port=p) for p in cluster.ports)
        subscriber = redis.Redis(port=cluster.ports[2]).pubsub()
        subscriber.subscribe("gh:grants:bench")
        eventually(lambda: (m := subscriber.get_message(timeout=0.1)) and m["type"] == "subscribe",
                   what="the subscription confirmed")
        cpu = [RedisCounters(f"redis://127.0.0.1:{p}/0") for p in cluster.ports]
        before = [c.cpu_seconds() for c in cpu]
        for start in range(0, messages, 1000):
            pipe = origin.pipeline(transaction=False)
            for n in range(start, min(messages, start + 1000)):
                pipe.publish("gh:grants:bench", f"ticket-{n} http://node-000:11434")
            pipe.execute()
        received = 0
        deadline = time.monotonic() + 30
        while received < messages and time.monotonic() < deadline:
            if subscriber.get_message(timeout=0.5) is not None:
                received += 1
        spent = [c.cpu_seconds() - b for c, b in zip(cpu, before, strict=True)]
        for c in cpu:
            c.close()
        subscriber.close()
        for client in (origin, quiet, listening):
            client.close()
        return {"messages": messages, "delivered": received,
                "origin_us": round(spent[0] / messages * 1e6, 2),
                "forwarded_no_subscriber_us": round(spent[1] / messages * 1e6, 2),
                "forwarded_delivered_us": round(spent[2] / messages * 1e6, 2)}
    finally:
        cluster.stop()


# -- the estimate -----------------------------------------------------------------------------------

def shard_of(tag: str, shards: int) -> int:
    return key_slot(("{" + tag + "}").encode()) * shards // CLUSTER_SLOTS


def estimate_shards(per_request: dict, fixed: dict, model_share: dict, person_share: dict, usage_tags: list[str],
                    publishes_per_request: float, deliveries_per_request: float, forwarded: dict,
                    fixed_tags: dict) -> list[dict]:
    """Requests/s when the busiest of N shards is at one core. per_request: CPU seconds of one request's
    model, person and usage parts; fixed: CPU seconds per second that do not grow with requests (the
    actor's reads, spread by model; `fixed_tags` names the global keys' tags and their CPU/s)."""
    rows = []
    for shards in SHARD_COUNTS:
        load = [0.0] * shards  # CPU seconds per request, per shard
        base = [0.0] * shards  # CPU seconds per second, whatever the request rate
        for model, share in model_share.items():
            s = shard_of(model, shards)
            load[s] += per_request["model"] * share
            base[s] += fixed["per_model"] * fixed["model_weight"].get(model, 0)
        for person, share in person_share.items():
            load[shard_of(person, shards)] += per_request["person"] * share
        for tag in usage_tags:
            load[shard_of(tag, shards)] += per_request["usage"] / len(usage_tags)
        for tag, cpu in fixed_tags.items():
            base[shard_of(tag, shards)] += cpu
        if shards > 1:
            # Every PUBLISH reaches every shard; the subscribers (the web processes) listen on one.
            for s in range(shards):
                load[s] += publishes_per_request * forwarded["forwarded_no_subscriber_us"] / 1e6
            load[0] += deliveries_per_request * (forwarded["forwarded_delivered_us"] - forwarded["forwarded_no_subscriber_us"]) / 1e6
        rate = min((1 - fixed_cpu) / per_request_cpu for fixed_cpu, per_request_cpu in zip(base, load, strict=True)
                   if per_request_cpu > 0)
        busiest = max(range(shards), key=lambda s: load[s] * rate + base[s])
        rows.append({"shards": shards, "requests_per_second": round(rate),
                     "busiest_share": round(load[busiest] / sum(load), 3)})
    return rows


def measure_actor_reads(server: SimRedis, models: dict[str, tuple[str, ...]], rounds: int = 60) -> dict:
    """Redis CPU of the swap actor's reads each round (SwapActor.round: the leader lease, note_born and
    model_states of every model), for the day's catalogue: it runs five times a second whatever the load."""
    from common.store import scripts
    from inference.scheduler import queue, swapper

    client = InlineRedis(redis.Redis.from_url(server.url, decode_responses=True))
    _use(client)
    counters = RedisCounters(server.url)
    lease = scripts.get(client, "lease_renew")
    calls, _ = counters.snapshot()
    cpu = counters.cpu_seconds()
    for _ in range(rounds):
        finish(lease(keys=[keys.LEADER], args=["bench", swapper.LEASE_MS]))
        finish(queue.note_born(list(models)))
        finish(queue.model_states({model: list(nodes) for model, nodes in models.items()}))
    cpu = counters.cpu_seconds() - cpu
    commands = (counters.snapshot()[0] - calls).total()
    counters.close()
    client.release()
    return {"rounds": rounds, "commands_per_round": round(commands / rounds),
            "cpu_us_per_round": round(cpu / rounds * 1e6), "cpu_us_per_command": round(cpu / max(1, commands) * 1e6, 3)}


def measure(summary: dict, raw: dict, *, seconds: float = 6.0, progress=print) -> dict:
    day = summary["redis"]
    nodes_per_request = max(1, round(summary["world"]["nodes_per_request_mean"]))
    people = summary["world"]["people"]

    # A renewal call carries a process's tickets of one model: as many as the day's calls did on average.
    samples = raw["renew_samples"]
    renew_tickets = max(1, round(sum(s["tickets"] for s in samples) / max(1, sum(s["scripts"] for s in samples))))

    def plan(nodes: int) -> dict:
        names = tuple(f"http://node-{i:03d}:11434" for i in range(nodes))
        return {"models": {f"ceiling-{i:02d}:latest": names for i in range(MODELS)}, "people": people,
                "requests_per_renewal": 0, "renew_tickets": renew_tickets}

    catalogue = {name: tuple(f"http://node-{i:03d}:11434" for i in range(model["nodes"]))
                 for name, model in raw["models"].items()}
    server = SimRedis()
    runs = {}
    try:
        for name, nodes, parts in (("model", nodes_per_request, ("model",)), ("model_8_nodes", 8, ("model",)),
                                   ("person", nodes_per_request, ("person",)), ("usage", nodes_per_request, ("usage",)),
                                   ("all", nodes_per_request, ("person", "model", "usage")),
                                   ("renew", nodes_per_request, ("renew",))):
            runs[name] = _run(server, plan(nodes), parts, seconds, CLIENT_PROCESSES)
            unit = "ticket renewals" if name == "renew" else "requests"
            progress(f"  {name}: {runs[name]['requests_per_second']:,} {unit}/s from {CLIENT_PROCESSES} processes, "
                     f"Redis {runs[name]['cpu_us_per_request']} us CPU each ({100 * runs[name]['redis_busy_share']:.0f} % busy)")
        redis.Redis.from_url(server.url).flushall()
        reads = measure_actor_reads(server, catalogue)
        progress(f"  the swap actor's reads: {reads['commands_per_round']:,} commands a round, {reads['cpu_us_per_round']:,} us CPU")
    finally:
        server.stop()
    forwarded = measure_forwarded_publish()
    progress(f"  a PUBLISH forwarded to a shard costs it {forwarded['forwarded_no_subscriber_us']} us "
             f"({forwarded['forwarded_delivered_us']} us when it delivers it)")

    # A script call's cost is mostly its own (the call, the policy's node list, the forecast), not the
    # few commands it runs on the way: the model part at the day's script calls per request, each at
    # what one costs in the measured state (nodes per model as in the day).
    per_command = runs["model"]["cpu_us_per_request"] / runs["model"]["commands_per_request"] / 1e6
    renew = day["renewals_at_real_pace"]
    # Each ticket is renewed while it lives: a process renews its tickets of a model in one call, every
    # second while one of them waits, else every 5 s. The measured calls carry as many tickets as the
    # day's did on average, one of them waiting (its place and expected wait are forecast): an upper bound.
    renew_scripts_per_request = renew["scripts_per_second"] * summary["runtime"]["simulated_seconds"] / day["requests"]
    per_request = {
        "model": day["request_path"]["scripts_per_request"] * runs["model"]["cpu_us_per_script"] / 1e6,
        "renewals": renew_scripts_per_request * runs["renew"]["cpu_us_per_script"] / 1e6,
        "person": runs["person"]["cpu_us_per_request"] / 1e6,
        "usage": runs["usage"]["cpu_us_per_request"] / 1e6}
    actor = day["actor_at_real_pace"]
    fixed = {"reads": 5 * reads["cpu_us_per_round"] / 1e6,
             "dispatches_and_polls": actor["dispatch_and_poll_commands_per_second"] * per_command}
    one_core = (1 - sum(fixed.values())) / sum(per_request.values())
    calls = raw["calls"]
    model_share = {m: n / len(calls) for m, n in Counter(c[1] for c in calls).items()}
    person_share = {f"{p + 1}": n / len(calls) for p, n in Counter(c[2] for c in calls).items()}
    weight = {m: (5 + v["nodes"]) for m, v in raw["models"].items()}
    model_weight = {m: w / sum(weight.values()) for m, w in weight.items()}
    usage_tags = [f"usage:{s}" for s in range(keys.USAGE_SHARDS)] if hasattr(keys, "USAGE_SHARDS") else ["usage"]
    publishes = day["request_path"]["publishes_per_request"]
    deliveries = day["request_path"]["deliveries_per_request"]
    shards = estimate_shards({"model": per_request["model"] + per_request["renewals"], "person": per_request["person"],
                              "usage": per_request["usage"]},
                             {"per_model": sum(fixed.values()), "model_weight": model_weight}, model_share,
                             person_share, usage_tags, publishes, deliveries, forwarded, {})
    nodes_trend = (runs["model"]["cpu_us_per_request"] - runs["model_8_nodes"]["cpu_us_per_request"]) / (nodes_per_request - 8) \
        if nodes_per_request > 8 else None
    return {"sequence": "limit_admit, admit, release, limit_settle, usage_write; lease renewals while it lives",
            "client_processes": CLIENT_PROCESSES, "runs": runs, "actor_reads": reads, "forwarded_publish": forwarded,
            "state": {"models": MODELS, "nodes_per_model": nodes_per_request, "ready_nodes": READY_NODES,
                      "waiting": WAITING},
            "requests_measured": runs["all"]["requests"], "redis_busy_share": runs["all"]["redis_busy_share"],
            "cpu_us_per_script_command": round(per_command * 1e6, 3),
            "cpu_us_per_model_script": runs["model"]["cpu_us_per_script"],
            "cpu_us_per_renew_script": runs["renew"]["cpu_us_per_script"],
            "renew_scripts_per_request": round(renew_scripts_per_request, 2), "renew_tickets_per_call": renew_tickets,
            "model_cpu_us_per_extra_node": round(nodes_trend, 2) if nodes_trend is not None else None,
            "per_request_cpu_us": {k: round(v * 1e6, 1) for k, v in per_request.items()},
            "redis_cpu_us_per_request": round(sum(per_request.values()) * 1e6, 1),
            "fixed_cpu_share": round(sum(fixed.values()), 4),
            "fixed_cpu": {k: round(v, 4) for k, v in fixed.items()},
            "requests_per_second_one_core": round(one_core),
            "day_peak_requests_per_second": round(max(summary["hourly"]["arrivals"]) / 3600, 1),
            "day_peak_share_of_one_core": round(sum(fixed.values()) + max(summary["hourly"]["arrivals"]) / 3600
                                                * sum(per_request.values()), 4),
            "publishes_per_request": publishes, "deliveries_per_request": deliveries,
            "usage_shards": len(usage_tags), "top_model_share": summary["world"]["top_model_share"],
            "shards": shards}
