"""API key format, generation and hashing. Pure functions: no database, no I/O.

A key looks like ``sk-gh-<lookup><secret>``: ``sk-`` because OpenAI clients and tools expect it,
``gh-`` to name Gatehouse (and to let secret scanners recognise leaked keys), an 8-character
lookup stem stored in clear for the indexed lookup, and a 40-character secret. Only the SHA-256 of
the whole key is stored: the key carries ~240 bits of randomness, so a slow password hash would
only add latency on the hot path without adding safety.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
from dataclasses import dataclass

KEY_PREFIX = "sk-gh-"
LOOKUP_LENGTH = 8
SECRET_LENGTH = 40
_ALPHABET = string.ascii_letters + string.digits


@dataclass(frozen=True)
class NewKey:
    plain: str
    lookup: str
    digest: str


def _random_text(length: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def digest_key(plain: str) -> str:
    return hashlib.sha256(plain.encode("utf-8")).hexdigest()


def generate_key() -> NewKey:
    plain = KEY_PREFIX + _random_text(LOOKUP_LENGTH) + _random_text(SECRET_LENGTH)
    return NewKey(plain=plain, lookup=lookup_of(plain) or "", digest=digest_key(plain))


def lookup_of(plain: str) -> str | None:
    """The lookup stem of a well-formed key, or None for anything that cannot be one of ours."""
    if not plain.startswith(KEY_PREFIX):
        return None
    body = plain[len(KEY_PREFIX):]
    if len(body) != LOOKUP_LENGTH + SECRET_LENGTH or not body.isalnum() or not body.isascii():
        return None
    return body[:LOOKUP_LENGTH]


def matches(plain: str, digest: str) -> bool:
    return hmac.compare_digest(digest_key(plain), digest)
