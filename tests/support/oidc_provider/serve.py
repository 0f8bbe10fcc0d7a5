"""Run the test OIDC provider: `python -m tests.support.oidc_provider.serve` with its settings in the
environment (OIDC_PROVIDER_*). Migrates a fresh database, registers one client and one person, serves."""

from __future__ import annotations

import os

import django
from django.core.management import call_command


def main() -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.support.oidc_provider.settings"
    django.setup()
    from django.contrib.auth import get_user_model
    from oauth2_provider.models import Application

    call_command("migrate", verbosity=0, interactive=False)
    env = os.environ
    get_user_model().objects.create_user(env["OIDC_PROVIDER_USERNAME"], email=env["OIDC_PROVIDER_EMAIL"],
                                         password=env["OIDC_PROVIDER_PASSWORD"])
    Application.objects.create(
        name="gatehouse", client_id=env["OIDC_PROVIDER_CLIENT_ID"], client_secret=env["OIDC_PROVIDER_CLIENT_SECRET"],
        client_type=Application.CLIENT_CONFIDENTIAL, authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE,
        redirect_uris=env["OIDC_PROVIDER_REDIRECT_URI"], algorithm=Application.RS256_ALGORITHM,
        skip_authorization=True,
    )
    call_command("runserver", f"127.0.0.1:{env['OIDC_PROVIDER_PORT']}", use_reloader=False, use_threading=True)


if __name__ == "__main__":
    main()
