"""A base for middleware that runs natively under both WSGI and ASGI.

Django wraps a middleware that is not async-capable in a thread hop per request under ASGI (daphne);
these declare both capabilities and pick the path once, when the stack is built.
"""

from __future__ import annotations

from asgiref.sync import iscoroutinefunction, markcoroutinefunction


class HybridMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)
