"""Start real helper processes for the suite (redis-server, daphne, Celery) on free ports, and stop them.

Every process the suite starts runs in a process group of its own (`spawn`), and stopping or killing
it ends the whole group, so nothing it started (Celery's embedded beat, the web process's parser
processes) outlives it. Their logs and data live in the session's temporary directory
(`session_tmp`), which is removed when the session ends. `kill_leftovers` is the backstop the session
runs at its end.
"""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import httpx

REPO = Path(__file__).resolve().parents[2]
T = TypeVar("T")

# The one directory the suite writes temporary files to (named gatehouse-tests-*, under the system's
# temporary directory); everything the suite starts gets it as TMPDIR.
SESSION_PREFIX = "gatehouse-tests-"
_session_tmp: Path | None = None
# Process groups started by spawn() and not yet stopped: pgid -> what it is.
_GROUPS: dict[int, str] = {}


def session_tmp() -> Path:
    """This session's temporary directory, created on first use.

    It becomes the temporary directory of this process (tempfile) and of every process started after
    (TMPDIR), so helpers, pytest's tmp_path, Chromium and Node write there rather than straight into
    /tmp. end_session() (or, outside pytest, interpreter exit) removes it.
    """
    global _session_tmp
    if _session_tmp is None:
        _session_tmp = Path(tempfile.mkdtemp(prefix=SESSION_PREFIX)).resolve()
        tempfile.tempdir = str(_session_tmp)
        os.environ["TMPDIR"] = str(_session_tmp)
        atexit.register(end_session)
    return _session_tmp


def end_session() -> list[str]:
    """Kill whatever the session left running and remove its temporary directory; returns the leftovers."""
    global _session_tmp
    leftovers = kill_leftovers()
    if _session_tmp is not None:
        shutil.rmtree(_session_tmp, ignore_errors=True)
        _session_tmp = None
    return leftovers


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


# -- process groups ----------------------------------------------------------------------------------


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, process group) of a process, or None when there is no such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # the command name may hold spaces and parentheses
    return fields[0], int(fields[2])


def _pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def alive(pid: int) -> bool:
    """The process exists and is not a zombie (a zombie has ended; it only awaits its parent's wait())."""
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def group_members(pgid: int) -> list[int]:
    """The live processes of a process group."""
    return [pid for pid in _pids() if (stat := _stat(pid)) and stat[1] == pgid and stat[0] not in ("Z", "X")]


def kill_group(pgid: int, sig: int = signal.SIGKILL) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def processes_with_env(name: str, value: str) -> list[int]:
    """Live processes (other than this one) started with `name=value` in their environment: they and
    everything they started inherit it, whatever process group or session they moved to."""
    wanted = f"{name}={value}".encode()
    found = []
    for pid in _pids():
        if pid == os.getpid():
            continue
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if wanted in environ.split(b"\0") and alive(pid):
            found.append(pid)
    return found


def describe(pid: int) -> str:
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        command = "?"
    return f"pid {pid}: {command[:200]}"


def kill_with_env(name: str, value: str, timeout: float = 10) -> list[str]:
    """Kill -9 every process started with `name=value` in its environment; returns what they were."""
    found = processes_with_env(name, value)
    described = [describe(pid) for pid in found]
    for pid in found:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    eventually(lambda: not any(alive(pid) for pid in found), what=f"processes with {name}={value} to die",
               timeout=timeout)
    return described


def paths_used_by_others() -> set[str]:
    """Paths that processes outside this session have open, run in or name on their command line: the
    files of another test run at the same time, which this session must not count as its own."""
    marker = f"TMPDIR={_session_tmp}".encode() if _session_tmp is not None else None
    used: set[str] = set()
    for pid in _pids():
        proc = Path(f"/proc/{pid}")
        try:
            if pid == os.getpid() or (marker and marker in (proc / "environ").read_bytes().split(b"\0")):
                continue
            used.update((proc / "cmdline").read_bytes().decode(errors="replace").split("\0"))
            used.add(os.readlink(proc / "cwd"))
            for fd in os.listdir(proc / "fd"):
                used.add(os.readlink(proc / "fd" / fd))
        except OSError:
            continue
    return used


