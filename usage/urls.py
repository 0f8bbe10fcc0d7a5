from django.urls import path

from usage import views

urlpatterns = [
    path("usage/", views.usage_page, name="usage"),
    path("usage/usage.csv", views.usage_csv, name="usage-csv"),
    path("usage/all/", views.staff_usage, name="staff-usage"),
]
