"""The suite cleans up after itself: a process it starts ends with it, whole process group included,
even when it is killed with kill -9, and its files live in the session's temporary directory.
(tests/conftest.py also fails the session if anything of it is left running or left in /tmp.)"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

from tests.support.processes import (
    SESSION_PREFIX,
    CeleryWorker,
    RedisServer,
    ServiceProcess,
    alive,
    eventually,
    group_members,
    kill_with_env,
    processes_with_env,
    session_tmp,
)
from tests.support.simulator import SimulatorProcess


@pytest.fixture
def redis():
    server = RedisServer()
    yield server
    server.stop()


def test_a_celery_worker_killed_with_kill_9_takes_its_embedded_beat_with_it(redis, tmp_path):
    # A database of its own: the beat's periodic tasks are not under test here.
    worker = CeleryWorker({"REDIS_URL": redis.url, "SQLITE_PATH": str(tmp_path / "db.sqlite3"),
                           "DATABASE_URL": "", "NODE_POLL_SECONDS": "3600"})
    try:
        pgid = worker.proc.pid
        # -B runs the beat in a child process of the worker, in the worker's process group.
        members = eventually(lambda: len(group_members(pgid)) >= 2 and group_members(pgid), timeout=60,
                             what="the worker's beat process", proc=worker.proc)
        beat = [pid for pid in members if pid != pgid]
        worker.kill()
        assert not group_members(pgid), "a process of the killed worker's group survived"
        assert not any(alive(pid) for pid in beat), "the embedded beat outlived its worker"
    finally:
        worker.stop()


def test_stop_ends_every_process_of_the_group_even_when_the_leader_leaves_a_child_behind():
    # A leader that starts a child which ignores SIGTERM and then exits at once on SIGTERM itself.
    script = ("import signal, subprocess, sys, time\n"
              "subprocess.Popen([sys.executable, '-c', 'import signal, time; "
              "signal.signal(signal.SIGTERM, signal.SIG_IGN); print(\"child\", flush=True); time.sleep(600)'])\n"
              "time.sleep(600)\n")
    parent = ServiceProcess([sys.executable, "-c", script], {}, "orphan-maker")
    pgid = parent.proc.pid
    eventually(lambda: len(group_members(pgid)) == 2 and "child" in parent.output(), what="the child started")
    parent.stop(timeout=5)
    assert not group_members(pgid)


def test_the_backstop_finds_a_process_that_left_its_group_by_its_environment():
    marker = os.urandom(8).hex()
    script = ("import subprocess, sys\n"
              "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'], start_new_session=True)\n")
    leaver = ServiceProcess([sys.executable, "-c", script], {"GATEHOUSE_TEST_MARKER": marker}, "group-leaver")
    try:
        eventually(lambda: leaver.proc.poll() is not None, what="the leader to exit")
        escaped = processes_with_env("GATEHOUSE_TEST_MARKER", marker)
        assert escaped and not group_members(leaver.proc.pid)  # stopping its group would miss it
        killed = kill_with_env("GATEHOUSE_TEST_MARKER", marker)
        assert killed and not processes_with_env("GATEHOUSE_TEST_MARKER", marker)
    finally:
        leaver.stop()
        kill_with_env("GATEHOUSE_TEST_MARKER", marker)


def test_helpers_and_child_processes_write_into_the_session_directory_only(redis, tmp_path):
    session = session_tmp()
    assert Path(tempfile.gettempdir()) == session
    # pytest's own temporary directories too: under the session's directory or, in a pytest-xdist worker
    # (whose session directory is inside the controller's), under the controller's, which xdist gives out.
    suite = session.parent if os.environ.get("PYTEST_XDIST_WORKER") else session
    assert suite.name.startswith(SESSION_PREFIX) and tmp_path.is_relative_to(suite)
    assert Path(redis.dir).is_relative_to(session)
    with SimulatorProcess({"models": []}) as sim:
        assert sim.log_path.is_relative_to(session)
    worker = CeleryWorker({"REDIS_URL": redis.url, "SQLITE_PATH": str(tmp_path / "db.sqlite3"),
                           "DATABASE_URL": "", "NODE_POLL_SECONDS": "3600"})
    try:
        assert worker.log_path.is_relative_to(session) and Path(worker.dir).is_relative_to(session)
    finally:
        worker.stop()
    # A child process's temporary files go there too: it inherits TMPDIR.
    child = ServiceProcess([sys.executable, "-c", "import tempfile; print(tempfile.mkdtemp(prefix='child-'))"],
                           {}, "tmpdir-probe")
    eventually(lambda: child.proc.poll() is not None, what="the probe to finish")
    child.stop()
    assert Path(child.output().strip()).parent == session
