"""/v1/embeddings: request inputs -> texts for Ollama, vectors -> OpenAI's response.

Both SDKs ask for base64 unless the caller chose a format, and the Node SDK decodes every item as
base64 without checking its type, so ignoring `encoding_format` silently corrupts Continue's
vectors (openai-python `resources/embeddings.py`, openai-node `resources/embeddings.ts`). Pure Python (no numpy) so production needs no extra dependency.
"""

from __future__ import annotations

import base64
import math
import struct
from collections.abc import Sequence
from typing import Any

from common.apierrors import ApiError
from inference.engines.ollama_translate import texts_from_input
from inference.openai_api.schemas import EmbeddingRequest

# What an empty input is embedded as. Ollama drops a top-level "" (it answers with no vectors at
# all) and an empty list item reaches the runner as zero tokens, which some models reject. LangChain
# embeds empty texts with `input: ""` and expects one vector back, so we embed a single space: a
# valid, content-free input whose vector is the closest thing to "no text".
EMPTY_INPUT_TEXT = " "


def embedding_inputs(req: EmbeddingRequest) -> list[str]:
    """The texts to embed, in input order: one per string, token array or item.

    Token arrays are cl100k ids: LangChain's default `OpenAIEmbeddings` pre-tokenizes with tiktoken
    (`check_embedding_ctx_length=True`) and sends `int[][]`; our models have other tokenizers, so we
    decode the ids back to the text they stand for.
    """
    texts = texts_from_input(req.input, param="input")
    return [text if text else EMPTY_INPUT_TEXT for text in texts]


def embed_request_to_ollama(
    texts: list[str], *, ollama_model: str, num_ctx: int, keep_alive: str | int | None
) -> dict[str, Any]:
    """kwargs for `AsyncClient.embed(**kwargs)`.

    `num_ctx` is pinned like for chat: an embed call with another context size on the same model
    makes Ollama reload it (`needsReload`, Ollama's server/sched.go). `dimensions` is not sent: `embeddings_response` applies
    it, so a value larger than the model's is a 400 instead of being silently ignored by Ollama.
    """
    kwargs: dict[str, Any] = {"model": ollama_model, "input": texts, "options": {"num_ctx": num_ctx}}
    if keep_alive is not None:
        kwargs["keep_alive"] = keep_alive
    return kwargs


def truncate_dimensions(vector: Sequence[float], k: int) -> list[float]:
    """Keep the first `k` values and renormalise to unit length (Matryoshka-style shortening).

    Ollama itself silently ignores `dimensions` larger than the model's, so we check here.
    """
    if k > len(vector):
        raise ApiError.invalid_request(
            f"Invalid 'dimensions': this model produces {len(vector)}-dimensional embeddings, "
            f"so 'dimensions' must be at most {len(vector)}.",
            param="dimensions",
        )
    head = [float(x) for x in vector[:k]]
    norm = math.sqrt(math.fsum(x * x for x in head))
    if norm == 0.0:
        return head
    return [x / norm for x in head]


def encode_embedding(vector: Sequence[float], encoding_format: str | None) -> list[float] | str:
    """Floats as-is, or base64 of little-endian float32 bytes (4 per value) as both SDKs decode it."""
    if encoding_format == "base64":
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
    return [float(x) for x in vector]


def embeddings_response(
    model_id: str,
    vectors: Sequence[Sequence[float]],
    prompt_tokens: int | None,
    encoding_format: str | None,
    *,
    dimensions: int | None = None,
) -> dict[str, Any]:
    """The `/v1/embeddings` body, `data` in input order; `dimensions` truncates each vector first."""
    data = []
    for index, vector in enumerate(vectors):
        if dimensions is not None:
            vector = truncate_dimensions(vector, dimensions)
        data.append(
            {"object": "embedding", "index": index, "embedding": encode_embedding(vector, encoding_format)}
        )
    tokens = prompt_tokens or 0
    return {
        "object": "list",
        "data": data,
        "model": model_id,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
