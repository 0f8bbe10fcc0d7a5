"""Canonical parts (inference/engines/parts.py) -> OpenAI response bodies, stream chunks and SSE bytes.

Shapes follow OpenAI's API reference (chat completion, chunk and completion objects) exactly, because clients break on small
deviations: the Python stream helper concatenates a repeated `role` into "assistantassistant",
LangChain silently drops tool-call deltas without `index`/`function`, Continue holds back every
chunk with a truthy `usage`, and `chunk.choices[0]` crashes on an unrequested empty `choices`.
"""

from __future__ import annotations

import json
import secrets
import string
from collections.abc import Sequence
from typing import Any

from common.apierrors import SERVER_ERROR, ApiError
from inference.engines.parts import Part, TokenLogprob, ToolCall

SYSTEM_FINGERPRINT = "fp_gatehouse"

SSE_DONE = b"data: [DONE]\n\n"
# A comment line: ignored by both SDKs. Never ": ping", which Continue takes as end of stream.
SSE_KEEPALIVE = b": keep-alive\n\n"

_ALPHABET = string.ascii_letters + string.digits


# -- ids -------------------------------------------------------------------------------------------


def _random_suffix(length: int = 24) -> str:
    # Ollama's own ids are chatcmpl-<0..998>, which collide; clients and logs key on these.
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def new_chat_id() -> str:
    return f"chatcmpl-{_random_suffix()}"


def new_completion_id() -> str:
    return f"cmpl-{_random_suffix()}"


def new_tool_call_id() -> str:
    return f"call_{_random_suffix()}"


# -- shared pieces -----------------------------------------------------------------------------


def make_usage(prompt_tokens: int | None, completion_tokens: int | None) -> dict[str, int]:
    prompt, completion = prompt_tokens or 0, completion_tokens or 0
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def finish_reason(done_reason: str | None, *, tool_calls: bool = False) -> str:
    if tool_calls:
        return "tool_calls"
    # "length" for both max tokens and a full context; everything else is a stop.
    return "length" if done_reason == "length" else "stop"


def _token_bytes(token: str) -> list[int]:
    return list(token.encode("utf-8"))


def _chat_token(entry: TokenLogprob) -> dict[str, Any]:
    return {"token": entry.token, "logprob": entry.logprob, "bytes": _token_bytes(entry.token)}


def chat_logprobs(entries: Sequence[TokenLogprob] | None) -> dict[str, Any]:
    """`choices[].logprobs` for chat: `{"content": [...], "refusal": null}`."""
    content = [
        {**_chat_token(entry), "top_logprobs": [_chat_token(top) for top in entry.top_logprobs or []]}
        for entry in entries or []
    ]
    return {"content": content, "refusal": None}


def completion_logprobs(
    entries: Sequence[TokenLogprob] | None, *, offset: int, echo_prompt: str | None = None
) -> dict[str, Any]:
    """The legacy logprobs object; its four lists always have equal lengths.

    Ollama gives no logprobs for prompt tokens, so an echoed prompt is one pseudo-token with a
    null logprob (OpenAI also reports null for the first prompt token). `text_offset` counts
    characters from the start of the choice's `text`.
    """
    tokens: list[str] = []
    token_logprobs: list[float | None] = []
    top_logprobs: list[dict[str, float] | None] = []
    text_offset: list[int] = []
    if echo_prompt:
        tokens.append(echo_prompt)
        token_logprobs.append(None)
        top_logprobs.append(None)
        text_offset.append(offset)
        offset += len(echo_prompt)
    for entry in entries or []:
        tokens.append(entry.token)
        token_logprobs.append(entry.logprob)
        top_logprobs.append({top.token: top.logprob for top in entry.top_logprobs or []})
        text_offset.append(offset)
        offset += len(entry.token)
    return {
        "tokens": tokens,
        "token_logprobs": token_logprobs,
        "top_logprobs": top_logprobs,
        "text_offset": text_offset,
    }


def _tool_calls(part: Part, limit: int | None) -> list[ToolCall]:
    calls = list(part.tool_calls)
    return calls[:limit] if limit is not None else calls


# -- non-streaming -------------------------------------------------------------------------------


