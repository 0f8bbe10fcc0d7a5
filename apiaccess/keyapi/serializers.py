from __future__ import annotations

from datetime import timedelta

from django.utils import timezone
from rest_framework import serializers

from apiaccess.access import usable_models
from apiaccess.models import ApiKey


class KeySerializer(serializers.ModelSerializer):
    key_prefix = serializers.CharField(source="masked")
    status = serializers.CharField()
    last_used_at = serializers.DateTimeField(source="last_used")
    allowed_models = serializers.SlugRelatedField(many=True, read_only=True, slug_field="public_id")

    class Meta:
        model = ApiKey
        fields = ["id", "name", "key_prefix", "status", "created_at", "last_used_at", "expires_at", "revoked_at",
                  "allowed_models"]
        read_only_fields = fields


class CreateKeySerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    expires_at = serializers.DateTimeField(required=False, allow_null=True)
    expires_in_days = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=3650)
    allowed_models = serializers.ListField(child=serializers.CharField(), required=False, allow_empty=True)

    def validate_expires_at(self, value):
        if value is not None and value <= timezone.now():
            raise serializers.ValidationError("Must be in the future.")
        return value

    def validate_allowed_models(self, value):
        request = self.context["request"]
        found = list(usable_models(request.user).filter(public_id__in=value))
        unknown = sorted(set(value) - {m.public_id for m in found})
        if unknown:
            raise serializers.ValidationError(f"Unknown or unavailable model(s): {', '.join(unknown)}.")
        return found

    def validate(self, data):
        if data.get("expires_at") and data.get("expires_in_days"):
            raise serializers.ValidationError("Give expires_at or expires_in_days, not both.")
        if data.get("expires_in_days"):
            data["expires_at"] = timezone.now() + timedelta(days=data["expires_in_days"])
        caller_key = self.context["request"].auth
        if isinstance(caller_key, ApiKey):
            limits = set(caller_key.allowed_models.values_list("public_id", flat=True))
            wanted = {m.public_id for m in data.get("allowed_models", [])}
            if limits and (not wanted or not wanted <= limits):
                raise serializers.ValidationError({"allowed_models": [
                    "The key you are calling with is limited to " + ", ".join(sorted(limits))
                    + "; a key it creates must be limited to some of those."]})
        return data
