"""`make run` on a fresh database: it serves the portal, the admin sign-in works in a real browser,
the simulator's models appear in the admin, and Ctrl-C stops every process it started."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import threading

import httpx
import pytest
from playwright.sync_api import sync_playwright

from tests.support.browser import CHROMIUM, CHROMIUM_ARGS
from tests.support.processes import (
    REPO,
    STARTING,
    RedisServer,
    alive,
    eventually,
    free_port,
    kill_group,
    kill_with_env,
    port_open,
    processes_with_env,
)

# In the environment of `make run` and so of everything it starts, whatever process group it is in.
MARKER = "GATEHOUSE_TEST_MAKE_RUN"


class Output:
    """Collects a process's output from a thread so the pipe never fills up."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.text = ""
        self._thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._thread.start()

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            self.text += line


@pytest.fixture
def own_redis():
    # Its own Redis: the scheduler's leader would otherwise be the suite's web process, which reads
    # another database and so would never load this stack's models.
    server = RedisServer()
    yield server
    server.stop()


@pytest.fixture
def stack(tmp_path, own_redis):
    redis_server = own_redis
    web_port, sim_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("OLLAMA_NODES", "DATABASE_URL", "DEBUG", "SECRET_KEY")}
    env.update({
        "REDIS_URL": redis_server.url,
        "SQLITE_PATH": str(tmp_path / "db.sqlite3"),
        "RUN_DIR": str(tmp_path / "run"),
        "WEB_PORT": str(web_port),
        "SIMULATOR_PORT": str(sim_port),
        "SITE_URL": f"http://127.0.0.1:{web_port}",
        "PYTHONUNBUFFERED": "1",
        MARKER: str(tmp_path),
    })
    with make_run([], env) as (proc, output):
        yield proc, output, web_port, sim_port, tmp_path, env


@contextlib.contextmanager
def make_run(args: list[str], env: dict[str, str]):
    """`make run ARGS` until its portal answers /healthz; everything it started is stopped on exit."""
    what = " ".join(["make run", *args])
    proc = subprocess.Popen(["make", "run", *args], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output = Output(proc)
        try:
            eventually(lambda: httpx.get(f"http://127.0.0.1:{env['WEB_PORT']}/healthz").status_code == 200,
                       timeout=120, what=what, proc=proc, ignore=STARTING)
        except Exception:
            raise AssertionError(f"{what} did not serve the portal:\n" + output.text) from None
        yield proc, output
    finally:
        _stop_everything(proc, env[MARKER])


def _stop_everything(proc: subprocess.Popen, marker: str) -> None:
    """Whatever happened: Ctrl-C (runstack stops its children in order), then kill -9 make's group and
    every process that make run started, in whatever process group each one is."""
    if proc.poll() is None:
        kill_group(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
    kill_group(proc.pid)
    proc.wait()
    kill_with_env(MARKER, marker)


def test_it_serves_the_portal_signs_in_the_admin_and_stops_on_ctrl_c(stack):
    proc, output, web_port, sim_port, stack_dir, env = stack
    assert "SIMULATED BACKEND" in output.text
    password = re.search(r"password: (\S+)", output.text).group(1)
    sim_models = {m["name"] for m in httpx.get(f"http://127.0.0.1:{sim_port}/api/tags").json()["models"]}
    css = httpx.get(f"http://127.0.0.1:{web_port}/static/admin/css/base.css")
    assert css.status_code == 200 and "text/css" in css.headers["content-type"], "the admin would be unstyled"
    assert sim_models
    if shutil.which("ss"):  # the web process listens with WEB_LISTEN_BACKLOG (portal/web.py), not daphne's 50
        listening = subprocess.run(["ss", "-ltnH", f"sport = :{web_port}"], capture_output=True, text=True).stdout
        assert int(listening.split()[2]) == 1024, listening

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{web_port}/admin/")
        page.fill("input[name=username]", "admin")
        page.fill("input[name=password]", password)
        page.click("input[type=submit]")
        page.wait_for_selector("text=Site administration")
        page.goto(f"http://127.0.0.1:{web_port}/admin/inference/model/")
        listed = page.inner_text("#result_list")
        # Models are editable in the admin: give the first one a smaller context.
        first = sorted(sim_models)[0]
        page.click(f"#result_list a:text-is('{first}')")
        page.fill("#id_context_length", "2048")
        page.click("input[name=_save]")
        page.wait_for_selector("text=was changed successfully")
        row = page.inner_text(f"#result_list tr:has(a:text-is('{first}'))")
        browser.close()
    assert "2048" in row
    for name in sim_models:
        assert name in listed, f"{name} from the simulator is not in the admin's model list"

    # The demo node swaps: its slots match the model concurrency, and llama3.2 and qwen3 do not fit together.
    key = subprocess.run([sys.executable, "manage.py", "createapikey", "admin"], cwd=REPO, env=env, check=True,
                         capture_output=True, text=True).stdout.strip()
    for model in ("llama3.2:3b", "qwen3:0.6b"):
        reply = httpx.post(f"http://127.0.0.1:{web_port}/v1/chat/completions", timeout=60,
                           headers={"Authorization": f"Bearer {key}"},
                           json={"model": model, "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]})
        assert reply.status_code == 200, reply.text
    loaded = {m["model"]: m for m in httpx.get(f"http://127.0.0.1:{sim_port}/sim/stats").json()["loaded"]}
    assert "qwen3:0.6b" in loaded and "llama3.2:3b" not in loaded
    assert loaded["qwen3:0.6b"]["num_parallel"] == 4

    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
    proc.wait(timeout=30)
    eventually(lambda: not port_open(web_port) and not port_open(sim_port),
               what="a process make run started is still listening after Ctrl-C")
    started = (stack_dir / "run" / "stack.pids").read_text().split()
    pids = dict(zip(started[::2], map(int, started[1::2]), strict=True))
    assert {"web", "worker", "batch-worker", "beat", "simulator"} <= set(pids)
    for name, pid in pids.items():
        assert not alive(pid), f"{name} (pid {pid}) survived Ctrl-C"
    # Nor did anything they started (the worker's pool processes): nothing runs with make run's environment.
    eventually(lambda: not processes_with_env(MARKER, str(stack_dir)), timeout=15,
               what="a process make run started (or one of theirs) still runs after Ctrl-C")
