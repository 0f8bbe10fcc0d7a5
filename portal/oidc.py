"""OpenID Connect single sign-on (mozilla-django-oidc), on when OIDC_ENABLED is set.

People are found again by the provider's stable subject id (`sub`), not by e-mail or user name,
which the provider may let them change. On a first sign-in, an existing account with the same
e-mail is linked only if the provider says that e-mail is verified; otherwise a new account is made.
"""

from __future__ import annotations

import re

from django.contrib.auth import get_user_model
from django.core.exceptions import SuspiciousOperation
from django.db import transaction
from django.utils import timezone
from mozilla_django_oidc.auth import OIDCAuthenticationBackend

from apiaccess.models import ExternalIdentity

_NOT_IN_USERNAME = re.compile(r"[^\w.@+-]")


class GatehouseOIDCBackend(OIDCAuthenticationBackend):
    def get_or_create_user(self, access_token, id_token, payload):
        claims = self.get_userinfo(access_token, id_token, payload)
        subject = str(claims.get("sub") or "")
        if not subject or subject != str(payload.get("sub")):
            # OIDC Core 5.3.2: the UserInfo response must be about the ID token's subject.
            raise SuspiciousOperation("the userinfo subject does not match the ID token's")
        return user_for_identity(str(payload.get("iss") or ""), subject, claims)


def user_for_identity(issuer: str, subject: str, claims: dict):
    """The account for this provider identity, linked or created on first sign-in; None if disabled."""
    User = get_user_model()
    now = timezone.now()
    with transaction.atomic():
        identity = ExternalIdentity.objects.select_related("user").filter(issuer=issuer, subject=subject).first()
        if identity is not None:
            identity.last_login_at = now
            identity.save(update_fields=["last_login_at"])
            user = identity.user
        else:
            user = _verified_email_match(claims) or User.objects.create_user(
                _free_username(claims), email=claims.get("email") or ""
            )
            ExternalIdentity.objects.create(user=user, issuer=issuer, subject=subject, last_login_at=now)
    return user if user.is_active else None


def _verified_email_match(claims: dict):
    email = claims.get("email") or ""
    if not email or claims.get("email_verified") is not True:
        return None
    matches = list(get_user_model().objects.filter(email__iexact=email)[:2])
    return matches[0] if len(matches) == 1 else None


def _free_username(claims: dict) -> str:
    wanted = claims.get("preferred_username") or (claims.get("email") or "").partition("@")[0] or "user"
    base = _NOT_IN_USERNAME.sub("", wanted)[:140] or "user"
    taken = get_user_model().objects.filter(username__istartswith=base).values_list("username", flat=True)
    taken = {name.lower() for name in taken}
    candidate, n = base, 1
    while candidate.lower() in taken:
        n += 1
        candidate = f"{base}-{n}"
    return candidate
