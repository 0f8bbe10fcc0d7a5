from django import forms
from django.contrib.auth.forms import UserCreationForm


class SignUpForm(UserCreationForm):
    email = forms.EmailField(required=False, help_text="Optional; lets staff reach you.")

    class Meta(UserCreationForm.Meta):
        fields = ("username", "email")
