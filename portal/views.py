from __future__ import annotations

from django.conf import settings
from django.db import DatabaseError, connection
from django.http import JsonResponse
from django.shortcuts import render

from inference import status
from inference.models import Model


def home(request):
    models = Model.objects.filter(enabled=True)
    return render(request, "portal/home.html", {"models": models, "api_base": settings.SITE_URL.rstrip("/") + "/v1"})


def healthz(request):
    """For load balancers and compose healthchecks: the process answers, reaches its database and
    Redis (503 otherwise), and which Ollama nodes the scheduler sees up or down (informational: one
    node down is not this process's fault)."""
    checks = {"database": "ok", "redis": "ok"}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError:
        checks["database"] = "unavailable"
    if not status.redis_ok():
        checks["redis"] = "unavailable"
    nodes = {}
    if checks["redis"] == "ok" and checks["database"] == "ok":
        nodes = {url: node["state"] for url, node in status.node_health().items()}
    healthy = all(value == "ok" for value in checks.values())
    return JsonResponse({"status": "ok" if healthy else "unavailable", **checks, "nodes": nodes},
                        status=200 if healthy else 503)
