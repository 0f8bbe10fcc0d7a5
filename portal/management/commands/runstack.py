"""Run the whole Gatehouse stack in the foreground for `make run`: web (daphne), Celery worker and
beat, plus the Ollama simulator when no Ollama node is configured, or with `--backend llama` (`make run
BACKEND=llama`) a real llama.cpp server with a small model instead. Ctrl-C stops them all."""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

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


LLAMA_BANNER = """
==========================================================================
  REAL SMALL MODEL: Gatehouse is serving SmolLM2-135M-Instruct (model
  "smollm2") with llama.cpp's llama-server at {url},
  on this machine's CPU. The model is real but tiny (135M parameters):
  quick on a laptop, and its answers are short on sense.
  Its log: {log}
==========================================================================
"""
LLAMA_NODE_NAME = "llama-server"
# Each of llama-server's slots (one per request Gatehouse lets through) gets this many tokens of context.
LLAMA_SLOT_CONTEXT = 4096


# The demo catalogue needs about 12 GB at the default context (8192) and concurrency (4); in 8 GiB
# llama3.2:3b fits beside qwen2.5-coder but not beside qwen3, so asking for both makes a swap.
DEMO_GPU_GIB = 8


def _fetch_script():
    """scripts/fetch-llama.py, which knows the pinned llama-server and model and where they are cached.
    Loaded by path: scripts/ is not a package, and `make test` runs the same file as a script."""
    spec = importlib.util.spec_from_file_location("fetch_llama", settings.BASE_DIR / "scripts" / "fetch-llama.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
        parser.add_argument(
            "--backend", choices=("simulator", "llama"), default=os.environ.get("RUN_BACKEND") or "simulator",
            help="simulator (default): the Ollama simulator when no node is configured; llama: a real small model "
                 "(SmolLM2-135M) served by llama.cpp's llama-server on LLAMA_PORT (8081)")

    def handle(self, *args, host: str, port: int, backend: str, **options):
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
            llama_url = f"http://127.0.0.1:{int(os.environ.get('LLAMA_PORT', '8081'))}"
            # The other backend's node from an earlier run would only answer "not there": drain it.
            demo_nodes = Node.objects.filter(url=sim_url) | Node.objects.filter(name=LLAMA_NODE_NAME,
                                                                                url__startswith="http://127.0.0.1:")
            if backend == "llama":
                demo_nodes.exclude(url=llama_url).update(enabled=False)
                self._start_llama(llama_url)
            else:
                demo_nodes.exclude(url=sim_url).update(enabled=False)
            # Nodes an admin added in the admin count as configured too; a demo node from an earlier run does not.
            if (backend == "simulator" and not settings.OLLAMA_NODES and not settings.OPENAI_NODES
                    and not Node.objects.filter(enabled=True).exclude(pk__in=demo_nodes.values("pk")).exists()):
                env["OLLAMA_NODES"] = self._start_simulator(sim_url)
                settings.OLLAMA_NODES = [sim_url]
            for report in sync_catalogue():
                state = f"{len(report.models)} model(s)" if report.healthy else f"NOT ANSWERING: {report.error}"
                self.stdout.write(f"Node {report.url}: {state}")
            if not _port_free(host, port):
                self.stderr.write(f"Port {port} on {host} is taken; set WEB_PORT to another port.")
                return
            python = sys.executable
            # portal/web.py: daphne with the listen backlog, idle timeout and body guards of production.
            binds = [arg for interface in _interfaces(host, port) for arg in ("-b", interface)]
            self._spawn("web", [python, "-m", "portal.web", *binds, "-p", str(port)], env)
            self._spawn("worker", [python, "-m", "celery", "-A", "portal", "worker", "--loglevel=INFO",
                                   "--concurrency=2"], env)
            # The batch feeder runs for as long as batches do, in a worker of its own (batches/tasks.py).
            self._spawn("batch-worker", [python, "-m", "celery", "-A", "portal", "worker", "--loglevel=INFO",
                                         "-Q", "batches", "--pool=solo", "-n", "batches@%h"], env)
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
        # Gatehouse swaps models to stay within a node's budget; the simulator's GPU is this big. Enabled,
        # since an earlier `make run BACKEND=llama` drained it.
        Node.objects.update_or_create(url=url, defaults={"gpu_memory_bytes": DEMO_GPU_GIB << 30, "enabled": True})
        self.stdout.write(self.style.WARNING(BANNER.format(url=url)))
        return url

    def _start_llama(self, url: str) -> None:
        """Fetch llama.cpp's llama-server and SmolLM2-135M (once; cached outside the repository), serve
        the model on `url` and register that as an OpenAI-compatible node."""
        llama_port = int(url.rsplit(":", 1)[1])
        if not _port_free("127.0.0.1", llama_port):
            raise CommandError(f"Port {llama_port} is taken; set LLAMA_PORT to another port.")
        fetch = _fetch_script()
        try:
            root = fetch.ensure(log=sys.stderr)  # says what it fetches the first time, nothing after
        except fetch.FetchError as exc:
            raise CommandError(f"llama-server is not available: {exc}") from None
        slots = settings.DEFAULT_MODEL_CONCURRENCY  # one slot per request Gatehouse lets through
        # Its log (a few lines per request) goes to a file, so the terminal stays readable.
        log = os.path.join(settings.RUN_DIR, "llama-server.log")
        self._spawn(LLAMA_NODE_NAME, [
            str(fetch.binary(root)), "-m", str(fetch.model(root)), "--alias", "smollm2",
            "--host", "127.0.0.1", "--port", str(llama_port), "-c", str(LLAMA_SLOT_CONTEXT * slots),
            "--parallel", str(slots), "-t", str(min(4, os.cpu_count() or 1)), "--metrics", "--no-webui",
        ], fetch.server_env(root), log=log)
        proc = self.children[-1][1]
        deadline = time.monotonic() + 60
        while True:  # 503 while it loads the model, 200 once it takes requests
            try:
                with urllib.request.urlopen(url + "/health", timeout=2):
                    break
            except OSError:
                if proc.poll() == -signal.SIGILL:
                    raise CommandError(fetch.sigill_message()) from None
                if proc.poll() is not None:
                    raise CommandError(f"llama-server exited with code {proc.returncode} while starting; "
                                       f"its log is {log}") from None
                if time.monotonic() > deadline:
                    raise CommandError("llama-server did not start within 60 s") from None
                time.sleep(0.1)
        Node.objects.update_or_create(url=url, defaults={"kind": Node.Kind.OPENAI, "name": LLAMA_NODE_NAME,
                                                         "enabled": True})
        self.stdout.write(self.style.WARNING(LLAMA_BANNER.format(url=url, log=log)))

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

    def _spawn(self, name: str, argv: list[str], env: dict[str, str], log: str | None = None) -> None:
        # Own process group, so a Ctrl-C reaches us once and we stop the children in order.
        if log is None:
            proc = subprocess.Popen(argv, env=env, cwd=settings.BASE_DIR, start_new_session=True)
        else:
            with open(log, "ab") as out:  # the child keeps its own descriptor
                proc = subprocess.Popen(argv, env=env, cwd=settings.BASE_DIR, start_new_session=True,
                                        stdout=out, stderr=subprocess.STDOUT)
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