def kill_leftovers() -> list[str]:
    """The backstop: kill every process group spawn() started that is still alive, and every process
    that inherited the session's TMPDIR (say, a child that left its group). Returns what was killed,
    which a clean session never needs."""
    killed = []
    for pgid, what in list(_GROUPS.items()):
        members = group_members(pgid)
        if members:
            killed += [f"{what}: {describe(pid)}" for pid in members]
            kill_group(pgid)
            eventually(lambda pgid=pgid: not group_members(pgid), what=f"process group {pgid} to end")
        _GROUPS.pop(pgid, None)
    if _session_tmp is not None:
        killed += kill_with_env("TMPDIR", str(_session_tmp))
    return killed


def spawn(argv: list[str], *, what: str, env: dict[str, str] | None = None, log: Path | None = None,
          cwd: Path = REPO) -> subprocess.Popen:
    """Start a process in a session (and so a process group) of its own, its output going to `log`
    (or nowhere); stop it with stop_group() or kill_group()."""
    session_tmp()  # before the environment is copied: the process gets the session's TMPDIR
    full_env = {**os.environ, **(env or {})}
    if log is None:
        proc = subprocess.Popen(argv, cwd=cwd, env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
    else:
        with open(log, "ab") as out:  # the child keeps its own descriptor
            proc = subprocess.Popen(argv, cwd=cwd, env=full_env, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
    _GROUPS[proc.pid] = what
    return proc


def stop_group(proc: subprocess.Popen, *, graceful: bool = True, timeout: float = 15) -> None:
    """End a process spawn() started and everything in its group.

    Graceful: SIGTERM to the process, so it shuts down in its own order, and kill -9 after `timeout`.
    Then kill -9 whatever is left in the group (a child that outlived its parent: Celery's embedded
    beat after its worker was killed), and wait until none of it runs.
    """
    pgid = proc.pid  # the group outlives its leader while any member lives, so its id is not reused
    if proc.poll() is None:
        if graceful:
            proc.terminate()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        kill_group(pgid)
        proc.wait()
    kill_group(pgid)
    eventually(lambda: not group_members(pgid), what=f"process group {pgid} ({_GROUPS.get(pgid, '?')}) to end",
               timeout=10)
    _GROUPS.pop(pgid, None)


# -- the helpers -------------------------------------------------------------------------------------


class RedisServer:
    """A throwaway redis-server that keeps nothing on disk."""

    def __init__(self) -> None:
        self.binary = shutil.which("redis-server")
        if self.binary is None:
            raise RuntimeError("redis-server is not installed; `make test` installs it (apt-get install redis-server)")
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="redis-", dir=session_tmp())
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.start()

    def start(self) -> None:
        """Start (again, on the same port: a Redis outage that ends) with an empty data set."""
        self.proc = spawn(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self.dir, "--maxmemory-policy", "noeviction"],
            what=f"redis-server :{self.port}",
        )
        eventually(lambda: port_open(self.port), timeout=10, what="redis-server", proc=self.proc, ignore=STARTING)

    def kill(self) -> None:
        stop_group(self.proc, graceful=False)

    def stop(self) -> None:
        stop_group(self.proc, timeout=5)
        shutil.rmtree(self.dir, ignore_errors=True)


class RedisSentinel:
    """A Redis Sentinel (`redis-server sentinel.conf --sentinel`) watching one RedisServer as the master
    named `master_name`: what a client given sentinel:// URLs asks for the master's address."""

    def __init__(self, master: RedisServer, master_name: str) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="sentinel-", dir=session_tmp())
        self.url = f"sentinel://127.0.0.1:{self.port}"
        config = Path(self.dir) / "sentinel.conf"  # Sentinel rewrites its configuration: a file of its own
        config.write_text(f"port {self.port}\nbind 127.0.0.1\ndir {self.dir}\n"
                          f"sentinel monitor {master_name} 127.0.0.1 {master.port} 1\n")
        self.proc = spawn([master.binary, str(config), "--sentinel"], what=f"redis-sentinel :{self.port}")
        eventually(lambda: port_open(self.port), timeout=10, what="redis-sentinel", proc=self.proc, ignore=STARTING)

    def stop(self) -> None:
        stop_group(self.proc, timeout=5)
        shutil.rmtree(self.dir, ignore_errors=True)


