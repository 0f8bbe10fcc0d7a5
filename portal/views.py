from __future__ import annotations

from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.shortcuts import render

from inference.models import Model


def home(request):
    models = Model.objects.filter(enabled=True)
    return render(request, "portal/home.html", {"models": models, "api_base": settings.SITE_URL.rstrip("/") + "/v1"})


def healthz(request):
    """For load balancers and compose healthchecks: the process answers and reaches its database."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})