def chat_completion(
    *,
    completion_id: str,
    created: int,
    model: str,
    choices: Sequence[Part],
    include_logprobs: bool,
    parallel_tool_calls: bool = True,
    system_fingerprint: str = SYSTEM_FINGERPRINT,
) -> dict[str, Any]:
    """A `chat.completion` object from one whole (non-stream) answer per choice.

    With `parallel_tool_calls=False` only the first tool call is kept (Ollama cannot be told).
    """
    out_choices = []
    for index, resp in enumerate(choices):
        calls = _tool_calls(resp, None if parallel_tool_calls else 1)
        content = resp.text
        message: dict[str, Any] = {
            "role": "assistant",
            # null next to tool calls, as OpenAI does; LangChain and the SDKs expect that.
            "content": content if content or not calls else None,
            "refusal": None,
        }
        if resp.thinking:
            # Non-standard, and clients disagree on the name: DeepSeek-style readers (Continue, LangChain)
            # take `reasoning_content`, Ollama- and vLLM-style ones `reasoning`. Both carry the trace.
            message["reasoning_content"] = message["reasoning"] = resp.thinking
        if calls:
            message["tool_calls"] = [
                {
                    "id": new_tool_call_id(),
                    "type": "function",
                    "function": {
                        "name": call.name,
                        "arguments": call.arguments_json,
                    },
                }
                for call in calls
            ]
        out_choices.append(
            {
                "index": index,
                "message": message,
                "logprobs": chat_logprobs(resp.logprobs) if include_logprobs else None,
                "finish_reason": finish_reason(resp.finish_reason, tool_calls=bool(calls)),
            }
        )
    # n choices share one prompt: like OpenAI, count it once and sum the completions.
    prompt_tokens = max((r.prompt_tokens or 0 for r in choices), default=0)
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": out_choices,
        "usage": make_usage(prompt_tokens, sum(r.completion_tokens or 0 for r in choices)),
        "system_fingerprint": system_fingerprint,
    }


def _prompt_major_usage(
    prompt_counts: Sequence[int | None], completion_counts: Sequence[int | None], n: int
) -> dict[str, int]:
    # Choices are grouped n per prompt; each prompt is counted once, completions all add up.
    groups = [prompt_counts[i : i + n] for i in range(0, len(prompt_counts), max(n, 1))]
    prompt_tokens = sum(max((c or 0 for c in group), default=0) for group in groups)
    return make_usage(prompt_tokens, sum(c or 0 for c in completion_counts))


