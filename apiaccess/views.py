"""Settings > Account: the person's API keys. Thin: the rules live in apiaccess.lifecycle."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_http_methods

from apiaccess import connect, keys, last_used, lifecycle
from apiaccess.access import usable_models
from apiaccess.forms import CreateKeyForm
from apiaccess.models import ApiKey, KeyEvent
from common.http import client_ip

# Right after "Create key" the browser is redirected (POST/redirect/GET, so a reload cannot create a
# second key), and the next GET shows the key once. Until then it is split in two: a random pad in a
# short-lived cookie of the browser's, and the key XORed with that pad in the session. Neither the
# session store nor the cookie alone holds the key, and whichever is left behind is worthless.
NEW_KEY_SESSION = "gatehouse_new_key"
NEW_KEY_COOKIE = "gatehouse_new_key"
NEW_KEY_SECONDS = 300


@dataclass(frozen=True)
class NewKey:
    key: ApiKey
    plain: str
    groups: list[connect.ClientGroup]


def _xor(data: bytes, pad: bytes) -> bytes:
    return bytes(a ^ b for a, b in zip(data, pad, strict=True))


def _hold_new_key(request, response, api_key: ApiKey, plain: str) -> None:
    pad = secrets.token_bytes(len(plain.encode()))
    request.session[NEW_KEY_SESSION] = {"id": api_key.pk, "sealed": _xor(plain.encode(), pad).hex(),
                                        "until": time.time() + NEW_KEY_SECONDS}
    response.set_cookie(NEW_KEY_COOKIE, pad.hex(), max_age=NEW_KEY_SECONDS, path=reverse("account"),
                        secure=settings.SESSION_COOKIE_SECURE, httponly=True, samesite="Strict")


def _take_new_key(request) -> tuple[ApiKey, str] | None:
    """The key created just before, once: the session's half is removed as it is read."""
    held = request.session.pop(NEW_KEY_SESSION, None)
    pad = request.COOKIES.get(NEW_KEY_COOKIE, "")
    if not held or held["until"] < time.time():
        return None
    try:
        plain = _xor(bytes.fromhex(held["sealed"]), bytes.fromhex(pad)).decode()
    except ValueError:  # no cookie, or not this session's
        return None
    api_key = request.user.api_keys.filter(pk=held["id"]).first()
    if api_key is None or not keys.matches(plain, api_key.digest):
        return None
    return api_key, plain


def _page(request, form: CreateKeyForm, new_key: NewKey | None = None):
    api_keys = list(request.user.api_keys.prefetch_related("allowed_models"))
    last_used.annotate(api_keys)
    response = render(request, "apiaccess/account.html", {
        "api_keys": api_keys,
        "form": form,
        "new_key": new_key,
        "slots_left": lifecycle.slots_left(request.user),
        "key_limit": settings.MAX_API_KEYS_PER_USER,
    })
    if new_key is not None:
        # The only copy of the key is in this page: keep it out of every cache.
        add_never_cache_headers(response)
        response["Cache-Control"] += ", no-store"
    if NEW_KEY_COOKIE in request.COOKIES:
        response.delete_cookie(NEW_KEY_COOKIE, path=reverse("account"), samesite="Strict")
    return response


@login_required
@require_http_methods(["GET", "POST"])
def account(request):
    if request.method == "GET":
        new_key = None
        if (taken := _take_new_key(request)) is not None:
            api_key, plain = taken
            models = api_key.allowed_models.all() or usable_models(request.user)
            groups = connect.client_groups(connect.pick_models(models), connect.api_base(request), key=plain)
            new_key = NewKey(api_key, plain, groups)
        return _page(request, CreateKeyForm(user=request.user), new_key)
    form = CreateKeyForm(request.POST, user=request.user)
    if not form.is_valid():
        return _page(request, form)
    try:
        api_key, plain = lifecycle.create_key(
            request.user, actor=request.user, via=KeyEvent.Via.PORTAL, name=form.cleaned_data["name"],
            expires_at=form.expires_at, allowed_models=form.cleaned_data["allowed_models"],
            source_ip=client_ip(request),
        )
    except lifecycle.KeyLimitReached as limit:
        form.add_error(None, str(limit))
        return _page(request, form)
    response = redirect("account")
    _hold_new_key(request, response, api_key, plain)
    return response


@login_required
@require_http_methods(["GET", "POST"])
def revoke(request, key_id: int):
    # Only the owner's keys: anyone else's id is a 404, exactly like an id that does not exist.
    api_key = get_object_or_404(ApiKey, pk=key_id, user=request.user)
    if request.method == "POST":
        if lifecycle.revoke_key(api_key, actor=request.user, via=KeyEvent.Via.PORTAL, source_ip=client_ip(request)):
            messages.success(request, f"Revoked {api_key}. It stops working within a few seconds.")
        else:
            messages.info(request, f"{api_key} was already revoked.")
        return redirect("account")
    return render(request, "apiaccess/revoke_confirm.html", {"key": api_key})
