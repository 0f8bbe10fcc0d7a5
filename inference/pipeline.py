"""The request pipeline: every generation request runs this one sequence, whatever protocol it came in.

    handle(http_request, protocol)
      1. authenticate          the bearer key -> the caller                    (inference/caller.py)
    serve(caller, protocol, read)     (a batch's lines start here: batches/lines.py)
      2. parse                 the body, by the protocol's schema              (inference/openai_api/parsing.py)
      3. resolve the model     the id -> a route in the catalogue snapshot     (inference/registry.py)
      4. canonical request     the protocol's body -> a GenerationRequest      (inference/engines/request.py)
      run(caller, request)
      5. prepare               one payload per upstream call, per engine kind  (inference/engines/)
      6. limits                the key's and the person's rate limits          (inference/accounting/ratelimit.py)
      7. admission             one queue ticket per upstream call               (inference/scheduler/slots.py)
      8. call the engine       each call when its slot comes, relaying parts   (inference/upstream.py)
      9. clean up, once        release the slots, settle the limits, record usage (`Cleanup`)
     10. render                the protocol turns canonical parts into its answer (inference/openai_api/openai_protocol.py)

A protocol (the OpenAI routes today) knows its schema, how its body becomes a canonical request, and how
to render canonical parts; nothing in this module knows a wire format. Errors are `ApiError`s, or the
scheduler's `SchedulingError`s (steps 6-8; inference/web/http_errors.py makes them ApiErrors), rendered by
the view decorator (inference/web/api.py). Whatever step fails, `Cleanup` writes the request's one usage
record (with the model it asked for, when the body got that far) and frees what it held.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from django.conf import settings

from common.apierrors import ApiError
from inference import registry
from inference.accounting import ratelimit
from inference.accounting.metering import RequestMeter, prompt_estimates
from inference.accounting.usage import UsageLog
from inference.caller import Caller, authenticate
from inference.engines.parts import Embeddings, Part
from inference.engines.request import GenerationRequest
from inference.openai_api.parsing import parse_request
from inference.registry import ModelRoute
from inference.scheduler import slots
from inference.scheduler.scheduling_errors import SchedulingError
from inference.streaming import WaitingStream
from inference.upstream import MergedStream, Payloads, UpstreamCall, gather_results
from inference.web.api import read_body

QUEUE_WAIT_HEADER = "x-gatehouse-queue-wait-ms"
QUEUE_POSITION_HEADER = "x-gatehouse-queue-position"
QUEUE_ETA_HEADER = "x-gatehouse-queue-estimated-wait-ms"


@dataclass
class Relay:
    """What a generation produced: the response headers, then whole answers or a stream of parts."""

    headers: dict[str, str] = field(default_factory=dict)
    answers: list[Part | Embeddings] | None = None
    stream: MergedStream | WaitingStream | None = None


class FrontProtocol(Protocol):
    schema: Any

    def canonical(self, body: Any, route: ModelRoute) -> GenerationRequest: ...

    def errors(self, route: ModelRoute) -> Any: ...  # a context manager that rewords engine errors

    def render(self, request: GenerationRequest, relay: Relay) -> Any: ...


async def handle(http_request, protocol: FrontProtocol):
    caller = await authenticate(http_request)  # no caller, no usage record: nobody to count it against
    return await serve(caller, protocol, lambda: read_body(http_request))


async def serve(caller: Caller, protocol: FrontProtocol, read: Callable[[], bytes], *,
                unrecorded: tuple[type[BaseException], ...] = ()):
    """Steps 2-10 for a known caller and the body `read` returns: an API request, or a batch's line
    (batches/lines.py), which runs exactly as the same request sent to its endpoint would. A request
    that ends in one of the `unrecorded` errors writes no usage record (a batch line the queue had no
    room for is tried again later: no one sent that attempt, and its 503 reached no one)."""
    cleanup = Cleanup(caller, unrecorded)
    try:
        body = await parse_request(protocol.schema, read())
        cleanup.asked_for(body.model, streamed=bool(getattr(body, "stream", False)))
        route = await resolve_model(caller, body.model)
        request = protocol.canonical(body, route)
        with protocol.errors(route):
            return protocol.render(request, await run(caller, request, cleanup))
    except (Exception, asyncio.CancelledError) as error:
        cleanup.finish(error)  # a no-op if the request already finished (a stream ends in its own time)
        raise


async def resolve_model(caller: Caller, model_id: str) -> ModelRoute:
    route = await registry.get_model(model_id)
    # A model the key may not use is answered exactly like one that does not exist, as OpenAI does:
    # a different answer would tell a key holder which models exist.
    if route is None or not caller.may_use(route.public_id):
        usable = [r.public_id for r in await registry.all_models() if caller.may_use(r.public_id)]
        error = ApiError.model_not_found(model_id)
        suggestions = registry.closest_ids(model_id, usable)
        if suggestions:
            error.message += " Did you mean " + " or ".join(f"`{s}`" for s in suggestions) + "?"
        raise error
    return route


async def node_kinds(route: ModelRoute) -> set[str]:
    """The engine kinds among the model's nodes (Ollama when it has none yet: the common case to check)."""
    kinds = set()
    for url in route.node_urls:
        node = await registry.node_info(url)
        kinds.add(node.kind if node is not None else "ollama")
    return kinds or {"ollama"}


