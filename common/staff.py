"""Staff-only portal pages (the live dashboard, usage of everyone).

Django's staff_member_required sends visitors to the admin's sign-in page; these pages belong to the
portal, so a visitor signs in on the portal's own page and comes back. A signed-in person who is not
staff gets 403 (sending them to sign in again would loop: the sign-in page sends them straight back).
"""

from __future__ import annotations

from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied


def staff_required(view):
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not (request.user.is_active and request.user.is_staff):
            raise PermissionDenied("This page is for staff.")
        return view(request, *args, **kwargs)

    return wrapper
