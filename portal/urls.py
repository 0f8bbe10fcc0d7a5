from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, re_path

from inference.ollama_api import views as ollama_views
from inference.web.api import missing_v1_prefix
from portal import views
from portal.forms import ChangePasswordForm, SignInForm
from portal.metrics import metrics_view
from portal.status_api import SchedulerStatus

admin.site.site_header = "Gatehouse"
admin.site.site_title = "Gatehouse admin"

accounts = [
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True, authentication_form=SignInForm),
         name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("password/", auth_views.PasswordChangeView.as_view(form_class=ChangePasswordForm), name="password_change"),
    path("password/done/", auth_views.PasswordChangeDoneView.as_view(), name="password_change_done"),
    path("signup/", views.signup, name="signup"),
]

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("favicon.ico", views.favicon, name="favicon"),
    path("metrics", metrics_view, name="metrics"),
    path("dashboard/", views.dashboard_page, name="dashboard"),
    path("portal/api/status", SchedulerStatus.as_view(), name="scheduler-status"),
    path("accounts/", include(accounts)),
    path("connect/", views.connect_page, name="connect"),
    path("models/", views.models_page, name="models"),
    path("", include("apiaccess.urls")),
    path("", include("usage.urls")),
    path("", include("batches.portal_urls")),
    path("admin/", admin.site.urls),
    path("v1/", include("inference.urls")),
    path("api/", include("inference.urls")),
    # The Files API for batches (batches/), beside the OpenAI routes.
    path("v1/", include("batches.urls")),
    path("api/", include("batches.urls")),
    # Ollama's native API, for clients configured with an Ollama server URL (inference/ollama_api).
    path("ollama/", include("inference.ollama_api.urls")),
    path("ollama", ollama_views.root),
    # Clients configured with http://host instead of http://host/v1 get a JSON 404 that says so.
    # (`models/` alone is the Models page above.)
    re_path(r"^(chat/completions|responses|completions|embeddings|models(/.+)?)$", missing_v1_prefix),
]
if settings.OIDC_ENABLED:
    urlpatterns.insert(0, path("oidc/", include("mozilla_django_oidc.urls")))
# Unknown URLs and crashes under /v1 and /api become OpenAI error objects in
# inference.web.middleware.RequestIdMiddleware, whatever page Django rendered (DEBUG's included).
