from django.contrib import admin
from django.urls import include, path

from portal import views

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("v1/", include("inference.urls")),
    path("api/", include("inference.urls")),
]

# JSON errors for API paths, HTML pages elsewhere.
handler404 = "inference.api.handler404"
handler500 = "inference.api.handler500"
