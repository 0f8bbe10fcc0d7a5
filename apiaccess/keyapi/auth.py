"""Bearer API keys for the key API (synchronous, like DRF). Kept apart from the views so DRF's
settings can import it without importing the views, which import DRF's settings."""

from __future__ import annotations

from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication

from apiaccess import last_used, verification
from apiaccess.auth import bearer_token


class BearerKeyAuthentication(BaseAuthentication):
    def authenticate(self, request):
        plain = bearer_token(request)
        if plain is None:
            return None
        api_key, reason = verification.verify_key(plain)
        if api_key is None:
            raise exceptions.AuthenticationFailed(reason)
        last_used.record_now(api_key.pk)
        return api_key.user, api_key

    def authenticate_header(self, request):
        # Makes DRF answer 401 (not 403) to a missing or bad key.
        return 'Bearer realm="gatehouse"'
