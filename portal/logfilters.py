"""Logging filters (settings.LOGGING)."""

from __future__ import annotations

import logging

API_PREFIXES = ("/v1/", "/api/", "/ollama/")


class QuietRefusals(logging.Filter):
    """Drop django.request's "Service Unavailable: /v1/..." line for the API's 503s.

    Every API 503 is a refusal Gatehouse chose, with an OpenAI error code (queue_full, queue_timeout,
    service_unavailable while Redis is away, no node up), not a crash: a crash is a 500 and is still
    logged, with its traceback. The access log already has one line for each refusal, with its status,
    and a burst refused at a full queue would otherwise write two lines per request. Portal pages'
    503s (/healthz while the database or Redis is down) are still logged.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "status_code", None) != 503:
            return True
        path = getattr(getattr(record, "request", None), "path", "") or ""
        return not path.startswith(API_PREFIXES)
