"""Pydantic models of the OpenAI request bodies we accept, and `parse_body`.

Lenient where real clients need it, strict where a wrong value would silently change the result
(OpenAI's API reference for chat completions, completions and embeddings):
- unknown fields are ignored (Continue adds `stream_options`, SDK users add `extra_body`);
- an explicit `null` means "absent" (LangChain sends `seed: null`, `logprobs: null`);
- old and new names both work (`max_tokens` / `max_completion_tokens`, `system` / `developer`);
- ranges follow the spec, and every failure becomes one 400 with `param` naming the field.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from common.apierrors import ApiError
from inference.openai_api.limits import check_limits, check_surrogates

M = TypeVar("M", bound=BaseModel)

TokenId = Annotated[int, Field(ge=0)]
Stop = str | list[str] | None


class ParamError(ValueError):
    """A validation failure about a specific field, raised from a model validator.

    `field` is relative to the model that raised it; `parse_body` prefixes the model's own location
    so the client sees e.g. `messages.2.tool_call_id`, and replaces `{param}` in the message with it.
    """

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


_MISSING = "Missing required parameter: '{param}'."


class _Body(BaseModel):
    # NaN/Infinity are valid Python JSON but never valid sampling values.
    model_config = ConfigDict(extra="ignore", populate_by_name=True, allow_inf_nan=False)


# -- chat messages ---------------------------------------------------------------------------------


class ImageUrl(_Body):
    url: str
    detail: Literal["auto", "low", "high"] | None = None

    @field_validator("url")
    @classmethod
    def _data_uri_only(cls, url: str) -> str:
        # We do no network I/O on behalf of clients (SSRF, latency), and Ollama wants the bytes.
        if not url.startswith("data:") or ";base64," not in url[:200]:
            raise ValueError("Only base64 data URIs (data:image/png;base64,...) are supported for images.")
        return url

    @property
    def base64_data(self) -> str:
        return self.url.split(";base64,", 1)[1]


class ContentPart(_Body):
    type: str
    text: str | None = None
    refusal: str | None = None
    image_url: ImageUrl | None = None

    @field_validator("image_url", mode="before")
    @classmethod
    def _bare_url(cls, value: Any) -> Any:
        # Some clients (older vLLM-style) send `"image_url": "data:..."` instead of an object.
        return {"url": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check_type(self) -> ContentPart:
        if self.type == "text":
            if self.text is None:
                raise ParamError(_MISSING, "text")
        elif self.type == "refusal":
            if self.refusal is None:
                raise ParamError(_MISSING, "refusal")
        elif self.type == "image_url":
            if self.image_url is None:
                raise ParamError(_MISSING, "image_url")
        elif self.type in ("input_audio", "file"):
            raise ParamError(
                f"Invalid value for '{{param}}': content parts of type '{self.type}' are not supported.",
                "type",
            )
        else:
            raise ParamError(
                f"Invalid value for '{{param}}': '{self.type}'. "
                "Supported values are: 'text', 'image_url' and 'refusal'.",
                "type",
            )
        return self


class FunctionCall(_Body):
    name: str
    # A JSON-encoded string per the spec; some clients send the object itself.
    arguments: str | dict[str, Any] = ""


class ToolCall(_Body):
    id: str | None = None
    type: Literal["function"] = "function"
    function: FunctionCall


Role = Literal["system", "developer", "user", "assistant", "tool", "function"]


class ChatMessage(_Body):
    role: Role
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    function_call: FunctionCall | None = None

    @field_validator("role", mode="before")
    @classmethod
    def _lower_role(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check_role_rules(self) -> ChatMessage:
        # Only assistant messages may omit content (LangChain sends null next to tool_calls).
        if self.content is None and self.role != "assistant":
            raise ParamError(_MISSING, "content")
        if self.role == "tool" and not self.tool_call_id:
            raise ParamError(_MISSING, "tool_call_id")
        if self.role != "user" and isinstance(self.content, list):
            for i, part in enumerate(self.content):
                if part.type == "image_url":
                    raise ParamError(
                        f"Image content is only supported in 'user' messages, not '{self.role}'.",
                        f"content.{i}.type",
                    )
        return self

    @property
    def text(self) -> str:
        """The message's text with list content joined (image parts carry no text)."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        texts = [
            p.text if p.type == "text" else p.refusal for p in self.content if p.type in ("text", "refusal")
        ]
        return "\n".join(t for t in texts if t is not None)

    @property
    def images(self) -> list[str]:
        if not isinstance(self.content, list):
            return []
        return [p.image_url.base64_data for p in self.content if p.type == "image_url" and p.image_url]


