"""One scheduled inference request: the slot wait, then tokens paced like a real runner.

A Call holds a reference on its runner until it is closed, as Ollama holds one until the HTTP handler
returns; the keep_alive timer only starts after that.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from ollamasim import context, generation
from ollamasim.catalogue import ModelEntry
from ollamasim.options import Resolved
from ollamasim.scheduler import Runner, Trace
from ollamasim.state import State
from ollamasim.wire import ApiError, rfc3339nano_utc

RUNNER_STOPPED = ("model runner has unexpectedly stopped, this may be due to resource limitations or an "
                  "internal error, check ollama server logs for details")


def metrics(total: int, load: int, prompt_count: int, prompt_ns: int, eval_count: int, eval_ns: int) -> dict[str, int]:
    """api.Metrics with omitempty: zero values are left out."""
    values = {"total_duration": total, "load_duration": load, "prompt_eval_count": prompt_count,
              "prompt_eval_duration": prompt_ns, "eval_count": eval_count, "eval_duration": eval_ns}
    return {k: v for k, v in values.items() if v}


async def acquire_slot(state: State, entry: ModelEntry, runner: Runner, trace: Trace) -> None:
    """Wait (FIFO, unbounded) for one of the runner's NUM_PARALLEL slots."""
    name = entry.name.short
    trace.stage = "slot"
    if not runner.slots.try_acquire():
        state.stats.enter(name, "waiting_for_slot")
        try:
            await runner.slots.acquire()
        finally:
            state.stats.leave(name, "waiting_for_slot")
    state.stats.enter(name, "generating")
    trace.stage = "generation"


def release_slot(state: State, entry: ModelEntry, runner: Runner) -> None:
    runner.slots.release()
    state.stats.leave(entry.name.short, "generating")


class StopFilter:
    """Stop sequences: text is held back while it could be the start of one, and cut where one begins."""

    def __init__(self, stops: list[str]) -> None:
        self.stops = [s for s in stops if s]
        self.buffer = ""

    def feed(self, piece: str) -> tuple[str, bool]:
        self.buffer += piece
        hits = [i for i in (self.buffer.find(s) for s in self.stops) if i >= 0]
        if hits:
            out, self.buffer = self.buffer[: min(hits)], ""
            return out, True
        hold = 0
        for stop in self.stops:
            for k in range(min(len(stop) - 1, len(self.buffer)), 0, -1):
                if self.buffer.endswith(stop[:k]):
                    hold = max(hold, k)
                    break
        cut = len(self.buffer) - hold
        out, self.buffer = self.buffer[:cut], self.buffer[cut:]
        return out, False

    def flush(self) -> str:
        out, self.buffer = self.buffer, ""
        return out


