"""Pydantic models of the Responses API request body (POST /v1/responses) as Gatehouse takes it.

Stateless: Gatehouse stores neither responses nor conversations, so whatever would refer to a stored one
(`previous_response_id`, `conversation`, `store: true`, item references, stored prompts, background runs)
is a 400 that says so, and a client sends the whole conversation in `input` instead. Only function tools
reach a model: a hosted tool (web search, file search, code interpreter, computer use...) would be run by
whichever server answers, never by the client that asked, and Ollama's own /v1/responses would search the
internet. Such tools are left out before anything is translated, so no node ever sees them; a refusal would
lock out Codex CLI, which sends a `web_search` and a `namespace` tool with every request.

The same conventions as the chat schemas (inference/openai_api/schemas.py): unknown fields are ignored
(Codex sends `include`, `prompt_cache_key`, `client_metadata`), null means absent, and every failure is one
400 naming the field in the Responses body.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from inference.openai_api.limits import MAX_MESSAGES
from inference.openai_api.schemas import ParamError
from inference.openai_api.schemas import (
    _Body as Body,  # the chat schemas' base: same config, same error paths
)

_MISSING = "Missing required parameter: '{param}'."
NOT_STORED = "Gatehouse does not store responses"
MESSAGE_ROLES = ("user", "assistant", "system", "developer")


def is_data_uri(url: str) -> bool:
    # As for chat: no network I/O on behalf of clients (SSRF, latency), and the nodes want the bytes.
    return url.startswith("data:") and ";base64," in url[:200]


class InputContent(Body):
    type: str
    text: str | None = None
    refusal: str | None = None
    image_url: str | None = None
    detail: str | None = None
    file_id: str | None = None

    @model_validator(mode="after")
    def _check_type(self) -> InputContent:
        if self.type in ("input_text", "output_text"):
            if self.text is None:
                raise ParamError(_MISSING, "text")
        elif self.type == "refusal":
            if self.refusal is None:
                raise ParamError(_MISSING, "refusal")
        elif self.type == "input_image":
            if self.image_url is None or not is_data_uri(self.image_url):
                raise ParamError("Images must be base64 data URIs in 'image_url' (data:image/png;base64,...): "
                                 "Gatehouse neither fetches URLs nor stores files.", "image_url")
        elif self.type in ("input_file", "input_audio"):
            raise ParamError(f"Invalid value for '{{param}}': content of type '{self.type}' is not supported.", "type")
        else:
            raise ParamError(f"Invalid value for '{{param}}': '{self.type}'. Supported values are: 'input_text', "
                             "'output_text', 'refusal' and 'input_image'.", "type")
        return self


class InputItem(Body):
    type: str = "message"  # a message may leave its type out (the SDKs' "easy" input message)
    role: str | None = None
    content: str | list[InputContent] | None = None
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None
    output: str | list[InputContent] | None = None

    @field_validator("role", mode="before")
    @classmethod
    def _lower_role(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check_type(self) -> InputItem:
        if self.type == "message":
            if self.role not in MESSAGE_ROLES:
                if self.role is None:
                    raise ParamError(_MISSING, "role")
                raise ParamError(f"Invalid value for '{{param}}': '{self.role}'. Supported values are: 'user', "
                                 "'assistant', 'system' and 'developer'.", "role")
            if self.content is None:
                raise ParamError(_MISSING, "content")
            for i, part in enumerate(self.content if isinstance(self.content, list) else []):
                if part.type == "input_image" and self.role != "user":
                    raise ParamError(f"Images are only supported in 'user' messages, not '{self.role}'.",
                                     f"content.{i}.type")
        elif self.type == "function_call":
            for field in ("call_id", "name"):
                if not getattr(self, field):
                    raise ParamError(_MISSING, field)
        elif self.type == "function_call_output":
            if not self.call_id:
                raise ParamError(_MISSING, "call_id")
            if self.output is None:
                raise ParamError(_MISSING, "output")
            if isinstance(self.output, list) and any(part.type == "input_image" for part in self.output):
                raise ParamError("Images in a function call's output are not supported; put them in a 'user' "
                                 "message.", "output")
        elif self.type == "item_reference":
            raise ParamError(f"{NOT_STORED} or their items: send the item itself instead of a reference.", "type")
        elif self.type != "reasoning":  # a previous turn's reasoning, sent back by agents: accepted, not used
            raise ParamError(f"Invalid value for '{{param}}': '{self.type}'. Supported item types are: 'message', "
                             "'function_call', 'function_call_output' and 'reasoning'.", "type")
        return self


class FunctionTool(Body):
    type: str
    name: str | None = None
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None

    @model_validator(mode="after")
    def _function_only(self) -> FunctionTool:
        if self.type != "function":  # ResponsesRequest leaves the others out before they get here
            raise ParamError(f"Invalid value for '{{param}}': '{self.type}' tools are not supported.", "type")
        if not self.name:
            raise ParamError(_MISSING, "name")
        return self


class FunctionChoice(Body):
    type: Literal["function"]
    name: str = Field(min_length=1)


class TextFormat(Body):
    type: Literal["text", "json_object", "json_schema"]
    name: str | None = None
    description: str | None = None
    # `schema` would shadow BaseModel.schema(); the alias keeps the wire name.
    json_schema: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None

    @model_validator(mode="after")
    def _needs_schema(self) -> TextFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise ParamError(_MISSING, "schema")
        return self


class TextConfig(Body):
    format: TextFormat | None = None
    verbosity: str | None = None  # accepted; no server behind Gatehouse has such a setting


class ReasoningConfig(Body):
    effort: str | None = None
    summary: str | None = None  # accepted: the whole trace comes back (as the reasoning item's summary)


class ResponsesRequest(Body):
    model: str = Field(min_length=1)
    input: str | list[InputItem]
    instructions: str | None = None
    tools: list[FunctionTool] | None = None
    tool_choice: Literal["none", "auto", "required"] | FunctionChoice | None = None
    parallel_tool_calls: bool | None = None
    text: TextConfig | None = None
    max_output_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    reasoning: ReasoningConfig | None = None
    stream: bool | None = None
    metadata: dict[str, str] | None = None  # echoed in the response
    user: str | None = None
    # What needs a stored response, refused below with the reason.
    store: bool | None = None
    previous_response_id: str | None = None
    conversation: Any = None
    background: bool | None = None
    prompt: Any = None

    @field_validator("tools", mode="before")
    @classmethod
    def _functions_only(cls, value: Any) -> Any:
        """Hosted and other non-function tools are left out (see the module's docstring)."""
        if isinstance(value, list):
            return [tool for tool in value if not isinstance(tool, dict) or tool.get("type") == "function"]
        return value

    @field_validator("tool_choice", mode="before")
    @classmethod
    def _function_choice_only(cls, value: Any) -> Any:
        if isinstance(value, dict) and value.get("type") != "function":
            raise ValueError(f"Invalid value for 'tool_choice': a choice of type '{value.get('type')}' is not "
                             "supported. Use 'none', 'auto', 'required' or {\"type\": \"function\", \"name\": ...}.")
        return value

    @field_validator("input")
    @classmethod
    def _input_size(cls, value: Any) -> Any:
        if isinstance(value, list):
            if not value:
                raise ValueError("Invalid 'input': empty array. Expected at least one item.")
            if len(value) > MAX_MESSAGES:
                raise ValueError(f"Invalid 'input': at most {MAX_MESSAGES} items per request.")
        return value

    @model_validator(mode="after")
    def _stateless(self) -> ResponsesRequest:
        resend = "send the whole conversation in 'input' instead"
        if self.store:
            raise ParamError(f"{NOT_STORED}: set 'store' to false (or leave it out) and {resend}.", "store")
        if self.previous_response_id is not None:
            raise ParamError(f"{NOT_STORED}, so 'previous_response_id' cannot refer to one: {resend}.",
                             "previous_response_id")
        if self.conversation is not None:
            raise ParamError(f"{NOT_STORED} or conversations: {resend}.", "conversation")
        if self.background:
            raise ParamError("Background responses are not supported: Gatehouse answers while the request is "
                             "open. Use 'stream': true for long answers.", "background")
        if self.prompt is not None:
            raise ParamError("Stored prompts are not supported: send the prompt itself in 'instructions' and "
                             "'input'.", "prompt")
        return self

    @model_validator(mode="after")
    def _tool_choice_matches_tools(self) -> ResponsesRequest:
        names = {tool.name for tool in self.tools or []}
        if isinstance(self.tool_choice, FunctionChoice) and self.tool_choice.name not in names:
            raise ParamError(f"Invalid value for 'tool_choice': no function named '{self.tool_choice.name}' in "
                             "'tools'.", "tool_choice")
        if self.tool_choice == "required" and not names:
            raise ParamError("'tool_choice' is 'required' but no 'tools' were given.", "tool_choice")
        return self

    @property
    def input_items(self) -> list[InputItem]:
        if isinstance(self.input, str):
            return [InputItem(type="message", role="user", content=self.input)]
        return self.input
