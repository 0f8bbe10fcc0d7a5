"""Single sign-on with OpenID Connect, through a real provider: django-oauth-toolkit's OIDC provider
runs in its own process (tests/support/oidc_provider), and a second Gatehouse web process is
configured for it (and for open sign-up) by environment variables, as an operator would."""

from __future__ import annotations

import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.conftest import live_server_env
from tests.support.browser import DESKTOP, serious_accessibility_violations
from tests.support.processes import STARTING, DaphneServer, ServiceProcess, eventually, free_port, session_tmp

PERSON = {"username": "dana", "password": "provider-pw-dana", "email": "dana@example.org"}


def _rsa_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


@pytest.fixture(scope="module")
def sso(world, redis_server, static_root):
    """(the provider's URL, a Gatehouse web process that signs people in through it)."""
    provider_port, web_port = free_port(), free_port()
    provider_url, web_url = f"http://127.0.0.1:{provider_port}", f"http://127.0.0.1:{web_port}"
    workdir = tempfile.mkdtemp(prefix="oidc-provider-", dir=session_tmp())
    provider_env = {
        "OIDC_PROVIDER_DB": f"{workdir}/provider.sqlite3", "OIDC_PROVIDER_RSA_KEY": _rsa_key(),
        "OIDC_PROVIDER_PORT": str(provider_port), "OIDC_PROVIDER_CLIENT_ID": "gatehouse-test",
        "OIDC_PROVIDER_CLIENT_SECRET": "provider-secret", "OIDC_PROVIDER_REDIRECT_URI": f"{web_url}/oidc/callback/",
        "OIDC_PROVIDER_USERNAME": PERSON["username"], "OIDC_PROVIDER_PASSWORD": PERSON["password"],
        "OIDC_PROVIDER_EMAIL": PERSON["email"],
    }
    provider = ServiceProcess([sys.executable, "-m", "tests.support.oidc_provider.serve"], provider_env,
                              "oidc-provider")
    web = None
    try:
        try:
            eventually(lambda: httpx.get(f"{provider_url}/o/.well-known/openid-configuration").status_code == 200,
                       timeout=60, what="the OIDC provider", proc=provider.proc, ignore=STARTING)
        except Exception:
            raise RuntimeError("the OIDC provider did not start:\n" + provider.output()) from None
        web = DaphneServer({
            **live_server_env(redis_server, static_root),
            "SIGNUP_ENABLED": "true",
            "OIDC_ENABLED": "true",
            "OIDC_PROVIDER_NAME": "Test IdP",
            "OIDC_RP_CLIENT_ID": "gatehouse-test",
            "OIDC_RP_CLIENT_SECRET": "provider-secret",
            "OIDC_OP_AUTHORIZATION_ENDPOINT": f"{provider_url}/o/authorize/",
            "OIDC_OP_TOKEN_ENDPOINT": f"{provider_url}/o/token/",
            "OIDC_OP_USER_ENDPOINT": f"{provider_url}/o/userinfo/",
            "OIDC_OP_JWKS_ENDPOINT": f"{provider_url}/o/.well-known/jwks.json",
        }, port=web_port)
        yield provider_url, web
    finally:
        if web is not None:
            web.stop()
        provider.stop(timeout=10)


def sign_in_with_sso(page, web_url: str, password: str | None) -> None:
    page.goto(web_url + "/accounts/login/")
    assert not serious_accessibility_violations(page)
    page.get_by_role("link", name="Sign in with Test IdP").click()
    if password is not None:  # the provider asks only when it has no session of its own yet
        page.wait_for_selector("text=Test identity provider")
        page.fill("input[name=username]", PERSON["username"])
        page.fill("input[name=password]", password)
        page.click("button[type=submit]")
    page.wait_for_selector(f"text=Welcome, {PERSON['username']}")


def test_a_person_signs_in_through_the_provider_and_comes_back_to_the_same_account(sso, browser, django_db_blocker):
    from django.contrib.auth import get_user_model

    from apiaccess.models import ExternalIdentity

    provider_url, web = sso
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    sign_in_with_sso(page, web.url, PERSON["password"])
    page.goto(web.url + "/settings/account/")
    assert "You sign in with Test IdP" in page.content(), "an SSO account has no password to change here"
    assert not serious_accessibility_violations(page)

    page.locator("details.user-menu summary").click()
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_selector("text=Shared GPU models")
    sign_in_with_sso(page, web.url, None)
    context.close()

    def accounts():
        with django_db_blocker.unblock():
            people = list(get_user_model().objects.filter(email=PERSON["email"]))
            return people, list(ExternalIdentity.objects.filter(user__in=people))

    # Playwright keeps an event loop running in this thread, where Django refuses ORM calls.
    with ThreadPoolExecutor(1) as thread:
        people, identities = thread.submit(accounts).result()
    assert [p.username for p in people] == [PERSON["username"]]
    assert len(identities) == 1 and identities[0].issuer.startswith(provider_url) and identities[0].subject
    assert not people[0].has_usable_password()


def test_a_forged_callback_signs_nobody_in(sso):
    _, web = sso
    with httpx.Client(base_url=web.url) as client:
        response = client.get("/oidc/callback/", params={"code": "made-up", "state": "made-up"})
        assert response.status_code in (302, 400)
        if response.status_code == 302:
            assert response.headers["location"] == "/accounts/login/?sso=failed"
            assert "Single sign-on did not complete" in client.get(response.headers["location"]).text
        assert "Welcome" not in client.get("/").text


def test_open_sign_up_and_the_sso_login_page_are_accessible(sso, browser):
    _, web = sso
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    page.goto(web.url + "/accounts/signup/")
    assert not serious_accessibility_violations(page)
    page.get_by_label("Username").fill("fresh-person")
    page.get_by_label("Password", exact=True).fill("a-Long-passw0rd-here")
    page.get_by_label("Password confirmation").fill("a-Long-passw0rd-here")
    page.get_by_role("button", name="Create account").click()
    page.wait_for_selector("h1:text('Account settings')")
    context.close()
