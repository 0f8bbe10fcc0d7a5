"""Middleware that is safe on the async hot path (STYLE.md §7.5): no ORM, no blocking I/O."""

from __future__ import annotations

import uuid

from asgiref.sync import iscoroutinefunction, markcoroutinefunction


def new_request_id() -> str:
    return "req_" + uuid.uuid4().hex


class RequestIdMiddleware:
    """Give every request an id, expose it as `request.request_id` and the `x-request-id` header.

    The OpenAI SDKs surface this header on errors (`APIStatusError.request_id`), so users can quote
    it in bug reports and we can find the request in our logs.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self.is_async:
            return self._acall(request)
        request.request_id = new_request_id()
        response = self.get_response(request)
        response["x-request-id"] = request.request_id
        return response

    async def _acall(self, request):
        request.request_id = new_request_id()
        response = await self.get_response(request)
        response["x-request-id"] = request.request_id
        return response
