"""Response headers for browsers: a Content-Security-Policy on portal pages.

Django 5.2 has no CSP of its own (it arrives in Django 6.0). Every script and style sheet the portal
uses is served by Gatehouse itself (no CDN), so `'self'` is enough for scripts; styles also allow
inline `style` attributes, which Django's admin templates use.
"""

from __future__ import annotations

from django.conf import settings

from common.hybrid import HybridMiddleware


def _add_policy(response):
    policy = settings.CONTENT_SECURITY_POLICY
    if policy and "Content-Security-Policy" not in response:
        response["Content-Security-Policy"] = policy
    return response


class ContentSecurityPolicyMiddleware(HybridMiddleware):
    """Adds settings.CONTENT_SECURITY_POLICY to responses that do not set their own.

    Async-capable, so it adds no thread hop of its own under daphne (portal/asgi.py explains the cost).
    """

    def __call__(self, request):
        if self.is_async:
            return self._acall(request)
        return _add_policy(self.get_response(request))

    async def _acall(self, request):
        return _add_policy(await self.get_response(request))
