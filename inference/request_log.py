"""The usage record of an API request that fails before generation takes it over.

generation._run writes the record of every request that reaches it: answered, refused by a rate limit
or a full queue, failed, or abandoned. A request can fail before that: a body that does not parse, an
unknown model or one the key may not use, too many choices, an embedding model asked to chat. The
views run those steps inside `until_generation`, which writes their record, once:

    principal = await authenticate(request)  # no caller, no record
    with request_log.until_generation(principal) as record:
        body = await parse_request(...)
        record.asked_for(body.model, streamed=bool(body.stream))
        ...

The boundary is the request's RequestMeter (inference/metering.py): `_run` makes one before anything
in it can fail and hands it to its UsageLog, so once ours is no longer the current meter, `_run`
records the request and we do not.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

from inference.caller import Caller
from inference.metering import RequestMeter
from inference.usage import UsageLog

MODEL_CHARS = 200  # UsageRecord.model holds this many


def _printable(model: object) -> str:
    # A client's model id goes into a record as it is, unless it could not be stored: not a string,
    # too long, or holding a lone surrogate (which UTF-8 cannot carry).
    if not isinstance(model, str):
        return ""
    return model[:MODEL_CHARS].encode("utf-8", "backslashreplace").decode("utf-8")


class EarlyRecord:
    """One request's record, written only if it fails before generation takes it over."""

    def __init__(self, caller: Caller) -> None:
        self.meter = RequestMeter([])  # measures nothing: nothing ran
        self.usage = UsageLog(caller, "", streamed=False, meter=self.meter)

    def asked_for(self, model: object, *, streamed: bool = False) -> None:
        self.usage.model = _printable(model)
        self.usage.streamed = streamed

    def failed(self, error: BaseException) -> None:
        if not self.meter.is_current:
            return  # generation made the request's own meter: its UsageLog writes the record
        if not self.usage.model:  # the body did not parse: the parser may still know the model
            self.asked_for(getattr(error, "requested_model", ""))
        self.usage.finish(error, disconnected=isinstance(error, asyncio.CancelledError))


@contextlib.contextmanager
def until_generation(caller: Caller) -> Iterator[EarlyRecord]:
    """Write the usage record of a request that fails in this block before generation takes it over."""
    record = EarlyRecord(caller)
    try:
        yield record
    except (Exception, asyncio.CancelledError) as error:
        record.failed(error)
        raise
