from __future__ import annotations

from django.shortcuts import get_object_or_404
from rest_framework import exceptions, status
from rest_framework.decorators import api_view
from rest_framework.response import Response

from apiaccess import last_used, lifecycle
from apiaccess.keyapi.serializers import CreateKeySerializer, KeySerializer
from apiaccess.models import ApiKey, KeyEvent
from common.http import client_ip


def _keys(queryset) -> list[ApiKey]:
    api_keys = list(queryset.prefetch_related("allowed_models"))
    last_used.annotate(api_keys)
    return api_keys


@api_view(["GET", "POST"])
def key_list(request):
    if request.method == "GET":
        return Response({"data": KeySerializer(_keys(request.user.api_keys.all()), many=True).data})
    form = CreateKeySerializer(data=request.data, context={"request": request})
    form.is_valid(raise_exception=True)
    try:
        api_key, plain = lifecycle.create_key(
            request.user, actor=request.user, via=KeyEvent.Via.API, name=form.validated_data["name"],
            expires_at=form.validated_data.get("expires_at"),
            allowed_models=form.validated_data.get("allowed_models", []), source_ip=client_ip(request),
        )
    except lifecycle.KeyLimitReached as limit:
        raise exceptions.PermissionDenied(str(limit), code="key_limit_reached") from None
    (api_key,) = _keys(ApiKey.objects.filter(pk=api_key.pk))
    return Response({**KeySerializer(api_key).data, "key": plain}, status=status.HTTP_201_CREATED)


@api_view(["GET", "DELETE"])
def key_detail(request, key_id: int):
    """GET shows one of your keys; DELETE revokes it (the record stays, as revoked)."""
    api_key = get_object_or_404(ApiKey, pk=key_id, user=request.user)  # anyone else's id: 404
    if request.method == "DELETE":
        lifecycle.revoke_key(api_key, actor=request.user, via=KeyEvent.Via.API, source_ip=client_ip(request))
    (api_key,) = _keys(ApiKey.objects.filter(pk=api_key.pk))
    return Response(KeySerializer(api_key).data)
