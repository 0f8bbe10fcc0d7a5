"""The site's own base URL, for the links and snippets Gatehouse hands out.

SITE_URL wins when it is set (a public name behind a proxy, say). Without it, the base URL is the one
the request came in on: its scheme and Host, which Django reads from X-Forwarded-Proto and
X-Forwarded-Host only when TRUST_PROXY_HEADERS is on (SECURE_PROXY_SSL_HEADER, USE_X_FORWARDED_HOST).
So `WEB_PORT=8100 make run` hands out :8100, and a name not in ALLOWED_HOSTS is never handed out.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.http import HttpRequest


class _HeaderRequest(HttpRequest):
    """A Django request made of headers only, for the web edge (portal/web.py), which checks a key
    before Django has a request: Django's own rules then read its scheme and host."""

    def __init__(self, headers, scheme: str) -> None:
        super().__init__()
        self._edge_scheme = scheme
        for name, value in headers.items():
            self.META["HTTP_" + name.upper().replace("-", "_")] = value

    def _get_scheme(self) -> str:
        return self._edge_scheme


def base_url(request=None) -> str:
    """SITE_URL, else scheme://host of `request` (no trailing slash); "" when neither is known, so a
    link built on it is still a working relative one."""
    if settings.SITE_URL:
        return settings.SITE_URL
    if request is None:
        return ""
    if not isinstance(request, HttpRequest):
        request = _HeaderRequest(request.headers, getattr(request, "scheme", "http"))
    if not request.META.get("HTTP_HOST") and not request.META.get("SERVER_NAME"):
        return ""
    try:
        return f"{request.scheme}://{request.get_host()}"
    except DisallowedHost:
        return ""


def local_url(host: str, port: int) -> str:
    """The URL of a server listening on host:port, as a browser on this machine would open it."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


def server_url() -> str:
    """SITE_URL, else where `make run` serves (WEB_HOST, WEB_PORT): for messages printed at start-up."""
    return settings.SITE_URL or local_url(settings.WEB_HOST, settings.WEB_PORT)
