"""Run the whole Gatehouse stack in the foreground for `make run`: web (daphne), Celery worker and
beat, plus the Ollama simulator when no Ollama node is configured. Ctrl-C stops them all."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

from django.conf import settings
from django.core.management.base import BaseCommand

from common import siteurl
from inference.catalogue import sync_catalogue
from inference.models import Node

BANNER = """
==========================================================================
  SIMULATED BACKEND: no Ollama node is configured (OLLAMA_NODES is empty),
  so Gatehouse is using the bundled Ollama simulator at {url}
  with a small demo catalogue. Answers are generated text, not a real
  model. Set OLLAMA_NODES=http://your-gpu-host:11434 to use real Ollama.
==========================================================================
"""


# The demo catalogue needs about 12 GB at the default context (8192) and concurrency (4); in 8 GiB
# llama3.2:3b fits beside qwen2.5-coder but not beside qwen3, so asking for both makes a swap.
DEMO_GPU_GIB = 8


def _stop_on_signal(signum, frame):
    raise KeyboardInterrupt


def _port_free(host: str, port: int) -> bool:
    try:
        socket.create_connection((host.strip("[]"), port), timeout=1).close()
    except OSError:
        return True
    return False


def _can_listen(host: str, port: int) -> bool:
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
            sock.bind((host, port))
    except OSError:
        return False
    return True


def _interfaces(host: str, port: int) -> list[str]:
    """Where the web process listens. On this machine's loopback that is 127.0.0.1 and, when the
    machine has IPv6, [::1] too: ALLOWED_HOSTS accepts [::1], browsers and Node try `localhost` as ::1
    first, and a web process on 127.0.0.1 alone refuses them."""
    if host.strip("[]") not in ("127.0.0.1", "localhost"):
        return [host]
    return ["127.0.0.1", "::1"] if _can_listen("::1", port) else ["127.0.0.1"]


class Command(BaseCommand):
    help = "Run web, worker, beat (and the simulator when no node is configured) until Ctrl-C."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=settings.WEB_HOST)
        parser.add_argument("--port", type=int, default=settings.WEB_PORT)

    def handle(self, *args, host: str, port: int, **options):
        self.children: list[tuple[str, subprocess.Popen]] = []
        env = dict(os.environ)
        run_dir = str(settings.RUN_DIR)
        os.makedirs(run_dir, exist_ok=True)
        # Ctrl-C, `kill` or a supervisor: stop everything. Set SIGINT explicitly too, because a shell
        # that starts us in the background hands us SIGINT ignored.
        signal.signal(signal.SIGINT, _stop_on_signal)
        signal.signal(signal.SIGTERM, _stop_on_signal)
        try:
            sim_url = f"http://127.0.0.1:{int(os.environ.get('SIMULATOR_PORT', '11435'))}"
            # Nodes an admin added in the admin count as configured too; a simulator node from an earlier run does not.
            if not settings.OLLAMA_NODES and not Node.objects.filter(enabled=True).exclude(url=sim_url).exists():
                env["OLLAMA_NODES"] = self._start_simulator(sim_url)
                settings.OLLAMA_NODES = [sim_url]
            for report in sync_catalogue():
                state = f"{len(report.models)} model(s)" if report.healthy else f"NOT ANSWERING: {report.error}"
                self.stdout.write(f"Ollama node {report.url}: {state}")
            if not _port_free(host, port):
                self.stderr.write(f"Port {port} on {host} is taken; set WEB_PORT to another port.")
                return
            python = sys.executable
            # portal/web.py: daphne with the listen backlog, idle timeout and body guards of production.
            binds = [arg for interface in _interfaces(host, port) for arg in ("-b", interface)]
            self._spawn("web", [python, "-m", "portal.web", *binds, "-p", str(port)], env)
            self._spawn("worker", [python, "-m", "celery", "-A", "portal", "worker", "--loglevel=INFO",
                                   "--concurrency=2"], env)
            self._spawn("beat", [python, "-m", "celery", "-A", "portal", "beat", "--loglevel=INFO",
                                 "--schedule", os.path.join(run_dir, "celerybeat-schedule")], env)
            with open(os.path.join(run_dir, "stack.pids"), "w") as fh:  # for tools and tests that check shutdown
                fh.write("".join(f"{name} {proc.pid}\n" for name, proc in self.children))
            url = siteurl.local_url(host, port)
            self._ping_web(url)
            self.stdout.write(self.style.SUCCESS(f"Gatehouse is running on {url}  (Ctrl-C stops it)"))
            if settings.SITE_URL and settings.SITE_URL != url:
                self.stdout.write(f"Its public URL (SITE_URL): {settings.SITE_URL}")
            self._watch()
        except KeyboardInterrupt:
            self.stdout.write("\nStopping...")
        finally:
            self._stop_all()

    def _start_simulator(self, url: str) -> str:
        sim_port = int(url.rsplit(":", 1)[1])
        if _port_free("127.0.0.1", sim_port):
            # One slot per request Gatehouse lets through, and too little memory for the whole demo
            # catalogue at once, so the queue and model swaps can be seen working.
            self._spawn("simulator", [sys.executable, "-m", "ollamasim", "--host", "127.0.0.1",
                                      "--port", str(sim_port), "--num-parallel", str(settings.DEFAULT_MODEL_CONCURRENCY),
                                      "--gpu-memory", f"{DEMO_GPU_GIB}GiB"], dict(os.environ))
            deadline = time.monotonic() + 20
            while True:
                try:
                    with urllib.request.urlopen(url + "/", timeout=1):
                        break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError("the Ollama simulator did not start") from None
                    time.sleep(0.1)
        # Gatehouse swaps models to stay within a node's budget; the simulator's GPU is this big.
        Node.objects.update_or_create(url=url, defaults={"gpu_memory_bytes": DEMO_GPU_GIB << 30})
        self.stdout.write(self.style.WARNING(BANNER.format(url=url)))
        return url

    def _ping_web(self, url: str) -> None:
        """Wait for the web server and call /healthz once, as a load balancer would: that starts its
        scheduler, which loads pinned models and watches the nodes before the first API call."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url + "/healthz", timeout=2):
                    return
            except OSError:
                time.sleep(0.2)

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        # Own process group, so a Ctrl-C reaches us once and we stop the children in order.
        proc = subprocess.Popen(argv, env=env, cwd=settings.BASE_DIR, start_new_session=True)
        self.children.append((name, proc))

    def _watch(self) -> None:
        while True:
            for name, proc in self.children:
                if proc.poll() is not None:
                    self.stderr.write(f"{name} exited with code {proc.returncode}; stopping the others.")
                    return
            time.sleep(0.5)

    def _stop_all(self) -> None:
        for _, proc in reversed(self.children):
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 10
        for _, proc in self.children:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
