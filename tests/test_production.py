"""Production mode (issue 8): `check --deploy` is clean with the README's production variables, portal
pages carry a Content-Security-Policy, and browser clients of the API get CORS only from allowed origins."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest

from tests.support.processes import REPO

# The README's "Production" variables, as an operator sets them behind the proxy.
PRODUCTION = {
    "DEBUG": "false",
    "SECRET_KEY": "k3y-" + "production-secret-of-enough-length-and-variety-0123456789",
    "ALLOWED_HOSTS": "gatehouse.example.org",
    "SITE_URL": "https://gatehouse.example.org",
    "TRUST_PROXY_HEADERS": "true",
    "SECURE_SSL_REDIRECT": "true",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": "true",
    "SECURE_HSTS_PRELOAD": "true",
}
ALLOWED = "https://app.example.org"  # API_CORS_ALLOWED_ORIGINS of the live server (tests/conftest.py)


def test_check_deploy_passes_with_the_production_variables():
    env = {k: v for k, v in os.environ.items() if k not in PRODUCTION}
    result = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                            cwd=REPO, env={**env, **PRODUCTION, "DJANGO_SETTINGS_MODULE": "portal.settings"},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_readme_lists_every_production_variable():
    readme = (REPO / "README.md").read_text()
    for name in PRODUCTION:
        assert f"`{name}`" in readme, name


def test_portal_pages_carry_a_content_security_policy(gatehouse):
    page = httpx.get(gatehouse.url + "/accounts/login/")
    assert page.status_code == 200
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy


def test_the_api_serves_no_csp_but_json(base_url, world):
    response = httpx.get(base_url + "/models", headers={"Authorization": f"Bearer {world.alice_key}"})
    assert "content-security-policy" not in response.headers


def preflight(base_url: str, origin: str) -> httpx.Response:
    return httpx.options(base_url + "/chat/completions", headers={
        "Origin": origin, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type, x-stainless-retry-count"})


def test_a_preflight_from_an_allowed_origin_is_answered(base_url):
    response = preflight(base_url, ALLOWED)
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == ALLOWED
    assert "POST" in response.headers["access-control-allow-methods"]
    allowed_headers = response.headers["access-control-allow-headers"]
    assert all(h in allowed_headers for h in ("authorization", "content-type", "x-stainless-retry-count"))
    assert "access-control-allow-credentials" not in response.headers  # bearer keys, never cookies


@pytest.mark.parametrize("origin", ["https://evil.example", "http://app.example.org", "null"])
def test_other_origins_get_no_cors_headers(base_url, world, origin):
    assert not any(h.startswith("access-control-") for h in preflight(base_url, origin).headers)
    response = httpx.get(base_url + "/models", headers={"Authorization": f"Bearer {world.alice_key}",
                                                         "Origin": origin})
    assert response.status_code == 200
    assert not any(h.startswith("access-control-") for h in response.headers)


def test_an_allowed_origin_can_read_answers_and_errors(base_url, world):
    ok = httpx.get(base_url + "/models", headers={"Authorization": f"Bearer {world.alice_key}", "Origin": ALLOWED})
    assert ok.headers["access-control-allow-origin"] == ALLOWED
    assert "x-request-id" in ok.headers["access-control-expose-headers"]
    refused = httpx.get(base_url + "/models", headers={"Origin": ALLOWED})
    assert refused.status_code == 401 and refused.headers["access-control-allow-origin"] == ALLOWED
