"""Which Ollama release the simulator plays, and the behaviours that depend on it.

The configured `version` is what /api/version reports, and it also decides the behaviours that changed
between releases, so a simulator that says "0.29.1" behaves like 0.29.1. A pre-release counts as its
release ("0.30.0-rc3" is 0.30.0): release candidates carry the release's code.

Two version-dependent behaviours stay explicit knobs instead (`fast_path`, `chunk_style`), because tests
and benchmarks switch them independently of everything else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_VERSION_RE = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)(?:[-+].*)?$")

GIB = 2**30


def parse(version: str) -> tuple[int, int, int]:
    """(major, minor, patch) from "0.32.15", "v0.30.0" or "0.30.0-rc3"; ValueError otherwise."""
    match = _VERSION_RE.match(version.strip())
    if not match:
        raise ValueError(f"version must look like 0.32.15, not {version!r}")
    major, minor, patch = (int(part) for part in match.groups())
    return major, minor, patch


@dataclass(frozen=True)
class Behaviour:
    """The version-dependent behaviours, decided once from the version string."""

    version: tuple[int, int, int]

    @classmethod
    def of(cls, version: str) -> Behaviour:
        return cls(parse(version))

    @property
    def llama_server_runners(self) -> bool:
        """Since v0.30.0 models run as upstream llama-server processes. What follows from that here:
        the scheduler lists a runner only once its load finished (a loading model is invisible to the
        fast path, to /api/ps and to unload requests), and context shift is a launch option, so a
        request with a different `shift` reloads the model."""
        return self.version >= (0, 30, 0)

    @property
    def tags_show_lengths(self) -> bool:
        """Since v0.30.0 /api/tags details carry context_length and embedding_length."""
        return self.version >= (0, 30, 0)

    def default_num_ctx(self, total_vram: int) -> int:
        """num_ctx when neither the request, the Modelfile nor OLLAMA_CONTEXT_LENGTH set it.

        Since v0.15.5 it follows total VRAM (`Serve`, server/routes.go). Ollama's thresholds are
        47 and 23 GiB rather than 48 and 24, because GPUs report a little less than their nominal size.
        Before that it was fixed: 4096 from v0.6.7, 2048 before.
        """
        if self.version >= (0, 15, 5):
            if total_vram >= 47 * GIB:
                return 262144
            if total_vram >= 23 * GIB:
                return 32768
            return 4096
        return 4096 if self.version >= (0, 6, 7) else 2048
