"""The rate limits and token quotas that apply to a key and to its owner.

Each limit is the override on the key (or on the person's Account) when one is set, else the default
from settings. 0 means no limit. inference/accounting/ratelimit.py enforces them; this module only decides them.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

LIMIT_FIELDS = ["requests_per_minute", "tokens_per_minute", "concurrent_requests", "tokens_per_day",
                "tokens_per_month"]


@dataclass(frozen=True)
class Limits:
    requests_per_minute: int = 0
    tokens_per_minute: int = 0
    concurrent_requests: int = 0
    tokens_per_day: int = 0
    tokens_per_month: int = 0


def _resolve(overrides, defaults: dict[str, int]) -> Limits:
    values = {}
    for name in LIMIT_FIELDS:
        override = getattr(overrides, name, None) if overrides is not None else None
        values[name] = defaults[name] if override is None else override
    return Limits(**values)


def key_limits(api_key) -> Limits:
    return _resolve(api_key, settings.KEY_LIMITS)


def person_limits(account) -> Limits:
    """`account` may be None: a person nobody has set anything for gets the defaults."""
    return _resolve(account, settings.PERSON_LIMITS)
