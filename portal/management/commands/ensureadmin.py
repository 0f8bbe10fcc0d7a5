"""Create an admin account on first run and say how to sign in (used by `make run`)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from common import siteurl


class Command(BaseCommand):
    help = "Create the 'admin' superuser if no superuser exists, and print how to sign in."

    def handle(self, *args, **options):
        users = get_user_model().objects
        sign_in = siteurl.server_url() + "/admin/"
        existing = users.filter(is_superuser=True).order_by("pk").first()
        if existing is not None:
            self.stdout.write(f"Admin: sign in at {sign_in} as '{existing.get_username()}'.")
            saved = Path(settings.RUN_DIR, "admin-password.txt")
            if saved.exists():
                self.stdout.write(f"       (first-run password saved in {saved})")
            return
        username = os.environ.get("ADMIN_USERNAME", "admin")
        password = os.environ.get("ADMIN_PASSWORD") or secrets.token_urlsafe(12)
        users.create_superuser(username=username, email="", password=password)
        run_dir = Path(settings.RUN_DIR)
        run_dir.mkdir(parents=True, exist_ok=True)
        saved = run_dir / "admin-password.txt"
        saved.write_text(password + "\n")
        saved.chmod(0o600)
        self.stdout.write(self.style.SUCCESS(f"Created the admin account. Sign in at {sign_in}"))
        self.stdout.write(f"    username: {username}\n    password: {password}\n    (also saved in {saved})")
