"""Pydantic models of the Messages API request bodies we accept (Anthropic's API reference, "Messages").

Lenient where clients need it: unknown fields are ignored (`cache_control`, `citations`, `container`,
beta fields the SDKs add), `top_k` is accepted and ignored, and a `system` message inside `messages` (which
Claude Code sends) is taken as a system prompt. Strict where we would otherwise answer wrongly: a block
type we cannot pass to the model (documents, server tools) is a 400 naming the block, not silently lost.
Validation errors become 400s with the field's path (inference/openai_api/schemas.py `parse_body`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from inference.openai_api.limits import MAX_STOP_CHARS, MAX_STOP_SEQUENCES, MAX_TOOLS
from inference.openai_api.schemas import ParamError

_MISSING = "Missing required parameter: '{param}'."
BLOCK_TYPES = ("text", "image", "tool_use", "tool_result", "thinking", "redacted_thinking")


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)


class ImageSource(_Body):
    type: str
    media_type: str | None = None
    data: str | None = None

    @model_validator(mode="after")
    def _base64_only(self) -> ImageSource:
        # We fetch nothing on a client's behalf (no SSRF, no waiting on someone else's server).
        if self.type != "base64":
            raise ParamError(f"Invalid value for '{{param}}': '{self.type}'. Only base64 image sources are "
                             "supported: send the image bytes in `data` with its `media_type`.", "type")
        if not self.media_type:
            raise ParamError(_MISSING, "media_type")
        if not self.data:
            raise ParamError(_MISSING, "data")
        return self


class ContentBlock(_Body):
    """One block of a message's content; which fields it needs depends on its type."""

    type: str
    text: str | None = None
    source: ImageSource | None = None
    id: str | None = None  # tool_use
    name: str | None = None
    input: Any = None
    tool_use_id: str | None = None  # tool_result
    content: str | list[ContentBlock] | None = None
    is_error: bool | None = None
    thinking: str | None = None  # thinking (redacted_thinking carries only opaque data)

    @model_validator(mode="after")
    def _fields_of_its_type(self) -> ContentBlock:
        required = {"text": ("text",), "image": ("source",), "tool_use": ("id", "name"),
                    "tool_result": ("tool_use_id",), "thinking": ("thinking",)}
        if self.type not in BLOCK_TYPES:
            raise ParamError(f"Invalid value for '{{param}}': content blocks of type '{self.type}' are not "
                             f"supported. Supported types: {', '.join(BLOCK_TYPES)}.", "type")
        for name in required.get(self.type, ()):
            if getattr(self, name) is None:
                raise ParamError(_MISSING, name)
        if self.type == "tool_use" and self.input is not None and not isinstance(self.input, dict):
            raise ParamError("Invalid type for '{param}': expected an object.", "input")
        if self.type == "tool_result" and isinstance(self.content, list):
            for i, block in enumerate(self.content):
                if block.type not in ("text", "image"):
                    raise ParamError(f"Invalid value for '{{param}}': a tool result holds text and image blocks, "
                                     f"not '{block.type}'.", f"content.{i}.type")
        return self


class Message(_Body):
    role: Literal["user", "assistant", "system"]
    content: str | list[ContentBlock]


class Tool(_Body):
    # Server tools (web search, code execution, ...) run at Anthropic; there is nothing here to run them.
    type: str | None = None
    name: str = Field(min_length=1)
    description: str | None = None
    input_schema: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _client_tools_only(self) -> Tool:
        if self.type not in (None, "custom"):
            raise ParamError(f"Invalid value for '{{param}}': '{self.type}'. Only client tools (with a name, a "
                             "description and an input_schema) are supported.", "type")
        return self


class ToolChoice(_Body):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None

    @model_validator(mode="after")
    def _tool_needs_a_name(self) -> ToolChoice:
        if self.type == "tool" and not self.name:
            raise ParamError(_MISSING, "name")
        return self


class Thinking(_Body):
    type: Literal["enabled", "disabled", "adaptive", "between_tools"]
    budget_tokens: int | None = Field(default=None, ge=0)


class OutputConfig(_Body):
    effort: Literal["low", "medium", "high", "xhigh", "max"] | None = None


class CountTokensRequest(_Body):
    """What `count_tokens` takes: a Messages request without the generation settings."""

    model: str = Field(min_length=1)
    messages: list[Message] = Field(min_length=1)
    system: str | list[ContentBlock] | None = None
    tools: list[Tool] | None = Field(default=None, max_length=MAX_TOOLS)
    tool_choice: ToolChoice | None = None
    thinking: Thinking | None = None
    output_config: OutputConfig | None = None  # its `format` (structured output) is not supported yet

    @model_validator(mode="after")
    def _rules(self) -> CountTokensRequest:
        if isinstance(self.system, list):
            for i, block in enumerate(self.system):
                if block.type != "text":
                    raise ParamError("Invalid value for '{param}': the system prompt holds text blocks only.",
                                     f"system.{i}.type")
        names = {tool.name for tool in self.tools or []}
        choice = self.tool_choice
        if choice is not None and choice.type == "tool" and choice.name not in names:
            raise ParamError(f"Invalid value for '{{param}}': no tool named '{choice.name}' in 'tools'.",
                             "tool_choice.name")
        if choice is not None and choice.type == "any" and not names:
            raise ParamError("'tool_choice' is 'any' but no 'tools' were given.", "tool_choice")
        return self


class MessagesRequest(CountTokensRequest):
    max_tokens: int = Field(ge=1)
    stop_sequences: list[str] | None = Field(default=None, max_length=MAX_STOP_SEQUENCES)
    # Older API versions' sampling settings, still sent by some clients; top_k is accepted and ignored.
    temperature: float | None = Field(default=None, ge=0, le=1)
    top_p: float | None = Field(default=None, ge=0, le=1)
    top_k: int | None = Field(default=None, ge=0)
    stream: bool | None = None
    metadata: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _stop_lengths(self) -> MessagesRequest:
        for i, stop in enumerate(self.stop_sequences or []):
            if len(stop) > MAX_STOP_CHARS:
                raise ParamError(f"Invalid '{{param}}': a stop sequence may be at most {MAX_STOP_CHARS} "
                                 "characters.", f"stop_sequences.{i}")
        return self
