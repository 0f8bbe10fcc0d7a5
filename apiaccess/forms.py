from __future__ import annotations

from datetime import datetime, timedelta

from django import forms
from django.utils import timezone

from apiaccess.access import usable_models

EXPIRY_CHOICES = [("", "Never"), ("1", "In 1 day"), ("7", "In 7 days"), ("30", "In 30 days"),
                  ("90", "In 90 days"), ("365", "In 1 year")]


class CreateKeyForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="So you can tell your keys apart, e.g. laptop or ci-runner.")
    expires_in_days = forms.TypedChoiceField(
        label="Expires", choices=EXPIRY_CHOICES, coerce=int, empty_value=None, required=False
    )
    allowed_models = forms.ModelMultipleChoiceField(
        queryset=None, required=False, to_field_name="public_id", widget=forms.CheckboxSelectMultiple,
        help_text="Tick none to let the key use every model you may use.",
    )

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, label_suffix="", **kwargs)
        self.fields["allowed_models"].queryset = usable_models(user)
        self.fields["name"].widget.attrs.update({"autocomplete": "off"})

    @property
    def expires_at(self) -> datetime | None:
        days = self.cleaned_data.get("expires_in_days")
        return timezone.now() + timedelta(days=days) if days else None
