from django.contrib import admin
from django.urls import include, path, re_path

from inference.api import missing_v1_prefix
from portal import views
from portal.status_api import SchedulerStatus

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("portal/api/status", SchedulerStatus.as_view(), name="scheduler-status"),
    path("admin/", admin.site.urls),
    path("v1/", include("inference.urls")),
    path("api/", include("inference.urls")),
    # Clients configured with http://host instead of http://host/v1 get a JSON 404 that says so.
    re_path(r"^(chat/completions|completions|embeddings|models(/.*)?)$", missing_v1_prefix),
]
# Unknown URLs and crashes under /v1 and /api become OpenAI error objects in
# inference.middleware.RequestIdMiddleware, whatever page Django rendered (DEBUG's included).
