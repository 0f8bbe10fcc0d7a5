"""The canonical generation request: what a front protocol parses into and every engine serves.

Its body is the validated OpenAI request (inference/openai_api/schemas.py), the richest common form of the three
operations: the other dialects Gatehouse speaks translate into it, and each engine translates it into
its server's dialect (Ollama's native API, or OpenAI's own for OpenAI-compatible servers). One request
makes one upstream call per choice (and per prompt, for completions): each takes a queue slot.
"""

from __future__ import annotations

from dataclasses import dataclass

from inference.openai_api.schemas import ChatCompletionRequest, CompletionRequest, EmbeddingRequest
from inference.registry import ModelRoute

CHAT = "chat"
COMPLETION = "completion"
EMBEDDING = "embedding"


@dataclass(frozen=True)
class GenerationRequest:
    operation: str  # CHAT, COMPLETION or EMBEDDING
    body: ChatCompletionRequest | CompletionRequest | EmbeddingRequest
    route: ModelRoute
    texts: tuple[str, ...] = ()  # completion prompts, or embedding inputs, decoded to text

    @property
    def stream(self) -> bool:
        return bool(getattr(self.body, "stream", False))

    @property
    def choices(self) -> int:
        return getattr(self.body, "choice_count", 1)

    @property
    def call_count(self) -> int:
        """Upstream calls: n per prompt for completions, n for chat, one for embeddings."""
        if self.operation == COMPLETION:
            return len(self.texts) * self.choices
        return self.choices if self.operation == CHAT else 1

    def call_index(self, index: int) -> tuple[int, int]:
        """(prompt, choice) of upstream call `index`, prompt-major as OpenAI numbers choices."""
        return divmod(index, self.choices)
