"""Settings > Account: the person's API keys. Thin: the rules live in apiaccess.lifecycle."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_http_methods

from apiaccess import last_used, lifecycle
from apiaccess.access import usable_models
from apiaccess.forms import CreateKeyForm
from apiaccess.models import ApiKey, KeyEvent
from portal import connect
from portal.http import client_ip


@dataclass(frozen=True)
class NewKey:
    key: ApiKey
    plain: str
    snippets: list[connect.Snippet]


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
    return response


@login_required
@require_http_methods(["GET", "POST"])
def account(request):
    if request.method == "GET":
        return _page(request, CreateKeyForm(user=request.user))
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
    # Shown in this response only (no redirect): the plain key is never stored, not even in the session.
    models = api_key.allowed_models.all() or usable_models(request.user)
    snippets = connect.snippets(connect.pick_models(models), connect.api_base(request), key=plain)
    return _page(request, CreateKeyForm(user=request.user), NewKey(api_key, plain, snippets))


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
