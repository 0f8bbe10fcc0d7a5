"""`manage.py createapikey USERNAME [--name N] [--models a,b] [--expires-in-days D]`

Prints the new key, and nothing else, on stdout so scripts can capture it.
"""

from __future__ import annotations

from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from apiaccess.lifecycle import create_key
from apiaccess.models import KeyEvent
from inference.models import Model


class Command(BaseCommand):
    help = "Create an API key for USERNAME and print it (it is shown only this once)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", default="", help="A label for the key")
        parser.add_argument("--models", default="", help="Comma-separated model ids the key may use (default: all)")
        parser.add_argument("--expires-in-days", type=int, default=None, help="Days until the key expires")

    def handle(self, *args, username: str, name: str, models: str, expires_in_days: int | None, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user named {username!r}. Create it first (manage.py createsuperuser).")
        if expires_in_days is not None and expires_in_days <= 0:
            raise CommandError("--expires-in-days must be a positive number of days.")
        wanted = [m.strip() for m in models.split(",") if m.strip()]
        found = list(Model.objects.filter(public_id__in=wanted))
        missing = sorted(set(wanted) - {m.public_id for m in found})
        if missing:
            known = ", ".join(Model.objects.values_list("public_id", flat=True)) or "none yet (run syncmodels)"
            raise CommandError(f"Unknown model(s): {', '.join(missing)}. Known models: {known}.")
        expires_at = timezone.now() + timedelta(days=expires_in_days) if expires_in_days else None
        # Staff tooling: audited like every other way in, but not held to the self-service key limit.
        _, plain = create_key(user, actor=None, via=KeyEvent.Via.COMMAND, name=name, expires_at=expires_at,
                              allowed_models=found, enforce_limit=False)
        self.stdout.write(plain)
