"""Settings come from the environment; production refuses to start without a secret key."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.support.processes import REPO


def django_check(env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "DEBUG", "DATABASE_URL")}
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); from django.conf import settings; "
         "print(settings.DATABASES['default']['ENGINE'], settings.DEFAULT_CONTEXT_LENGTH, settings.OLLAMA_NODES)"],
        cwd=REPO, env={**clean, "DJANGO_SETTINGS_MODULE": "portal.settings", **env},
        capture_output=True, text=True, timeout=60,
    )


def test_it_refuses_to_start_in_production_without_a_secret_key():
    result = django_check({"DEBUG": "false"})
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


def test_it_starts_in_production_with_a_secret_key():
    result = django_check({"DEBUG": "false", "SECRET_KEY": "x" * 50})
    assert result.returncode == 0, result.stderr


def test_it_uses_sqlite_by_default_and_postgres_from_database_url():
    assert "sqlite3" in django_check({}).stdout
    result = django_check({"DATABASE_URL": "postgres://u:p@db:5432/gh"})
    assert "postgresql" in result.stdout, result.stderr


def test_it_reads_nodes_and_defaults_from_the_environment():
    result = django_check({"OLLAMA_NODES": "http://a:11434, http://b:11434", "DEFAULT_CONTEXT_LENGTH": "4096"})
    assert "4096 ['http://a:11434', 'http://b:11434']" in result.stdout, result.stderr


def test_it_rejects_junk_values_loudly():
    result = django_check({"DEBUG": "maybe"})
    assert result.returncode != 0 and "DEBUG must be a boolean" in result.stderr
    result = django_check({"DEFAULT_MODEL_CONCURRENCY": "four"})
    assert result.returncode != 0 and "DEFAULT_MODEL_CONCURRENCY must be an integer" in result.stderr


def test_production_mode_has_secure_cookies_and_hsts():
    check = ("from django.conf import settings as s; print(s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, "
             "s.SECURE_HSTS_SECONDS, s.SIGNUP_ENABLED, s.OIDC_ENABLED)")
    clean = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "DEBUG", "DATABASE_URL")}
    run = lambda env: subprocess.run(  # noqa: E731
        [sys.executable, "-c", "import django; django.setup(); " + check], cwd=REPO,
        env={**clean, "DJANGO_SETTINGS_MODULE": "portal.settings", **env}, capture_output=True, text=True, timeout=60)
    assert run({"DEBUG": "false", "SECRET_KEY": "x" * 50}).stdout.split() == ["True", "True", "31536000", "False",
                                                                              "False"]
    assert run({}).stdout.split()[:3] == ["False", "False", "0"], "plain-HTTP development keeps working"


def test_single_sign_on_refuses_to_start_half_configured():
    result = django_check({"OIDC_ENABLED": "true", "OIDC_RP_CLIENT_ID": "x"})
    assert result.returncode != 0 and "OIDC_OP_TOKEN_ENDPOINT" in result.stderr
