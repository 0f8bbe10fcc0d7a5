"""`make run BACKEND=llama`: instead of the simulator, a real llama-server serving SmolLM2-135M on
LLAMA_PORT, registered as an OpenAI-compatible node, announced by a banner, and stopped by Ctrl-C with
the rest of the stack."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import httpx
import openai
import pytest

from tests.support.processes import (
    REPO,
    RedisServer,
    alive,
    eventually,
    free_port,
    kill_group,
    port_open,
)
from tests.test_make_run import MARKER, make_run


@pytest.fixture
def llama_stack(tmp_path):
    redis_server = RedisServer()  # its own, as in test_make_run: the suite's scheduler must not lead it
    web_port, sim_port, llama_port = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("OLLAMA_NODES", "DATABASE_URL", "DEBUG", "SECRET_KEY")}
    env.update({
        "REDIS_URL": redis_server.url,
        "SQLITE_PATH": str(tmp_path / "db.sqlite3"),
        "RUN_DIR": str(tmp_path / "run"),
        "WEB_PORT": str(web_port),
        "SIMULATOR_PORT": str(sim_port),
        "LLAMA_PORT": str(llama_port),
        "SITE_URL": f"http://127.0.0.1:{web_port}",
        "PYTHONUNBUFFERED": "1",
        MARKER: str(tmp_path),  # in everything make run starts, so _stop_everything finds it all
    })
    try:
        with make_run(["BACKEND=llama"], env) as (proc, output):
            yield proc, output, sim_port, llama_port, tmp_path, env
    finally:
        redis_server.stop()


def test_it_serves_the_real_small_model_instead_of_the_simulator_and_stops_it_on_ctrl_c(llama_stack):
    proc, output, sim_port, llama_port, stack_dir, env = llama_stack
    assert "REAL SMALL MODEL" in output.text and "SmolLM2-135M" in output.text
    # What make run started, not whether sim_port answers: that port was only free when the test picked it,
    # and any process of the suite may since have been given it.
    started = dict(line.split() for line in (stack_dir / "run" / "stack.pids").read_text().splitlines())
    assert "SIMULATED BACKEND" not in output.text and "simulator" not in started
    served = httpx.get(f"http://127.0.0.1:{llama_port}/v1/models").json()["data"]
    assert [entry["id"] for entry in served] == ["smollm2"]

    nodes = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c",
         "import json; from inference.models import Node; "
         "print(json.dumps(list(Node.objects.values('url', 'kind', 'name', 'enabled'))))"],
        cwd=REPO, env=env, check=True, capture_output=True, text=True, timeout=60).stdout
    assert json.loads(nodes.strip().splitlines()[-1]) == [
        {"url": f"http://127.0.0.1:{llama_port}", "kind": "openai", "name": "llama-server", "enabled": True}]

    # The newcomer's second step: a key, then a real answer from the real model through Gatehouse.
    key = subprocess.run([sys.executable, "manage.py", "createapikey", "admin"], cwd=REPO, env=env, check=True,
                         capture_output=True, text=True, timeout=60).stdout.strip().splitlines()[-1]
    web_port = env["WEB_PORT"]
    reply = openai.OpenAI(base_url=f"http://127.0.0.1:{web_port}/v1", api_key=key).chat.completions.create(
        model="smollm2", messages=[{"role": "user", "content": "Say hello."}], max_tokens=8)
    assert reply.choices[0].message.content and reply.usage.completion_tokens > 0

    kill_group(proc.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
    proc.wait(timeout=30)
    started = (stack_dir / "run" / "stack.pids").read_text().split()
    pids = dict(zip(started[::2], map(int, started[1::2]), strict=True))
    assert "llama-server" in pids and "simulator" not in pids
    eventually(lambda: not port_open(llama_port) and not alive(pids["llama-server"]),
               what="llama-server still runs after Ctrl-C")