def text_completion(
    *,
    completion_id: str,
    created: int,
    model: str,
    prompts: Sequence[str],
    n: int,
    choices: Sequence[Part],
    echo: bool = False,
    logprobs: int | None = None,
    system_fingerprint: str = SYSTEM_FINGERPRINT,
) -> dict[str, Any]:
    """A `text_completion` object. `choices` are ordered prompt-major: choice `prompt_i*n + j`."""
    out_choices = []
    for index, resp in enumerate(choices):
        prompt = prompts[index // n]
        text = resp.text
        out_choices.append(
            {
                "text": prompt + text if echo else text,
                "index": index,
                "logprobs": (
                    completion_logprobs(resp.logprobs, offset=0, echo_prompt=prompt if echo else None)
                    if logprobs is not None
                    else None
                ),
                "finish_reason": finish_reason(resp.finish_reason),
            }
        )
    return {
        "id": completion_id,
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": out_choices,
        "usage": _prompt_major_usage(
            [r.prompt_tokens for r in choices], [r.completion_tokens for r in choices], n
        ),
        "system_fingerprint": system_fingerprint,
    }


# -- streaming ------------------------------------------------------------------------------------


class _ChoiceState:
    __slots__ = ("started", "finished", "tool_calls", "offset", "prompt_tokens", "completion_tokens")

    def __init__(self) -> None:
        self.started = False
        self.finished = False
        self.tool_calls = 0
        self.offset = 0
        self.prompt_tokens: int | None = None
        self.completion_tokens: int | None = None


class _Chunker:
    object_name = ""

    def __init__(
        self,
        *,
        completion_id: str,
        created: int,
        model: str,
        n: int,
        include_usage: bool,
        system_fingerprint: str,
    ) -> None:
        self.completion_id = completion_id
        self.created = created
        self.model = model
        self.n = n
        self.include_usage = include_usage
        self.system_fingerprint = system_fingerprint
        self._choices = [_ChoiceState() for _ in range(n)]

    def _chunk(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        # Same id/created/model on every chunk; `usage: null` everywhere only when usage was asked
        # for, and never a usage value before the final chunk.
        chunk = {
            "id": self.completion_id,
            "object": self.object_name,
            "created": self.created,
            "model": self.model,
            "system_fingerprint": self.system_fingerprint,
            "choices": choices,
        }
        if self.include_usage:
            chunk["usage"] = None
        return chunk

    @property
    def done(self) -> bool:
        """True once every choice has sent its finish chunk."""
        return all(c.finished for c in self._choices)

    @property
    def usage(self) -> dict[str, int]:
        raise NotImplementedError

    def _close_stragglers(self) -> list[dict[str, Any]]:
        raise NotImplementedError

    def finish(self) -> list[dict[str, Any]]:
        """Call once every upstream stream has ended normally (on failure send `sse_error` instead).

        Closes any choice that never saw `done` (so SDK accumulators do not throw on a missing
        finish_reason), then adds the single usage chunk if it was requested.
        """
        chunks = self._close_stragglers()
        if self.include_usage:
            final = self._chunk([])
            final["usage"] = self.usage
            chunks.append(final)
        return chunks


class ChatChunker(_Chunker):
    """Turns streamed chat parts, tagged with their choice index, into `chat.completion.chunk`s."""

    object_name = "chat.completion.chunk"

    def __init__(
        self,
        *,
        completion_id: str,
        created: int,
        model: str,
        n: int = 1,
        include_usage: bool = False,
        include_logprobs: bool = False,
        parallel_tool_calls: bool = True,
        system_fingerprint: str = SYSTEM_FINGERPRINT,
    ) -> None:
        super().__init__(
            completion_id=completion_id,
            created=created,
            model=model,
            n=n,
            include_usage=include_usage,
            system_fingerprint=system_fingerprint,
        )
        self.include_logprobs = include_logprobs
        self.parallel_tool_calls = parallel_tool_calls

    def _choice(
        self, index: int, delta: dict[str, Any], logprobs: Any = None, reason: str | None = None
    ) -> dict[str, Any]:
        return self._chunk([{"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": reason}])

    def feed(self, index: int, part: Part) -> list[dict[str, Any]]:
        state = self._choices[index]
        if state.finished:
            return []
        entries = list(part.logprobs or []) if self.include_logprobs else []

        # (delta, logprobs) pairs for this part, before the role is merged into the first one.
        deltas: list[tuple[dict[str, Any], Any]] = []
        text: dict[str, Any] = {}
        if part.thinking:
            text["reasoning_content"] = text["reasoning"] = part.thinking
        if part.text or entries:
            text["content"] = part.text
        if text:
            deltas.append((text, chat_logprobs(entries) if entries else None))

        limit = None if self.parallel_tool_calls else max(0, 1 - state.tool_calls)
        for call in _tool_calls(part, limit):
            k = state.tool_calls
            state.tool_calls += 1
            # First delta of a call: index, id, type, name and empty arguments; then the arguments.
            # Engines hand over each call whole, so one argument delta carries all of it.
            header = {
                "index": k,
                "id": new_tool_call_id(),
                "type": "function",
                "function": {"name": call.name, "arguments": ""},
            }
            deltas.append(({"tool_calls": [header]}, None))
            args = {"index": k, "function": {"arguments": call.arguments_json}}
            deltas.append(({"tool_calls": [args]}, None))

        if not state.started:
            state.started = True
            first, first_logprobs = deltas[0] if deltas else ({}, None)
            # role only in the first delta of each choice; content null next to a tool call.
            content = first.get("content", None if "tool_calls" in first else "")
            merged = {
                "role": "assistant",
                "content": content,
                **{k: v for k, v in first.items() if k != "content"},
            }
            deltas[:1] = [(merged, first_logprobs)]

        chunks = [self._choice(index, delta, logprobs) for delta, logprobs in deltas]
        if part.done:
            state.finished = True
            state.prompt_tokens, state.completion_tokens = part.prompt_tokens, part.completion_tokens
            chunks.append(
                self._choice(
                    index, {}, None, finish_reason(part.finish_reason, tool_calls=state.tool_calls > 0)
                )
            )
        return chunks

    @property
    def usage(self) -> dict[str, int]:
        prompt = max((c.prompt_tokens or 0 for c in self._choices), default=0)
        return make_usage(prompt, sum(c.completion_tokens or 0 for c in self._choices))

    def _close_stragglers(self) -> list[dict[str, Any]]:
        chunks = []
        for index, state in enumerate(self._choices):
            if state.finished:
                continue
            if not state.started:
                state.started = True
                chunks.append(self._choice(index, {"role": "assistant", "content": ""}))
            state.finished = True
            chunks.append(self._choice(index, {}, None, finish_reason(None, tool_calls=state.tool_calls > 0)))
        return chunks


class CompletionChunker(_Chunker):
    """Turns streamed completion parts, tagged with their choice index, into `text_completion` chunks."""

    object_name = "text_completion"

    def __init__(
        self,
        *,
        completion_id: str,
        created: int,
        model: str,
        prompts: Sequence[str],
        n: int = 1,
        echo: bool = False,
        logprobs: int | None = None,
        include_usage: bool = False,
        system_fingerprint: str = SYSTEM_FINGERPRINT,
    ) -> None:
        super().__init__(
            completion_id=completion_id,
            created=created,
            model=model,
            n=len(prompts) * n,
            include_usage=include_usage,
            system_fingerprint=system_fingerprint,
        )
        self.prompts = list(prompts)
        self.per_prompt = n
        self.echo = echo
        self.logprobs = logprobs

    def _choice(
        self, index: int, text: str, logprobs: Any = None, reason: str | None = None
    ) -> dict[str, Any]:
        return self._chunk([{"text": text, "index": index, "logprobs": logprobs, "finish_reason": reason}])

    def _start(self, index: int, state: _ChoiceState) -> list[dict[str, Any]]:
        state.started = True
        if not self.echo:
            return []
        prompt = self.prompts[index // self.per_prompt]
        logprobs = (
            completion_logprobs(None, offset=0, echo_prompt=prompt) if self.logprobs is not None else None
        )
        state.offset = len(prompt)
        return [self._choice(index, prompt, logprobs)]

    def feed(self, index: int, part: Part) -> list[dict[str, Any]]:
        state = self._choices[index]
        if state.finished:
            return []
        chunks = [] if state.started else self._start(index, state)
        text = part.text
        entries = list(part.logprobs or []) if self.logprobs is not None else []
        if text or entries:
            logprobs = (
                completion_logprobs(entries, offset=state.offset) if self.logprobs is not None else None
            )
            state.offset += len(text)
            chunks.append(self._choice(index, text, logprobs))
        if part.done:
            state.finished = True
            state.prompt_tokens, state.completion_tokens = part.prompt_tokens, part.completion_tokens
            chunks.append(self._choice(index, "", None, finish_reason(part.finish_reason)))
        return chunks

    @property
    def usage(self) -> dict[str, int]:
        return _prompt_major_usage(
            [c.prompt_tokens for c in self._choices],
            [c.completion_tokens for c in self._choices],
            self.per_prompt,
        )

    def _close_stragglers(self) -> list[dict[str, Any]]:
        chunks = []
        for index, state in enumerate(self._choices):
            if state.finished:
                continue
            if not state.started:
                chunks.extend(self._start(index, state))
            state.finished = True
            chunks.append(self._choice(index, "", None, finish_reason(None)))
        return chunks


# -- SSE -------------------------------------------------------------------------------------------


def _json(obj: Any) -> bytes:
    # ensure_ascii keeps every event pure ASCII: no raw U+2028/U+0085 that a str.splitlines()-based
    # reader would take for a line break, so one event is always exactly one `data:` line.
    return json.dumps(obj, separators=(",", ":")).encode("ascii")


def sse_event(obj: Any) -> bytes:
    return b"data: " + _json(obj) + b"\n\n"


def sse_error(error: ApiError | str) -> bytes:
    """An in-stream error: the SDKs raise APIError with its message, Continue shows it."""
    if isinstance(error, ApiError):
        body = error.as_dict()
    else:
        body = {"error": {"message": error, "type": SERVER_ERROR, "param": None, "code": None}}
    return sse_event(body)
