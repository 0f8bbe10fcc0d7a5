"""JSON errors for the key API: `{"error": {"message", "code", "fields"}}`, also for unknown URLs."""

from __future__ import annotations

from django.http import JsonResponse
from rest_framework import exceptions
from rest_framework.views import exception_handler


def _message(detail) -> str:
    if isinstance(detail, dict):
        field, errors = next(iter(detail.items()))
        prefix = "" if field == "non_field_errors" else f"{field}: "
        return prefix + _message(errors)
    if isinstance(detail, list):
        return _message(detail[0]) if detail else "Invalid request."
    return str(detail)


def json_exception_handler(exc, context):
    response = exception_handler(exc, context)
    if response is None:
        return None  # a crash: Django's 500 handling, logged with the request
    detail = getattr(exc, "detail", response.data)
    codes = exc.get_codes() if isinstance(exc, exceptions.APIException) else "error"
    error = {"message": _message(detail), "code": codes if isinstance(codes, str) else "invalid"}
    if isinstance(exc, exceptions.ValidationError) and isinstance(detail, dict):
        error["fields"] = response.data
    response.data = {"error": error}
    return response


def not_found(request, *args, **kwargs):
    return JsonResponse({"error": {"message": f"Unknown URL: {request.method} {request.path}", "code": "not_found"}},
                        status=404)
