"""A prompt meets the runner's context: what Ollama truncates, what it shifts and what it refuses.

Two request fields decide, both on by default: `truncate` lets Ollama cut the prompt to fit, and `shift`
lets the runner shift its context (on llama-server runners, since v0.30.0, a launch option).

- Chat with truncate drops whole messages, oldest first, until the prompt fits num_ctx; system messages
  and the last message always stay (chatPrompt, Ollama server/prompt.go).
- Since v0.30.0 (llamaServerRunner.completionPromptForRequest, llm/llama_server.go): a prompt still over
  num_ctx - 1 tokens is cut to keep num_keep tokens and the end when the context can shift, and refused
  with 400 when it cannot. With truncate off Ollama checks nothing and llama-server refuses a prompt of
  num_ctx tokens or more; Ollama passes llama-server's JSON error body on as its error text.
- Before v0.30.0 the Ollama runner (runner/ollamarunner) cut a prompt over num_ctx to num_ctx tokens, or,
  with truncate off, refused it with 400 "the input length exceeds the context length".

Token counts come from the simulator's stand-in tokenizer (generation.py), not a model's own.
"""

from __future__ import annotations

import json
from typing import Any

from ollamasim import generation
from ollamasim.wire import ApiError

PROMPT_TOO_LONG = ("the prompt is longer than the context length currently available to the model; shorten the "
                   "prompt, adjust the context length in settings, or use a model with a longer context length")
INPUT_TOO_LONG = "the input length exceeds the context length"


def llama_server_refusal(prompt_tokens: int, num_ctx: int) -> str:
    """llama-server's 400 body for a prompt that does not fit its slot, compact as it writes it."""
    error = {"code": 400,
             "message": f"request ({prompt_tokens} tokens) exceeds the available context size ({num_ctx} tokens), "
                        "try increasing it",
             "type": "exceed_context_size_error", "n_prompt_tokens": prompt_tokens, "n_ctx": num_ctx}
    return json.dumps({"error": error}, separators=(",", ":"))


def chat_prompt_tokens(messages: list[dict[str, Any]], tools: list[Any], num_ctx: int, truncate: bool) -> int:
    """Tokens of the chat prompt Ollama renders: with truncate, the oldest messages that do not fit are gone."""
    if not truncate or not messages:
        return generation.chat_prompt_tokens(messages, tools)
    last = len(messages) - 1
    for start in range(last + 1):
        system = [m for m in messages[:start] if m.get("role") == "system"]
        tokens = generation.chat_prompt_tokens(system + messages[start:], tools)
        if tokens <= num_ctx or start == last:
            return tokens
    raise AssertionError("unreachable: the last message is always kept")


def fit(prompt_tokens: int, num_ctx: int, *, truncate: bool, context_shift: bool, num_keep: int,
        llama_server: bool) -> int:
    """The number of prompt tokens the runner evaluates, or ApiError(400) when it refuses the prompt."""
    if not llama_server:
        if prompt_tokens <= num_ctx:
            return prompt_tokens
        if not truncate:
            raise ApiError(400, INPUT_TOO_LONG)
        return num_ctx  # num_keep tokens from the start, the rest from the end
    if not truncate:
        if prompt_tokens >= num_ctx:
            raise ApiError(400, llama_server_refusal(prompt_tokens, num_ctx))
        return prompt_tokens
    if prompt_tokens <= num_ctx - 1:
        return prompt_tokens
    if not context_shift:
        raise ApiError(400, PROMPT_TOO_LONG)
    # Keep num_keep tokens (all of them when negative) plus the BOS token, and free about half of the rest,
    # as the old runners' first context shift did (contextShiftPromptLimit).
    keep = min(prompt_tokens if num_keep < 0 else num_keep + 1, num_ctx - 1)
    return num_ctx - max((num_ctx - keep) // 2, 1)
