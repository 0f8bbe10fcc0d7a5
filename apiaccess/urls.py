from django.urls import path, re_path

from apiaccess import views
from apiaccess.keyapi import errors as keyapi_errors
from apiaccess.keyapi import views as keyapi

urlpatterns = [
    path("settings/account/", views.account, name="account"),
    path("settings/account/keys/<int:key_id>/revoke/", views.revoke, name="revoke-key"),
    re_path(r"^portal/api/keys/?$", keyapi.key_list, name="api-keys"),
    re_path(r"^portal/api/keys/(?P<key_id>[0-9]+)/?$", keyapi.key_detail, name="api-key"),
    re_path(r"^portal/api(/.*)?$", keyapi_errors.not_found),
]
