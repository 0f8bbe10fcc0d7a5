"""Which models a person may use. Today every enabled model; the one place to narrow that later."""

from __future__ import annotations

from django.db.models import QuerySet

from inference.models import Model


def usable_models(user) -> QuerySet[Model]:
    return Model.objects.filter(enabled=True).order_by("public_id")
