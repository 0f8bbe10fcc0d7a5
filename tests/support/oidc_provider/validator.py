from oauth2_provider.oauth2_validators import OAuth2Validator


class ClaimsValidator(OAuth2Validator):
    """Put the person's e-mail and user name in the ID token and userinfo (by scope, as DOT filters them)."""

    def get_additional_claims(self, request):
        user = request.user
        return {"email": user.email, "email_verified": True, "preferred_username": user.username}
