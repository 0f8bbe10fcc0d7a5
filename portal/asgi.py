"""ASGI entry point: daphne serves HTTP (Django, async views for the API) and websockets (channels).

API paths get their own Django handler with a one-entry middleware stack. Django's stock
middlewares (sessions, CSRF, auth, messages...) are MiddlewareMixin classes, and under ASGI each of
their hooks runs through sync_to_async in the one shared sync thread: a dozen thread hops per
request, serialised across all requests. The API needs none of them (bearer keys, no cookies), so
skipping them is most of what keeps Gatehouse's added latency small (bench/overhead.py).
"""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

from channels.routing import ProtocolTypeRouter  # noqa: E402
from django.core.asgi import get_asgi_application  # noqa: E402
from django.core.handlers.asgi import ASGIHandler  # noqa: E402

from batches.limits import request_body_limit  # noqa: E402

django_asgi_app = get_asgi_application()


class ApiASGIHandler(ASGIHandler):
    """Django's ASGI handler with settings.API_MIDDLEWARE instead of settings.MIDDLEWARE."""

    def load_middleware(self, is_async=False):
        from django.conf import settings

        site_middleware = settings.MIDDLEWARE
        settings.MIDDLEWARE = settings.API_MIDDLEWARE
        try:
            super().load_middleware(is_async=is_async)
        finally:
            settings.MIDDLEWARE = site_middleware

    async def __call__(self, scope, receive, send):
        # Under portal/web.py an over-limit body never gets this far; under another ASGI server (which
        # hands the body over as the application reads it) this refuses it before reading it.
        limit = request_body_limit(scope["path"])
        if _declared_length(scope) > limit:
            await _refuse_too_large(send, limit)
            return
        # Django wraps each request in a ThreadSensitiveContext, which starts a fresh thread for the
        # request's first sync call (the request_started signal sends one on every request). API views
        # make sync calls only to refresh caches, so they share the process's one sync thread instead.
        await self.handle(scope, receive, send)


def _declared_length(scope) -> int:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            return int(value) if value.isdigit() else 0
    return 0


async def _refuse_too_large(send, limit: int) -> None:
    import json

    from common.apierrors import ApiError
    from inference.web.middleware import new_request_id

    body = json.dumps(ApiError.payload_too_large(limit).as_dict()).encode()
    await send({"type": "http.response.start", "status": 413, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"x-request-id", new_request_id().encode()), (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


api_asgi_app = ApiASGIHandler()
API_PREFIXES = ("/v1/", "/api/", "/ollama/")


_scheduler_started = False


async def http_app(scope, receive, send):
    global _scheduler_started
    if not _scheduler_started:
        from inference.scheduler import slots

        slots.start()
        _scheduler_started = True
    app = api_asgi_app if scope["path"].startswith(API_PREFIXES) else django_asgi_app
    await app(scope, receive, send)


from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.urls import path  # noqa: E402

from portal.dashboard import DashboardConsumer  # noqa: E402

websocket_app = AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter([
    path("ws/dashboard/", DashboardConsumer.as_asgi()),
])))

application = ProtocolTypeRouter({"http": http_app, "websocket": websocket_app})
