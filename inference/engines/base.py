"""The engine interface (see inference/engines/__init__.py) and the one failure every engine raises."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

from inference.engines.parts import Embeddings, Part
from inference.engines.request import GenerationRequest
from inference.registry import ModelRoute, NodeInfo


class NodeFailure(Exception):
    """The node did not answer (refused, timed out, dropped the connection): not the request's fault."""

    def __init__(self, node: str, cause: BaseException) -> None:
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.node = node
        self.cause = cause


class LoadRefused(Exception):
    """The server answered a load with an error of the model's own (a bad file, too little memory).

    Its status and text go to the model's waiting requests, which turn them into an OpenAI error."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"{status}: {text}")
        self.status = status
        self.text = text


class Engine(Protocol):
    kind: str

    def prepare(self, request: GenerationRequest) -> list[Any]: ...

    def stream(self, node: NodeInfo, operation: str, payload: Any) -> AsyncIterator[Part]: ...

    async def call(self, node: NodeInfo, operation: str, payload: Any) -> Part | Embeddings: ...

    async def loaded(self, node: NodeInfo) -> list[dict[str, Any]]: ...

    def can_swap(self, node: NodeInfo) -> bool: ...

    async def load(self, node: NodeInfo, route: ModelRoute) -> None: ...

    async def unload(self, node: NodeInfo, name: str) -> None: ...