# -- tools and formats ---------------------------------------------------------------------------


class FunctionDefinition(_Body):
    name: str = Field(min_length=1)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(_Body):
    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(_Body):
    name: str


class NamedToolChoice(_Body):
    type: Literal["function"]
    function: NamedFunction


class JsonSchemaFormat(_Body):
    name: str | None = None
    description: str | None = None
    # `schema` would shadow BaseModel.schema(); the alias keeps the wire name.
    json_schema: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormat(_Body):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    @model_validator(mode="after")
    def _needs_schema(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise ParamError(_MISSING, "json_schema")
        return self


class StreamOptions(_Body):
    include_usage: bool | None = None


# -- request bodies --------------------------------------------------------------------------------


class _Sampling(_Body):
    """Fields shared by chat and legacy completions."""

    model: str = Field(min_length=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    n: int | None = Field(default=None, ge=1, le=128)
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    stop: Stop = None
    # >= 1 because Ollama treats num_predict 0 as "no limit", the opposite of what was asked.
    max_tokens: int | None = Field(default=None, ge=1)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    seed: int | None = None
    logit_bias: dict[str, float] | None = None  # accepted, not supported by Ollama
    user: str | None = None

    @property
    def choice_count(self) -> int:
        return self.n or 1

    @property
    def include_usage(self) -> bool:
        """A final usage chunk was asked for (ignored when not streaming, as compatible servers do)."""
        return bool(self.stream and self.stream_options and self.stream_options.include_usage)

    @property
    def stop_list(self) -> list[str]:
        """Stop sequences as a list; empty strings would stop at once, so they are dropped."""
        stops = [self.stop] if isinstance(self.stop, str) else (self.stop or [])
        return [s for s in stops if s]


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    response_format: ResponseFormat | None = None
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    # How hard a reasoning model thinks; "none" turns thinking off. The names clients send today: OpenAI's
    # (minimal..high), and the larger levels some servers added (max, xhigh, ultra).
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high", "max", "xhigh", "ultra"] | None = None

    @model_validator(mode="after")
    def _cross_field_rules(self) -> ChatCompletionRequest:
        if self.top_logprobs and not self.logprobs:
            raise ParamError("'top_logprobs' requires 'logprobs' to be true.", "top_logprobs")
        names = {tool.function.name for tool in self.tools or []}
        if isinstance(self.tool_choice, NamedToolChoice) and self.tool_choice.function.name not in names:
            raise ParamError(
                f"Invalid value for 'tool_choice': no function named '{self.tool_choice.function.name}' "
                "in 'tools'.",
                "tool_choice",
            )
        if self.tool_choice == "required" and not names:
            raise ParamError("'tool_choice' is 'required' but no 'tools' were given.", "tool_choice")
        return self

    @property
    def max_output_tokens(self) -> int | None:
        # LangChain sends max_completion_tokens, Continue sends max_tokens; the new name wins.
        return self.max_completion_tokens or self.max_tokens


class CompletionRequest(_Sampling):
    prompt: str | list[str] | list[TokenId] | list[list[TokenId]]
    suffix: str | None = None
    echo: bool | None = None
    logprobs: int | None = Field(default=None, ge=0, le=5)
    best_of: int | None = Field(default=None, ge=0, le=20)

    @field_validator("prompt")
    @classmethod
    def _non_empty(cls, prompt: Any) -> Any:
        if isinstance(prompt, list) and not prompt:
            raise ValueError("Invalid 'prompt': empty array. Expected at least one prompt.")
        return prompt

    @model_validator(mode="after")
    def _best_of_rules(self) -> CompletionRequest:
        # best_of > n (server-side candidates ranked by logprob) is accepted and served as n: the
        # client still gets n valid completions, only without the extra ranking.
        if self.best_of is not None and self.best_of < self.choice_count:
            raise ParamError("'best_of' must be greater than or equal to 'n'.", "best_of")
        if self.best_of is not None and self.best_of > 1 and self.stream:
            raise ParamError("'best_of' cannot be used with 'stream'.", "best_of")
        return self


class EmbeddingRequest(_Body):
    model: str = Field(min_length=1)
    input: str | list[str] | list[TokenId] | list[list[TokenId]]
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: int | None = Field(default=None, ge=1)
    user: str | None = None

    @field_validator("input")
    @classmethod
    def _size(cls, value: Any) -> Any:
        if isinstance(value, list):
            if not value:
                raise ValueError("Invalid 'input': empty array. Expected at least one input.")
            # One flat token array is one input, however long (the context length bounds it).
            if len(value) > 2048 and not isinstance(value[0], int):
                raise ValueError(f"Invalid 'input': at most 2048 inputs per request, got {len(value)}.")
        return value


# -- parsing -------------------------------------------------------------------------------------------

_TYPE_NAMES = {
    "string_type": "a string",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "a boolean",
    "bool_parsing": "a boolean",
    "list_type": "an array",
    "dict_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
}


def _model_names() -> set[str]:
    names: set[str] = set()
    stack: list[type[BaseModel]] = [_Body]
    while stack:
        cls = stack.pop()
        names.add(cls.__name__)
        stack.extend(cls.__subclasses__())
    return names


def _param(loc: tuple[int | str, ...]) -> str:
    # Union members add labels such as 'str', 'list[ContentPart]' or 'NamedToolChoice' to the
    # location; clients only care about the path through their JSON.
    models = _model_names()
    parts = [
        str(p)
        for p in loc
        if isinstance(p, int)
        or not (p in ("str", "int", "float", "bool") or p in models or "[" in p or p.startswith("function-"))
    ]
    return ".".join(parts)


def _rank(error: Any) -> tuple[int, int]:
    # Prefer the deepest location (the most specific complaint), then errors that are not about
    # the type: "must be >= 0" comes from the union member whose type matched, while "should be a
    # valid string" from the other members is noise.
    depth = len(error["loc"])
    is_type_error = error["type"] in _TYPE_NAMES or error["type"] == "missing"
    return (-len(_param(error["loc"]).split(".")) if depth else 0, int(is_type_error))


def error_to_api(exc: ValidationError) -> ApiError:
    """A pydantic failure as OpenAI words it: the first error, its parameter, a 400."""
    errors = sorted(exc.errors(include_url=False), key=_rank)
    first = errors[0]
    param = _param(first["loc"]) or None

    original = (first.get("ctx") or {}).get("error")
    if isinstance(original, ParamError):
        if original.field:
            param = f"{param}.{original.field}" if param else original.field
        return ApiError.invalid_request(original.message.replace("{param}", param or ""), param=param)

    kind = first["type"]
    same_place = [e for e in errors if _param(e["loc"]) == (param or "")]
    if kind == "missing":
        message = f"Missing required parameter: '{param}'."
    elif all(e["type"] in _TYPE_NAMES for e in same_place):
        expected = " or ".join(dict.fromkeys(_TYPE_NAMES[e["type"]] for e in same_place))
        message = f"Invalid type for '{param}': expected {expected}."
    elif kind == "too_short":
        message = f"Invalid '{param}': empty array. Expected an array with at least one item."
    elif kind == "string_too_short":
        message = f"Invalid '{param}': empty string."
    elif kind == "value_error":
        message = str(first["msg"]).removeprefix("Value error, ")
    else:
        message = f"Invalid value for '{param}': {first['msg']}."
    return ApiError.invalid_request(message, param=param)


def validate_data(model_cls: type[M], raw: bytes, data: dict) -> M:
    """A decoded JSON object checked as a request body (`raw` holds its bytes): no lone surrogates, within
    the API's limits, and the schema; every failure a 400 `ApiError`. Batch files check each line's body
    with it too (batches/validation.py)."""
    check_surrogates(raw, data)
    check_limits(data)
    try:
        return model_cls.model_validate(data)
    except ValidationError as exc:
        raise error_to_api(exc) from None


def parse_body(model_cls: type[M], raw: bytes) -> M:
    """Parse and validate a request body; every failure is a 400 `ApiError`, never a pydantic error."""
    if not raw or not raw.strip():
        raise ApiError.invalid_request("The request body is empty; expected a JSON object.")
    try:
        data = json.loads(raw)
    except UnicodeDecodeError as exc:  # before ValueError, its base class
        raise ApiError.invalid_request(
            f"The request body is not valid {exc.encoding.upper()} text: byte 0x{exc.object[exc.start]:02x} at "
            f"position {exc.start} ({exc.reason}). Send the JSON body encoded as UTF-8."
        ) from None
    except ValueError as exc:
        raise ApiError.invalid_request(f"We could not parse the JSON body of your request: {exc}.") from None
    except RecursionError:  # absurdly deep nesting: still the client's malformed body, not our 500
        raise ApiError.invalid_request(
            "We could not parse the JSON body of your request: nested too deeply."
        ) from None
    if not isinstance(data, dict):
        raise ApiError.invalid_request("The request body must be a JSON object.")
    try:
        return validate_data(model_cls, raw, data)
    except ApiError as error:
        # The model the body asked for, for the usage record of the refused request (inference/pipeline.py Cleanup).
        model = data.get("model")
        error.requested_model = model if isinstance(model, str) else None
        raise
