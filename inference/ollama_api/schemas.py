"""Pydantic models of the Ollama native request bodies Gatehouse accepts.

Lenient like Ollama where clients differ (unknown fields and options are ignored, `null` means absent),
strict where a wrong value would change the answer: sampling options keep the ranges the canonical
(OpenAI) body allows, so a bad value is a 400 naming `options.<name>` rather than a surprise later.
`num_ctx` and `keep_alive` are accepted and ignored: Gatehouse alone decides a model's context and how
long it stays loaded (a client's own num_ctx would make Ollama reload the model for everyone).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)


class Options(_Body):
    """The sampling options the canonical request carries. Others (top_k, min_p, repeat_penalty, num_ctx...)
    are ignored: an OpenAI-compatible node could not honour them, and num_ctx is Gatehouse's."""

    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    seed: int | None = None
    stop: str | list[str] | None = None
    num_predict: int | None = None  # -1 (no limit) and -2 (fill the context) both mean "no cap"
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)

    @property
    def max_tokens(self) -> int | None:
        return self.num_predict if self.num_predict is not None and self.num_predict > 0 else None


Format = Literal["", "json"] | dict[str, Any] | None
Think = bool | Literal["low", "medium", "high", "max"] | None


class FunctionCall(_Body):
    name: str
    arguments: dict[str, Any] | str = Field(default_factory=dict)


class ToolCall(_Body):
    id: str | None = None
    function: FunctionCall


class Message(_Body):
    role: Literal["system", "user", "assistant", "tool"]
    content: str | None = ""
    images: list[str] | None = None
    thinking: str | None = None  # an earlier turn's trace: not sent back to the model
    tool_calls: list[ToolCall] | None = None
    tool_name: str | None = None
    tool_call_id: str | None = None

    @field_validator("role", mode="before")
    @classmethod
    def _lower_role(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value  # as Ollama does


class GenerationBody(_Body):
    model: str = Field(min_length=1)
    stream: bool | None = True  # Ollama streams unless told not to
    format: Format = None
    options: Options | None = None
    think: Think = None
    keep_alive: Any = None  # ignored (module docstring)

    @property
    def opts(self) -> Options:
        return self.options or Options()


class ChatRequest(GenerationBody):
    messages: list[Message] | None = None
    tools: list[dict[str, Any]] | None = None


class GenerateRequest(GenerationBody):
    prompt: str | None = None
    suffix: str | None = None
    system: str | None = None
    raw: bool | None = None
    images: list[str] | None = None


class EmbedRequest(_Body):
    model: str = Field(min_length=1)
    input: str | list[str] = ""
    dimensions: int | None = Field(default=None, ge=1)
    keep_alive: Any = None

    @property
    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


class EmbeddingsRequest(_Body):
    """The older /api/embeddings: one prompt, one vector."""

    model: str = Field(min_length=1)
    prompt: str = ""
    keep_alive: Any = None


class ShowRequest(_Body):
    model: str | None = None
    name: str | None = None  # the older field name

    @property
    def model_name(self) -> str:
        return self.model or self.name or ""
