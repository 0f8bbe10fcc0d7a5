"""The portal's pages: home, sign-up, Connect and Models. Thin: content comes from plain functions."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.db import DatabaseError, connection
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import cache_control, never_cache
from django.views.decorators.http import require_http_methods

from apiaccess import connect, lifecycle
from apiaccess.access import usable_models
from common.staff import staff_required
from inference import status
from portal.forms import SignUpForm
from portal.metrics import staff_or_metrics_token
from portal.models_page import LIVE_COLUMNS, model_rows


def home(request):
    if not request.user.is_authenticated:
        # Visitors learn what Gatehouse is; which models exist is for people who may use them.
        return render(request, "portal/welcome.html")
    return render(request, "portal/home.html", {
        "api_base": connect.api_base(request),
        "active_keys": lifecycle.active_keys(request.user).count(),
        "model_count": usable_models(request.user).count(),
    })


@require_http_methods(["GET", "POST"])
def signup(request):
    if not settings.SIGNUP_ENABLED:
        raise Http404("Sign-up is closed: ask staff for an account.")
    if request.user.is_authenticated:
        return redirect("home")
    form = SignUpForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        return redirect("account")
    return render(request, "registration/signup.html", {"form": form})


@login_required
def connect_page(request):
    models = connect.pick_models(usable_models(request.user))
    api_base = connect.api_base(request)
    return render(request, "portal/connect.html", {
        "api_base": api_base,
        "models": models,
        "groups": connect.client_groups(models, api_base),
        "placeholder": connect.PLACEHOLDER_KEY,
    })


@login_required
def models_page(request):
    return render(request, "portal/models.html", {"rows": model_rows(request.user), "live_columns": LIVE_COLUMNS})


@staff_required
def dashboard_page(request):
    """The live dashboard; its figures arrive over the websocket (portal/dashboard.py)."""
    return render(request, "portal/dashboard.html")


# Pages link the icon from the static files; browsers still ask for /favicon.ico (the admin's pages,
# a JSON answer opened in a tab), so answer that too instead of logging a 404 on every first visit.
FAVICON = Path(__file__).parent / "static" / "portal" / "favicon.ico"


@cache_control(public=True, max_age=86400)
def favicon(request):
    return HttpResponse(FAVICON.read_bytes(), content_type="image/x-icon")


@never_cache
def healthz(request):
    """For load balancers and compose healthchecks: the process answers and reaches its database and
    Redis (503 otherwise). Staff and holders of METRICS_TOKEN also see which Ollama nodes the scheduler
    sees up or down (informational: one node down is not this process's fault); anyone else does not
    learn the nodes' internal URLs."""
    checks = {"database": "ok", "redis": "ok"}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError:
        checks["database"] = "unavailable"
    if not status.redis_ok():
        checks["redis"] = "unavailable"
    healthy = all(value == "ok" for value in checks.values())
    payload = {"status": "ok" if healthy else "unavailable", **checks}
    if _may_see_nodes(request):
        payload["nodes"] = {url: node["state"] for url, node in status.node_health().items()} if healthy else {}
    return JsonResponse(payload, status=200 if healthy else 503)


def _may_see_nodes(request) -> bool:
    try:
        return staff_or_metrics_token(request)
    except DatabaseError:  # the session could not be read: no staff member can be recognised
        return False
