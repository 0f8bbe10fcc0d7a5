"""`/portal/api/keys`: list, create and revoke your own API keys from scripts (djangorestframework).

Session auth (CSRF enforced, for the browser) or a bearer API key (for scripts rotating keys). A key
limited to some models can only create keys limited to some of those, so a leaked narrow key cannot
mint a broader one. The secret appears in the create response only. Errors are JSON objects
`{"error": {"message", "code", "fields"}}`, including unknown URLs under /portal/api/.
"""