class Call:
    """One scheduled request. It holds a runner reference until closed, as Ollama holds one until the
    handler returns; `immediate` is set for load/unload answers that need no decoding."""

    def __init__(self, state: State, trace: Trace, entry: ModelEntry, model: str) -> None:
        self.state = state
        self.trace = trace
        self.entry = entry
        self.model = model  # echoed exactly as the client sent it
        self.runner: Runner | None = None
        self.resolved: Resolved | None = None
        self.loaded_ns = 0
        self.immediate: dict[str, Any] | None = None
        self.format_error: str | None = None
        self.planner: Callable[[Any], generation.Plan] | None = None
        self.rng: Any = None
        self.top_logprobs = 0
        self.want_logprobs = False
        self.shift = True  # context shift: generation may run past num_ctx
        self.truncate = True  # the prompt may be cut to fit num_ctx
        # Tokens of the prompt as rendered for a runner of a given num_ctx (chat drops old messages).
        self.prompt_tokens_for: Callable[[int], int] = lambda num_ctx: 0
        self.chat = True
        self.stream = True
        self.context_in: list[int] | None = None
        self.prompt_pieces: list[str] = []
        self.output_ids: list[int] = []

    async def schedule(self, resolved: Resolved, keep_alive: float | None) -> None:
        self.resolved = resolved
        self.runner = await self.state.scheduler.acquire(self.entry, resolved, keep_alive, self.trace)
        self.loaded_ns = time.monotonic_ns()

    def close(self) -> None:
        if self.runner is not None:
            runner, self.runner = self.runner, None
            self.state.scheduler.release(runner)

    async def __aenter__(self) -> Call:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    # ---- decoding ----------------------------------------------------------------------------
    async def events(self) -> AsyncIterator[dict[str, Any]]:
        """Native response objects: content chunks, then a final one; an `{"error": ...}` ends early."""
        assert self.runner is not None and self.resolved is not None and self.planner is not None
        runner = self.runner
        if self.format_error:
            yield {"error": self.format_error}
            return
        await acquire_slot(self.state, self.entry, runner, self.trace)
        try:
            async for event in self._decode(runner):
                yield event
        finally:
            release_slot(self.state, self.entry, runner)

    async def _decode(self, runner: Runner) -> AsyncIterator[dict[str, Any]]:
        state, entry, resolved = self.state, self.entry, self.resolved
        assert resolved is not None and self.planner is not None
        plan = self.planner(self.rng)
        try:
            prompt_tokens = context.fit(
                self.prompt_tokens_for(runner.num_ctx), runner.num_ctx, truncate=self.truncate,
                context_shift=self.shift, num_keep=resolved.get("num_keep"),
                llama_server=state.config.server.behaviour.llama_server_runners)
        except ApiError as exc:
            # Refused before any token: the handler answers with this status (gin.H{"error", "status"}).
            self.trace.errored = True
            yield {"error": exc.message, "status": exc.status}
            return
        slot_ns = time.monotonic_ns()
        ttft = state.knob(entry, "time_to_first_token_ms") / 1000
        ptps = state.config.server.prompt_tokens_per_second
        await asyncio.sleep(ttft + (prompt_tokens / ptps if ptps > 0 else 0))
        first_ns = time.monotonic_ns()

        num_predict = resolved.get("num_predict")
        budget = float("inf") if num_predict is None or num_predict < 0 else num_predict
        if not self.shift:
            budget = min(budget, max(0, runner.num_ctx - prompt_tokens))
        options = resolved.values
        fail_after = options.get("sim_fail_after_tokens", entry.setting("fail_after_tokens"))
        stall_after = options.get("sim_stall_after_tokens", entry.setting("stall_after_tokens"))
        tps = state.knob(entry, "tokens_per_second")
        lp_rng = generation.make_rng(self.model, "logprobs", seed=resolved.get("seed"), temperature=0)
        stops = StopFilter(resolved.get("stop") or [])
        emitted = 0
        done_reason = "stop"
        held_logprobs: list[dict[str, Any]] = []

        async def tick(n: int = 1) -> None:
            nonlocal emitted
            emitted += n
            if tps > 0:
                delay = first_ns / 1e9 + emitted / tps - time.monotonic()
                if delay > 0.0005:
                    await asyncio.sleep(delay)
                    return
            if emitted % 32 == 0:
                await asyncio.sleep(0)  # stay fair to other streams at very high speeds

        async def step(n: int = 1) -> dict[str, Any] | None:
            """Before emitting n tokens: an injected fault (returned as an error line), an injected
            stall (hangs until the client goes away), then pacing."""
            if fail_after is not None and emitted >= fail_after:
                state.stats.count(entry.name.short, "injected_faults")
                self.trace.errored = True
                return {"error": entry.setting("error_message") or RUNNER_STOPPED}
            if stall_after is not None and emitted >= stall_after:
                await asyncio.Event().wait()
            await tick(n)
            return None

        def logprobs_for(pieces: list[str]) -> list[dict[str, Any]]:
            return generation.logprobs(lp_rng, pieces, self.top_logprobs) if self.want_logprobs else []

        for piece in plan.thinking:
            if emitted >= budget:
                done_reason = "length"
                break
            if error := await step():
                yield error
                return
            yield self._chunk(thinking=piece, logprobs=logprobs_for([piece]))
        else:
            if plan.tool_calls:
                if emitted + plan.tool_call_tokens > budget:
                    await tick(int(budget - emitted))  # the call was cut off: no tool call is parsed
                    done_reason = "length"
                else:
                    if error := await step(plan.tool_call_tokens):
                        yield error
                        return
                    yield self._chunk(tool_calls=plan.tool_calls)
            stopped = False
            for piece in plan.content:
                if emitted >= budget:
                    done_reason = "length"
                    break
                if error := await step():
                    yield error
                    return
                self.output_ids.append(generation.token_id(piece))
                held_logprobs.extend(logprobs_for([piece]))
                text, stopped = stops.feed(piece)
                if text:
                    yield self._chunk(content=text, logprobs=held_logprobs)
                    held_logprobs = []
                if stopped:
                    break
            if not stopped and (rest := stops.flush()):
                yield self._chunk(content=rest, logprobs=held_logprobs)

        end_ns = time.monotonic_ns()
        state.stats.count(entry.name.short, "prompt_tokens", prompt_tokens)
        state.stats.count(entry.name.short, "eval_tokens", emitted)
        totals = metrics(end_ns - self.trace.started_ns, self.loaded_ns - self.trace.started_ns,
                           prompt_tokens, first_ns - slot_ns, emitted, end_ns - first_ns)
        yield self._final(done_reason, totals, prompt_tokens, emitted)

    def _chunk(self, content: str = "", thinking: str | None = None, tool_calls: list[Any] | None = None,
               logprobs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"model": self.model, "created_at": rfc3339nano_utc()}
        if self.chat:
            message: dict[str, Any] = {"role": "assistant", "content": content}
            if thinking:
                message["thinking"] = thinking
            if tool_calls:
                message["tool_calls"] = tool_calls
            out["message"] = message
        else:
            out["response"] = content
            if thinking:
                out["thinking"] = thinking
            if tool_calls:
                out["tool_calls"] = tool_calls
        out["done"] = False
        if logprobs:
            out["logprobs"] = list(logprobs)
        return out

    def _final(self, reason: str, totals: dict[str, int], prompt_tokens: int, eval_count: int) -> dict[str, Any]:
        if self.chat:
            return {"model": self.model, "created_at": rfc3339nano_utc(),
                    "message": {"role": "assistant", "content": ""}, "done_reason": reason, "done": True, **totals}
        out: dict[str, Any] = {"model": self.model, "created_at": rfc3339nano_utc(), "response": "",
                               "done": True, "done_reason": reason}
        if self.context_in is not None:
            prompt_ids = self.context_in + [generation.token_id(p) for p in self.prompt_pieces]
            prompt_ids = ([1] * max(0, prompt_tokens - len(prompt_ids)) + prompt_ids)[-prompt_tokens:]
            output_ids = (self.output_ids + [2] * eval_count)[:eval_count]
            out["context"] = prompt_ids + output_ids
        out.update(totals)
        return out


def done_response(model: str, reason: str, chat: bool) -> dict[str, Any]:
    if chat:
        return {"model": model, "created_at": rfc3339nano_utc(), "message": {"role": "assistant", "content": ""},
                "done_reason": reason, "done": True}
    return {"model": model, "created_at": rfc3339nano_utc(), "response": "", "done": True, "done_reason": reason}
