"""Anthropic's Messages API (`POST /v1/messages`, `POST /v1/messages/count_tokens`) as a front protocol: what
Claude Code and the `anthropic` SDKs speak, translated into the canonical chat request and rendered back."""
