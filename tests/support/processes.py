"""Start real helper processes for the suite (redis-server, daphne) on free ports, and stop them."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx

REPO = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def eventually(probe: Callable[[], T], *, what: str, timeout: float = 10, interval: float = 0.05,
               proc: subprocess.Popen | None = None, ignore: tuple[type[BaseException], ...] = ()) -> T:
    """Call `probe` until it returns something truthy and return that; fail with `what` after `timeout`.

    The suite's one way to wait for a condition: never a bare sleep. `ignore` lists exceptions that
    mean "not yet"; with `proc`, a process that exits while we wait fails at once.
    """
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: process exited with {proc.returncode}")
        try:
            result = probe()
        except ignore:
            result = None
        if result:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what} (still not so after {timeout}s)")
        time.sleep(interval)


# What a server that is still starting answers with: "not yet", not a failure.
STARTING = (OSError, httpx.HTTPError)


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class RedisServer:
    """A throwaway redis-server that keeps nothing on disk."""

    def __init__(self) -> None:
        self.binary = shutil.which("redis-server")
        if self.binary is None:
            raise RuntimeError("redis-server is not installed; `make test` installs it (apt-get install redis-server)")
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="gatehouse-redis-")
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.start()

    def start(self) -> None:
        """Start (again, on the same port: a Redis outage that ends) with an empty data set."""
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self.dir, "--maxmemory-policy", "noeviction"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        eventually(lambda: port_open(self.port), timeout=10, what="redis-server", proc=self.proc, ignore=STARTING)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


class ChildProcess:
    """A process the suite started, with its output in a log file. kill() is kill -9: no cleanup runs
    in it, so whatever it held in Redis is freed only by lease expiry (or stays pending, for a worker)."""

    proc: subprocess.Popen
    log: Any

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def stop(self, timeout: float = 15) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class DaphneServer(ChildProcess):
    """The real web process (`daphne portal.asgi:application`) on a free port, with the given environment.

    SITE_URL defaults to the server's own URL, so the links and snippets it renders point at itself.
    """

    def __init__(self, env: dict[str, str], port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.NamedTemporaryFile(prefix="gatehouse-daphne-", suffix=".log", delete=False)
        full_env = {**os.environ, "DJANGO_SETTINGS_MODULE": "portal.settings", "SITE_URL": self.url, **env}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "portal.web", "-b", "127.0.0.1", "-p", str(self.port)],
            cwd=REPO, env=full_env, stdout=self.log, stderr=subprocess.STDOUT,
        )
        try:
            eventually(lambda: port_open(self.port), timeout=30, what="daphne", proc=self.proc, ignore=STARTING)
        except Exception:
            self.stop()
            raise RuntimeError("daphne did not start:\n" + self.output()) from None


class CeleryWorker(ChildProcess):
    """A real Celery worker with its beat embedded (`celery -A portal worker -B`), so periodic tasks run."""

    def __init__(self, env: dict[str, str]) -> None:
        self.dir = tempfile.mkdtemp(prefix="gatehouse-celery-")
        self.log = tempfile.NamedTemporaryFile(prefix="gatehouse-celery-", suffix=".log", delete=False)
        full_env = {**os.environ, "DJANGO_SETTINGS_MODULE": "portal.settings", **env}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "portal", "worker", "-B", "--loglevel=INFO", "--concurrency=1",
             "--pool=solo", "--schedule", os.path.join(self.dir, "beat-schedule")],
            cwd=REPO, env=full_env, stdout=self.log, stderr=subprocess.STDOUT,
        )

    def stop(self, timeout: float = 15) -> None:
        super().stop(timeout)
        shutil.rmtree(self.dir, ignore_errors=True)