class ChildProcess:
    """A process the suite started, with its output in a log file in the session's temporary directory
    (kept until the session ends, so a failure can still print it). kill() is kill -9 of its whole
    group: no cleanup runs in it, so whatever it held in Redis is freed only by lease expiry (or stays
    pending, for a worker)."""

    proc: subprocess.Popen
    log_path: Path

    def _start(self, argv: list[str], env: dict[str, str], what: str) -> None:
        fd, name = tempfile.mkstemp(prefix=what + "-", suffix=".log", dir=session_tmp())
        os.close(fd)
        self.log_path = Path(name)
        self.proc = spawn(argv, what=what, env=env, log=self.log_path)

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def kill(self) -> None:
        stop_group(self.proc, graceful=False)

    def stop(self, timeout: float = 15) -> None:
        stop_group(self.proc, timeout=timeout)


class DaphneServer(ChildProcess):
    """The real web process (`daphne portal.asgi:application`) on a free port, with the given environment.

    SITE_URL defaults to the server's own URL, so the links and snippets it renders point at itself.
    """

    def __init__(self, env: dict[str, str], port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # WEB_DRAIN_SECONDS: a test that ends with a stream still open must not wait out a production
        # drain when the process is stopped (tests/test_web_drain.py sets its own).
        self._start([sys.executable, "-m", "portal.web", "-b", "127.0.0.1", "-p", str(self.port)],
                    {"DJANGO_SETTINGS_MODULE": "portal.settings", "SITE_URL": self.url, "WEB_DRAIN_SECONDS": "2",
                     **env}, "daphne")
        try:
            eventually(lambda: port_open(self.port), timeout=30, what="daphne", proc=self.proc, ignore=STARTING)
        except Exception:
            self.stop()
            raise RuntimeError("daphne did not start:\n" + self.output()) from None


class CeleryWorker(ChildProcess):
    """A real Celery worker with its beat embedded (`celery -A portal worker -B`), so periodic tasks run.
    The beat runs in a child process, which stop() and kill() end with the worker."""

    def __init__(self, env: dict[str, str]) -> None:
        self.dir = tempfile.mkdtemp(prefix="celery-", dir=session_tmp())
        self._start([sys.executable, "-m", "celery", "-A", "portal", "worker", "-B", "--loglevel=INFO",
                     "--concurrency=1", "--pool=solo", "--schedule", os.path.join(self.dir, "beat-schedule")],
                    {"DJANGO_SETTINGS_MODULE": "portal.settings", **env}, "celery")

    def stop(self, timeout: float = 15) -> None:
        super().stop(timeout)
        shutil.rmtree(self.dir, ignore_errors=True)


class BatchWorker(ChildProcess):
    """A real Celery worker for the "batches" queue alone, as `make run` and compose start it: the batch
    feeder (batches/feeder.py) runs in it. The beat that starts the feeder runs in a CeleryWorker."""

    def __init__(self, env: dict[str, str]) -> None:
        self._start([sys.executable, "-m", "celery", "-A", "portal", "worker", "-Q", "batches", "--loglevel=INFO",
                     "--pool=solo", "-n", f"batches-{secrets.token_hex(4)}@%h"],
                    {"DJANGO_SETTINGS_MODULE": "portal.settings", **env}, "celery-batches")


class ServiceProcess(ChildProcess):
    """Any other command the suite runs beside it, e.g. the test OpenID provider."""

    def __init__(self, argv: list[str], env: dict[str, str], what: str) -> None:
        self._start(argv, env, what)