class Cleanup:
    """The one clean-up step of a request, run once whatever happened and wherever it failed: release its
    slots (each call releases its own as it ends; this covers calls that never started), settle its rate
    limits with the tokens it used, and write its usage record. The last two go through the outbox, in
    the background, so the response never waits for them and a Redis outage delays them without loss."""

    def __init__(self, caller: Caller, unrecorded: tuple[type[BaseException], ...] = ()) -> None:
        self.unrecorded = unrecorded
        self.meter = RequestMeter([])  # nothing measured until the request's calls are known
        self.usage = UsageLog(caller, "", streamed=False, meter=self.meter)
        self.grant: ratelimit.Grant | None = None
        self.admission: slots.Admission | None = None
        self.done = False

    def asked_for(self, model: object, *, streamed: bool) -> None:
        self.usage.model = printable_model(model)
        self.usage.streamed = streamed

    def measure(self, request: GenerationRequest) -> RequestMeter:
        """The meter of the request's calls, from their prompt estimates until the nodes report counts."""
        self.meter = self.usage.meter = RequestMeter(prompt_estimates(request))
        self.usage.model = request.route.public_id
        return self.meter

    def finish(self, error: BaseException | None = None, *, disconnected: bool | None = None) -> None:
        if self.done:
            return
        self.done = True
        if error is not None and not self.usage.model:  # the body did not parse: the parser may know the model
            self.asked_for(getattr(error, "requested_model", ""), streamed=False)
        if self.admission is not None:
            self.admission.release_all()
            self.usage.queue_wait_ms = self.admission.queue_wait_ms
        if self.grant is not None:
            self.grant.settle(self.meter.total_tokens)
            # Errors after the limiter admitted the request carry its headers.
            if isinstance(error, ApiError):
                error.headers.update(self.grant.headers)
            elif isinstance(error, SchedulingError):  # until inference/web/http_errors.py makes it an ApiError
                error.limit_headers.update(self.grant.headers)
        if disconnected is None:
            disconnected = isinstance(error, asyncio.CancelledError)
        if not isinstance(error, self.unrecorded):
            self.usage.finish(error, disconnected=disconnected)

    def stream_ended(self, merged: MergedStream) -> None:
        self.finish(merged.error, disconnected=merged.error is None and not merged.complete)

    def headers(self) -> dict[str, str]:
        limits = self.grant.headers if self.grant is not None else {}
        admission = self.admission
        if admission is not None and admission.waiting:
            # A stream that starts before its turn cannot know its wait yet: it says where it stands
            # instead, and its wait comes in a comment when its turn comes (inference/streaming.py).
            return {QUEUE_POSITION_HEADER: str(admission.position), QUEUE_ETA_HEADER: str(admission.eta_ms), **limits}
        return {QUEUE_WAIT_HEADER: str(admission.queue_wait_ms if admission else 0), **limits}


MODEL_CHARS = 200  # UsageRecord.model holds this many


def printable_model(model: object) -> str:
    """A client's model id as a usage record can hold it: a string, not too long, no lone surrogate
    (which UTF-8 cannot carry)."""
    if not isinstance(model, str):
        return ""
    return model[:MODEL_CHARS].encode("utf-8", "backslashreplace").decode("utf-8")


def check_fan_out(request: GenerationRequest) -> None:
    """Every upstream call takes a slot; one request may not open more than the cap at once."""
    cap = settings.MAX_UPSTREAM_CALLS_PER_REQUEST
    if request.call_count <= cap:
        return
    if len(request.texts) > cap:
        raise ApiError.invalid_request(
            f"Too many prompts in one request: {len(request.texts)} (at most {cap}). Send them in several requests.",
            param="prompt",
        )
    raise ApiError.invalid_request(
        f"This request asks for {request.call_count} generations (n x prompts); at most {cap} are allowed per "
        f"request. Lower `n` or send the prompts in several requests.",
        param="n",
    )


async def run(caller: Caller, request: GenerationRequest, cleanup: Cleanup) -> Relay:
    """Steps 5-9: prepare, pass the limits, admit, call the engines; clean up once, whatever happens."""
    check_fan_out(request)
    payloads = Payloads(request)
    payloads.prepare(await node_kinds(request.route))
    meter = cleanup.measure(request)
    try:
        cleanup.grant = await ratelimit.acquire(
            user_id=caller.user_id, key_id=caller.key_id, key_limits=caller.key_limits,
            person_limits=caller.person_limits, estimate=meter.estimate)
        cleanup.admission = await slots.admit(request.route, user=str(caller.user_id), batch=caller.is_batch,
                                              calls=request.call_count)
    except BaseException as exc:
        cleanup.finish(exc)
        raise
    calls = [UpstreamCall(ticket, payloads, index, call_meter)
             for index, (ticket, call_meter) in enumerate(zip(cleanup.admission.tickets, meter.calls, strict=True))]
    if not request.stream:
        error: BaseException | None = None
        try:
            answers = await gather_results(calls)
        except BaseException as exc:
            error = exc
            raise
        finally:
            cleanup.finish(error)
        return Relay(cleanup.headers(), answers=answers)

    merged = MergedStream(calls, on_close=cleanup.stream_ended)
    if cleanup.admission.waiting:
        # Its turn has not come: start the stream now and tell the client where it stands (SSE comments
        # while it waits); errors from here on are reported in the stream.
        return Relay(cleanup.headers(), stream=WaitingStream(merged, cleanup.admission))
    try:
        await merged.open(settings.SSE_KEEPALIVE_SECONDS)
    except BaseException as exc:
        # An error before the stream started (it keeps its HTTP status), or the client left.
        await merged.aclose()
        cleanup.finish(exc)
        raise
    return Relay(cleanup.headers(), stream=merged)
