from django.conf import settings


def portal(request):
    return {"signup_enabled": settings.SIGNUP_ENABLED, "oidc_enabled": settings.OIDC_ENABLED,
            "oidc_provider_name": settings.OIDC_PROVIDER_NAME}
