"""Run the Ollama simulator (`python -m ollamasim`) as a real process for a test, and talk to it.

    with SimulatorProcess({"server": {"num_parallel": 2}, "models": [...]}) as sim:
        ollama.Client(host=sim.url).chat(...)
        assert sim.stats()["models"]["llama3.2:3b"]["max_in_flight"] == 2

The config dict has the TOML file's shape ([server], [[models]], [[pullable]]); without "models" the demo
catalogue is served. The process (in a process group of its own) is stopped on exit, and at the end of the
session if a test forgot to; its config and log live in the session's temporary directory.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx

from ollamasim.config import to_toml
from tests.support.processes import STARTING, eventually, free_port, session_tmp, spawn, stop_group


class SimulatorProcess:
    def __init__(self, config: dict[str, Any] | None = None, *, args: list[str] | tuple[str, ...] = (),
                 env: dict[str, str] | None = None, startup_timeout: float = 20.0, port: int | None = None) -> None:
        self.config = config
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._dir = tempfile.mkdtemp(prefix="ollamasim-", dir=session_tmp())
        self.log_path = Path(self._dir, "sim.log")
        command = [sys.executable, "-m", "ollamasim", "--host", "127.0.0.1", "--port", str(self.port), *args]
        if config is not None:
            config_path = Path(self._dir, "sim.toml")
            config_path.write_text(to_toml(config))
            command += ["--config", str(config_path)]
        self.proc = spawn(command, what=f"ollamasim :{self.port}", log=self.log_path,
                          env={"PYTHONUNBUFFERED": "1", **(env or {})})
        try:
            eventually(self._answers, timeout=startup_timeout, what="ollamasim", proc=self.proc, ignore=STARTING)
        except Exception:
            output = self.output()
            self.stop()
            raise RuntimeError(f"the simulator did not start:\n{output}") from None

    def _answers(self) -> bool:
        try:
            return httpx.get(self.url + "/", timeout=1.0).text == "Ollama is running"
        except httpx.HTTPError:
            return False

    def __enter__(self) -> SimulatorProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def output(self) -> str:
        """Everything the process printed (the listening line, logs, tracebacks)."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stats(self) -> dict[str, Any]:
        return httpx.get(self.url + "/sim/stats", timeout=5.0).json()

    def model_stats(self, model: str) -> dict[str, Any]:
        models = self.stats()["models"]
        return models.get(model) or {}

    def reset(self, *, unload: bool = False, faults: bool = False) -> dict[str, Any]:
        body = {"unload": unload, "faults": faults}
        return httpx.post(self.url + "/sim/reset", json=body, timeout=5.0).json()

    def set_faults(self, model: str, **faults: Any) -> dict[str, Any]:
        """Runtime fault injection, e.g. set_faults("m", fail_after_tokens=3); a value of None removes it."""
        response = httpx.post(self.url + "/sim/faults", json={"model": model, **faults}, timeout=5.0)
        response.raise_for_status()
        return response.json()

    def kill(self) -> None:
        """kill -9: a node that dies."""
        stop_group(self.proc, graceful=False)

    def stop(self) -> None:
        stop_group(self.proc, timeout=5)
        shutil.rmtree(self._dir, ignore_errors=True)
