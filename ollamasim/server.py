"""The aiohttp application: routes, the error/cancellation middleware, and the /sim control endpoints.

Run with `handler_cancellation=True`: when a client disconnects, aiohttp cancels its handler wherever it
is waiting (pending queue, load, slot, generation). That is how Ollama's request context cancellation is
simulated, and the `finally` blocks on the way out release queue places, slots and runner references.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from dataclasses import asdict
from typing import Any

from aiohttp import web

from ollamasim import native, openai_compat
from ollamasim.catalogue import Catalogue
from ollamasim.config import SimConfig
from ollamasim.native import STATE, TRACE, json_response
from ollamasim.scheduler import Scheduler, Trace
from ollamasim.state import State
from ollamasim.stats import Stats
from ollamasim.wire import ApiError

log = logging.getLogger("ollamasim")

FAULT_KEYS = {"fail_after_tokens", "stall_after_tokens", "error_message", "load_error", "load_stalls",
              "tokens_per_second", "time_to_first_token_ms", "load_seconds"}


def _not_found() -> web.Response:
    # gin answers unknown routes and wrong methods alike with a plain-text 404.
    return web.Response(status=404, text="404 page not found", content_type="text/plain")


def _error(request: web.Request, status: int, message: str) -> web.Response:
    if request.path.startswith("/v1/"):
        return openai_compat.error_response(status, message)
    return json_response({"error": message}, status=status)


@web.middleware
async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    state: State = request.app[STATE]
    trace = Trace()
    request[TRACE] = trace
    resource = request.match_info.route.resource
    if not request.path.startswith("/sim/"):
        state.stats.endpoints[resource.canonical if resource is not None else "unmatched"] += 1
    outcome = "error"
    try:
        try:
            response = await handler(request)
        except ApiError as exc:
            response = _error(request, exc.status, exc.message)
        except web.HTTPNotFound:
            response = _not_found()
        except web.HTTPMethodNotAllowed:
            response = _not_found()
        except web.HTTPRequestEntityTooLarge:
            response = _error(request, 400, "http: request body too large")
        except (asyncio.CancelledError, ConnectionResetError):
            # The client went away (handler cancelled, or a write to the closed socket failed).
            outcome = "cancelled"
            if trace.model:
                state.stats.cancelled(trace.model, trace.stage)
            raise
        except web.HTTPException:
            raise
        except Exception as exc:  # bad input must never produce a traceback page
            log.exception("unhandled error on %s", request.path)
            response = _error(request, 500, f"internal simulator error: {exc}")
        if response.status < 400 and not trace.errored:
            outcome = "completed"
        return response
    finally:
        if trace.model:
            state.stats.leave(trace.model, "in_flight")
            if outcome == "completed":
                state.stats.count(trace.model, "completed")
            elif outcome == "error":
                state.stats.count(trace.model, "errors")


# ---- /sim: control and inspection, not part of Ollama -----------------------------------------------
async def sim_stats(request: web.Request) -> web.Response:
    state = request.app[STATE]
    snapshot = state.stats.snapshot(state.scheduler.loaded_summary())
    snapshot["pending_queue"]["capacity"] = state.config.server.max_queue
    server = asdict(state.config.server)
    for key in ("keep_alive", "load_timeout"):
        if math.isinf(server[key]):
            server[key] = -1  # forever, as Ollama writes it
    server["max_runners"] = state.config.server.max_runners
    server["default_num_ctx"] = state.config.server.default_num_ctx
    snapshot["config"] = server
    return web.json_response(snapshot)


async def _json_or_empty(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ApiError(400, f"invalid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "expected a JSON object")
    return body


async def sim_reset(request: web.Request) -> web.Response:
    """Zero the counters. With {"unload": true} also unload every model (busy ones when they finish);
    with {"faults": true} also clear the faults set through /sim/faults."""
    state = request.app[STATE]
    body = await _json_or_empty(request)
    if body.get("unload"):
        state.scheduler.unload_all()
    if body.get("faults"):
        for entry in state.catalogue.entries():
            entry.faults.clear()
        state.scheduler.faults_changed()
    state.stats.reset()
    return web.json_response({"status": "ok", "loaded": [r["model"] for r in state.scheduler.loaded_summary()]})


async def sim_faults(request: web.Request) -> web.Response:
    """GET: the runtime overrides. POST {"model": m, <key>: value | null, ...}, {"model": m, "clear": true}
    (that model's faults) or {"clear": true} without a model (every model's faults)."""
    state = request.app[STATE]
    if request.method == "POST":
        body = await _json_or_empty(request)
        if "model" not in body and set(body) == {"clear"}:
            if body["clear"]:
                for entry in state.catalogue.entries():
                    entry.faults.clear()
                state.scheduler.faults_changed()
            return web.json_response({e.name.short: dict(e.faults) for e in state.catalogue.entries() if e.faults})
        entry = state.catalogue.lookup(str(body.get("model", "")))
        if entry is None:
            raise ApiError(404, f"model '{body.get('model', '')}' not found")
        unknown = set(body) - FAULT_KEYS - {"model", "clear"}
        if unknown:
            raise ApiError(400, f"unknown fault keys {sorted(unknown)}; known: {sorted(FAULT_KEYS)}")
        if body.get("clear"):
            entry.faults.clear()
        for key in FAULT_KEYS & set(body):
            if body[key] is None:
                entry.faults.pop(key, None)
            else:
                entry.faults[key] = body[key]
        state.scheduler.faults_changed()
    return web.json_response({e.name.short: dict(e.faults) for e in state.catalogue.entries() if e.faults})


def make_app(config: SimConfig) -> web.Application:
    app = web.Application(middlewares=[middleware], client_max_size=256 * 2**20)
    stats = Stats()
    state = State(config=config, catalogue=Catalogue(config.models, config.pullable, time.time_ns()),
                  scheduler=Scheduler(config.server, stats), stats=stats)
    app[STATE] = state
    native.add_routes(app)
    openai_compat.add_routes(app)
    app.router.add_get("/sim/stats", sim_stats, allow_head=False)
    app.router.add_post("/sim/reset", sim_reset)
    app.router.add_route("*", "/sim/faults", sim_faults)

    async def start_scheduler(app: web.Application) -> None:
        state.scheduler.start()

    async def stop_scheduler(app: web.Application) -> None:
        await state.scheduler.stop()

    app.on_startup.append(start_scheduler)
    app.on_cleanup.append(stop_scheduler)
    return app


async def serve(config: SimConfig, host: str, port: int, access_log: bool = False) -> None:
    """Serve until cancelled, printing one line once listening (with the real port when 0 was asked)."""
    app = make_app(config)
    runner = web.AppRunner(app, handler_cancellation=True, access_log=log if access_log else None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    server = site._server
    sockets = getattr(server, "sockets", None) or []
    bound = sockets[0].getsockname()[1] if sockets else port
    print(f"ollamasim {config.server.version} listening on http://{host}:{bound} "
          f"({len(config.models)} models, num_parallel={config.server.num_parallel})", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
