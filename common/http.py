"""Small helpers about the HTTP request itself."""

from __future__ import annotations

from django.conf import settings


def client_ip(request) -> str | None:
    """The caller's address for the audit trail; behind a trusted proxy, the one it forwarded."""
    if settings.TRUST_PROXY_HEADERS:
        # The rightmost entry is the one our proxy added; those left of it are the client's to invent.
        forwarded = request.headers.get("X-Forwarded-For", "").split(",")[-1].strip()
        if forwarded:
            return forwarded
    return request.META.get("REMOTE_ADDR") or None
