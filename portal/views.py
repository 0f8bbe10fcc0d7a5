from __future__ import annotations

from django.conf import settings
from django.shortcuts import render

from inference.models import Model


def home(request):
    models = Model.objects.filter(enabled=True)
    return render(request, "portal/home.html", {"models": models, "api_base": settings.SITE_URL.rstrip("/") + "/v1"})
