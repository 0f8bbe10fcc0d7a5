"""Run a real llama.cpp server (`llama-server`) with a real small model for a test, and stop it.

    with LlamaServer() as llama:                       # SmolLM2-135M-Instruct as "smollm2"
        openai.OpenAI(base_url=llama.url + "/v1", api_key="none").chat.completions.create(...)
    with LlamaServer(embeddings=True) as embedder:     # the same model serving /v1/embeddings

The binary (llama.cpp b10068, CPU backend) and the model come from scripts/fetch-llama.py, which the
helper runs itself when they are not cached yet, so one test file runs alone too. The server runs in a
process group of its own (processes.spawn), logs to the session's temporary directory, and stops on
exit from the `with` block, or at the end of the session if a test forgot to.
"""

from __future__ import annotations

import importlib.util
import io
import signal
from pathlib import Path

import httpx

from tests.support.processes import REPO, STARTING, ChildProcess, eventually, free_port, session_tmp


def _load_fetch_script():
    # scripts/ is not a package (and the file name has a hyphen): load the one module by its path, so
    # the pins, the cache location and the CPU message live in one place.
    spec = importlib.util.spec_from_file_location("fetch_llama", REPO / "scripts" / "fetch-llama.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fetch = _load_fetch_script()
DEFAULT_ALIAS = "smollm2"


class LlamaUnavailable(RuntimeError):
    """The real llama-server cannot run here; the message says why in one line."""


def llama_dir() -> Path:
    """The directory holding bin/llama-server and the model, fetched when not cached yet (once cached,
    this only reads the marker file).

    A missing binary is a failure, never a skip: a suite that quietly skipped every real-server test
    on a machine where they cannot run would look green and prove nothing.
    """
    try:
        return fetch.ensure(log=io.StringIO())  # its progress lines are for a terminal, not a test log
    except fetch.FetchError as exc:
        raise LlamaUnavailable(str(exc)) from None


def _router_presets(root: Path, names: tuple[str, ...], ctx_size: int, parallel: int, port: int) -> Path:
    path = session_tmp() / f"llama-router-{port}.ini"
    path.write_text("".join(f"[{name}]\nmodel = {fetch.model(root)}\nctx-size = {ctx_size}\nparallel = {parallel}\n\n"
                            for name in names))
    return path


class LlamaServer(ChildProcess):
    """llama-server on a free port serving SmolLM2-135M-Instruct under `alias`.

    `ctx_size` is shared by the `parallel` slots (each gets ctx_size / parallel tokens); requests beyond
    the slots wait in llama-server's own queue. `embeddings` also serves /v1/embeddings (mean pooling),
    with a batch big enough for a whole slot's input, since an embedding input must fit one batch.
    """

    def __init__(self, *, alias: str = DEFAULT_ALIAS, ctx_size: int = 4096, parallel: int = 4,
                 embeddings: bool = False, threads: int = 2, extra_args: list[str] | tuple[str, ...] = (),
                 port: int | None = None, startup_timeout: float = 60.0,
                 router_models: tuple[str, ...] = ()) -> None:
        root = llama_dir()
        self.alias = alias
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"  # the base: clients add /v1
        argv = [str(fetch.binary(root)), "--host", "127.0.0.1", "--port", str(self.port), "-t", str(threads),
                "--metrics", "--no-webui"]
        if router_models:
            # Router mode: each named model (the same small GGUF under several names) runs in a child
            # process of its own, loaded and unloaded on request (POST /models/load, /models/unload).
            argv += ["--models-preset", str(_router_presets(root, router_models, ctx_size, parallel, self.port))]
        else:
            argv += ["-m", str(fetch.model(root)), "--alias", alias, "-c", str(ctx_size), "--parallel", str(parallel)]
        if embeddings:
            batch = str(max(512, ctx_size // parallel))
            argv += ["--embeddings", "--pooling", "mean", "-b", batch, "-ub", batch]
        argv += list(extra_args)
        # Its own libraries (ggml, the Vulkan loader) first, whatever else the machine has.
        env = fetch.server_env(root)
        self._start(argv, env, f"llama-server-{self.port}")
        try:
            eventually(self._healthy, timeout=startup_timeout, what=f"llama-server on :{self.port} to answer /health",
                       proc=self.proc, ignore=STARTING)
        except Exception:
            self.stop()
            if self.proc.returncode == -signal.SIGILL:
                raise LlamaUnavailable(fetch.sigill_message()) from None
            raise RuntimeError(f"llama-server did not start (exit {self.proc.returncode}):\n{self.output()[-4000:]}") \
                from None

    def _healthy(self) -> bool:
        # 503 while the model loads, 200 once it can take requests.
        return httpx.get(self.url + "/health", timeout=2.0).status_code == 200

    def __enter__(self) -> LlamaServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self, timeout: float = 10) -> None:
        super().stop(timeout)  # SIGTERM to the group's leader: llama-server exits in well under a second

    def metrics(self) -> dict[str, float]:
        """The llamacpp:* gauges and counters of /metrics, by name."""
        values = {}
        for line in httpx.get(self.url + "/metrics", timeout=5.0).text.splitlines():
            if line.startswith("llamacpp:"):
                name, value = line.rsplit(" ", 1)
                values[name] = float(value)
        return values

