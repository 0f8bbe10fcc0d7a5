"""Engines: how Gatehouse talks to each kind of inference server (`Node.kind`).

Every engine does the same five things for the pipeline and the swap actor, in its server's dialect:

- `prepare(request)`: translate the canonical request (inference/engines/request.py) into one payload per
  upstream call, before the request is admitted, so a request the server could never take is refused
  without holding a slot;
- `stream(node, operation, payload)` / `call(...)`: make one call, yielding canonical parts
  (inference/engines/parts.py);
- `loaded(node)`: what the server has in memory now (and whether it answers at all);
- `load(node, route)` / `unload(node, name)`: where the server can, explicitly; `can_swap(node)` says.

A failure of the node itself (refused connection, timeout, dropped stream) is raised as `NodeFailure`,
so the caller can take the node out and run the call elsewhere; a refusal of the request is an
`ApiError` already in OpenAI's shape, with none of the server's own text.
"""

from __future__ import annotations

from inference.engines import ollama, openai
from inference.engines.base import Engine, NodeFailure
from inference.registry import NodeInfo

__all__ = ["Engine", "NodeFailure", "for_kind", "for_node"]

_ENGINES: dict[str, Engine] = {"ollama": ollama.ENGINE, "openai": openai.ENGINE}


def for_kind(kind: str) -> Engine:
    return _ENGINES.get(kind, ollama.ENGINE)


def for_node(node: NodeInfo) -> Engine:
    return for_kind(node.kind)
