"""Who is calling the API, as inference needs to know it: for model access, fairness and priority.

The API's authenticator (settings.API_AUTHENTICATOR, by default apiaccess.auth.authenticate) returns an
object of this shape. Inference depends on this shape only, not on the app that issues keys, so the
two apps do not import each other.
"""

from __future__ import annotations

from functools import cache
from typing import Protocol

from django.conf import settings
from django.utils.module_loading import import_string

from inference.accounting.ratelimit import LimitValues


class Caller(Protocol):
    user_id: int  # fairness: people are served in turn; the person's rate limits
    key_id: int  # the key's own rate limits

    @property
    def key_limits(self) -> LimitValues: ...  # inference/accounting/ratelimit.py; 0 = no limit

    @property
    def person_limits(self) -> LimitValues: ...

    @property
    def is_batch(self) -> bool: ...  # batch work yields to interactive work

    def may_use(self, public_id: str) -> bool: ...


@cache
def _authenticator():
    return import_string(settings.API_AUTHENTICATOR)


async def authenticate(request) -> Caller:
    """The caller of an API request, or an ApiError (401) from the configured authenticator."""
    return await _authenticator()(request)
