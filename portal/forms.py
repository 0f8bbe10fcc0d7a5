from django import forms
from django.contrib.auth.forms import AuthenticationForm, PasswordChangeForm, UserCreationForm


class NoColonMixin:
    """Labels read "Username", not "Username:" (Django's default suffix)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)


class SignInForm(NoColonMixin, AuthenticationForm):
    pass


class ChangePasswordForm(NoColonMixin, PasswordChangeForm):
    pass


class SignUpForm(NoColonMixin, UserCreationForm):
    email = forms.EmailField(required=False, help_text="Optional; lets staff reach you.")

    class Meta(UserCreationForm.Meta):
        fields = ("username", "email")
