"""The shared test world: a real redis-server, real simulator processes, a real daphne web process,
and the people alice (any model), bob (limited to one model) and charlie (no key of his own).

Everything starts once per session on free ports; nothing depends on a server started by hand.
Everything the suite starts ends with the session (a backstop kills what a test left running), and
everything it writes to a temporary directory goes to one session directory that is then removed:
the session fails if it left a process running or a file of its own in the system's /tmp.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest

from tests.support import processes
from tests.support.browser import browser  # noqa: F401 - the shared headless Chromium fixture
from tests.support.processes import REPO, DaphneServer, RedisServer

# The e2e catalogue: a chat model with tools, a code model with fill-in-the-middle, an embedder.
CHAT_MODEL = "llama3.2:3b"
CODE_MODEL = "qwen2.5-coder:1.5b"
EMBED_MODEL = "all-minilm:latest"
BROKEN_MODEL = "broken:latest"  # fails after a few tokens, to test errors in the middle of a stream
SLOW_MODEL = "slow:latest"  # 20 tokens a second, to watch tokens arrive one by one
THINK_MODEL = "qwen3:0.6b"  # a reasoning model: thinks unless told not to
SIM_CONFIG = {
    "server": {
        "num_parallel": 4,
        "tokens_per_second": 2000,
        "time_to_first_token_ms": 5,
        "load_seconds_per_gib": 0.02,
        "gpu_memory": "24GiB",
    },
    "models": [
        {"name": CHAT_MODEL, "size": 2_019_393_189, "family": "llama", "parameter_size": "3.2B",
         "quantization_level": "Q4_K_M", "capabilities": ["completion", "tools"], "context_length": 131072},
        {"name": CODE_MODEL, "size": 986_061_892, "family": "qwen2", "parameter_size": "1.5B",
         "quantization_level": "Q4_K_M", "capabilities": ["completion", "insert"], "context_length": 32768},
        {"name": EMBED_MODEL, "size": 45_960_996, "family": "bert", "parameter_size": "23M",
         "quantization_level": "F16", "capabilities": ["embedding"], "context_length": 512,
         "embedding_length": 384},
        {"name": BROKEN_MODEL, "size": 500_000_000, "capabilities": ["completion"], "context_length": 8192,
         "fail_after_tokens": 3, "error_message": "model runner has unexpectedly stopped"},
        {"name": SLOW_MODEL, "size": 500_000_000, "capabilities": ["completion"], "context_length": 8192,
         "tokens_per_second": 20},
        {"name": THINK_MODEL, "size": 522_653_767, "family": "qwen3", "parameter_size": "751.63M",
         "quantization_level": "Q4_K_M", "capabilities": ["completion", "tools", "thinking"],
         "context_length": 40960},
    ],
}


# Names the suite's files had (or have) in the system's temporary directory; none may be left there.
# Not gatehouse-tests-* (a session's own directory, removed at its end, perhaps another run's) and not
# gatehouse-bench-* (bench/, which is not the suite).
SUITE_TMP_PREFIXES = ("gatehouse-", "ollamasim-", "playwright-artifacts-", "playwright_chromiumdev_profile-")
NOT_SUITE_TMP_PREFIXES = (processes.SESSION_PREFIX, "gatehouse-bench-")


def suite_tmp_entries(root: str) -> set[str]:
    return {name for name in os.listdir(root)
            if name.startswith(SUITE_TMP_PREFIXES) and not name.startswith(NOT_SUITE_TMP_PREFIXES)}


def pytest_configure(config):
    # Before anything else writes a temporary file: from here on this process's tempfile and every
    # process the suite starts (TMPDIR) use the session's own directory.
    config._gatehouse_tmp_root = tempfile.gettempdir()
    config._gatehouse_tmp_before = suite_tmp_entries(config._gatehouse_tmp_root)
    processes.session_tmp()


# The longest modules (their setup and tests together, a minute or more each), longest first. `make test`
# hands whole modules to two xdist workers in collection order; starting with these, the short ones fill
# in at the end and both workers finish together, instead of one running a long module alone at the end.
LONGEST_MODULES = ("test_queue_bounds", "test_real_llama", "test_batches", "test_usage_records", "test_queue_fairness",
                   "test_site_url", "test_queue_under_load", "test_nodes_failover", "test_rate_limits", "test_make_run",
                   "test_storms", "test_portal_browser", "test_make_run_llama", "test_redis_outage")


def pytest_collection_modifyitems(config, items):
    rank = {name: index for index, name in enumerate(LONGEST_MODULES)}
    # A stable sort: every module keeps its own tests' order (their module-scoped worlds rely on it).
    items.sort(key=lambda item: rank.get(item.module.__name__.rpartition(".")[2], len(rank)))


@pytest.hookimpl(trylast=True)  # after pytest's own sessionfinish has torn the session's fixtures down
def pytest_sessionfinish(session):
    config = session.config
    problems = []
    leftovers = processes.kill_leftovers()
    if leftovers:
        problems.append("the suite left these processes running (killed now):\n  " + "\n  ".join(leftovers))
    created = suite_tmp_entries(config._gatehouse_tmp_root) - config._gatehouse_tmp_before
    if created:  # not those another run of the suite at the same time is using
        used = processes.paths_used_by_others()
        created = {name for name in created
                   if not any(path.startswith(os.path.join(config._gatehouse_tmp_root, name)) for path in used)}
    if created:
        problems.append(f"the suite left these in {config._gatehouse_tmp_root} (everything belongs in "
                        f"{processes.session_tmp()}, or another run of the suite made them at the same time):\n  "
                        + "\n  ".join(sorted(created)))
    if problems:
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write("\n")
            reporter.write_sep("=", "session check failed", red=True, bold=True)
        for problem in problems:
            if reporter is not None:
                reporter.write_line(problem, red=True)
            else:
                print("session check failed: " + problem, file=sys.stderr)
        if session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_unconfigure(config):
    processes.end_session()


@pytest.fixture(scope="session")
def django_db_setup(django_test_environment, django_db_modify_db_settings, django_db_blocker):
    """Always create the test database.

    pytest-django creates it only when some collected test is marked django_db; the live-server
    tests are not (their rows must be committed so the daphne process sees them), so running them
    alone would otherwise write the test world into the developer's own database. Under pytest-xdist
    (`make test` runs two workers) django_db_modify_db_settings names each worker's database apart.
    """
    from django.db import connection
    from django.test.utils import setup_databases, teardown_databases

    if connection.vendor == "sqlite":  # a file the web processes open too; settings put it in /tmp
        connection.settings_dict["TEST"]["NAME"] = str(processes.session_tmp() / Path(
            connection.settings_dict["TEST"]["NAME"]).name)
    with django_db_blocker.unblock():
        config = setup_databases(verbosity=0, interactive=False, aliases={"default"})
    yield
    with django_db_blocker.unblock():
        _disconnect_other_sessions()
        teardown_databases(config, verbosity=0)


def _disconnect_other_sessions() -> None:
    """PostgreSQL refuses to drop a database someone is connected to. Async ORM calls made inside
    pytest run in worker threads whose connections Django does not close, so end them first."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                       "WHERE datname = current_database() AND pid <> pg_backend_pid()")


@pytest.fixture(scope="session")
def redis_server():
    from django.conf import settings

    server = RedisServer()
    os.environ["REDIS_URL"] = server.url  # for the processes the suite starts
    previous, settings.REDIS_URL = settings.REDIS_URL, server.url  # for code running inside pytest
    yield server
    settings.REDIS_URL = previous
    server.stop()


@pytest.fixture(scope="session")
def simulator():
    from tests.support.simulator import SimulatorProcess

    with SimulatorProcess(SIM_CONFIG) as sim:
        yield sim


def _database_url(settings_dict: dict) -> str:
    """A DATABASE_URL for the test database pytest-django created, for processes started beside pytest."""
    engine = settings_dict["ENGINE"]
    if engine.endswith("sqlite3"):
        return f"sqlite:///{settings_dict['NAME']}"
    user = settings_dict.get("USER") or ""
    password = settings_dict.get("PASSWORD") or ""
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = settings_dict.get("PORT") or 5432
    return f"postgres://{auth}{host}:{port}/{settings_dict['NAME']}"


@dataclass
class World:
    """Committed rows the live server can see, and the plain keys handed out."""

    alice_key: str = ""
    bob_key: str = ""  # may use only CHAT_MODEL
    expired_key: str = ""
    revoked_key: str = ""
    users: dict = field(default_factory=dict)


@pytest.fixture(scope="session")
def world(django_db_setup, django_db_blocker, simulator) -> World:
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from apiaccess.models import ApiKey
    from inference.catalogue import sync_node
    from inference.models import Model, Node

    with django_db_blocker.unblock():
        node, _ = Node.objects.get_or_create(url=simulator.url)
        report = sync_node(node)
        assert report.healthy, report.error
        users = {name: get_user_model().objects.create_user(name, password="pw-" + name)
                 for name in ("alice", "bob", "charlie")}
        world = World(users=users)
        _, world.alice_key = ApiKey.issue(users["alice"], name="laptop")
        _, world.bob_key = ApiKey.issue(users["bob"], allowed_models=[Model.objects.get(public_id=CHAT_MODEL)])
        _, world.expired_key = ApiKey.issue(users["alice"], expires_at=timezone.now() - timedelta(days=1))
        revoked, world.revoked_key = ApiKey.issue(users["alice"])
        revoked.revoked_at = timezone.now()
        revoked.save()
    return world


@pytest.fixture(scope="session")
def static_root(tmp_path_factory) -> str:
    """`collectstatic` output, as production serves it (DEBUG off serves no app folders)."""
    root = tmp_path_factory.mktemp("static")
    result = subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"], cwd=REPO,
                            env={**os.environ, "STATIC_ROOT": str(root)}, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return str(root)


# The shared web process's limits on batch files (tests/test_files_api.py).
BATCH_FILE_MAX_BYTES = 3 * 1024 * 1024
BATCH_FILE_MAX_LINES = 1000
BATCH_FILE_QUOTA_BYTES = 6 * 1024 * 1024


def batch_files_dir() -> Path:
    return processes.session_tmp() / "batch-files"


def live_server_env(redis_server, static_root: str) -> dict[str, str]:
    """Production mode (DEBUG off, secure cookies) against the test database and Redis."""
    from django.db import connection

    return {
        "DATABASE_URL": _database_url(connection.settings_dict),
        "REDIS_URL": redis_server.url,
        "STATIC_ROOT": static_root,
        "DEBUG": "false",
        "SECRET_KEY": "test-secret-key-for-the-live-server",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "MAX_REQUEST_BODY_BYTES": str(1024 * 1024),
        "LOG_LEVEL": "WARNING",
        # Long, so tests that see a revoked key refused prove the Redis broadcast did it, not expiry.
        "API_KEY_CACHE_SECONDS": "600",
        "API_CORS_ALLOWED_ORIGINS": "https://app.example.org",  # tests/test_production.py
        # tests/test_files_api.py: small limits it can pass, and stored files in the session's directory.
        "BATCH_FILES_DIR": str(batch_files_dir()),
        "BATCH_FILE_MAX_BYTES": str(BATCH_FILE_MAX_BYTES),
        "BATCH_FILE_MAX_LINES": str(BATCH_FILE_MAX_LINES),
        "BATCH_FILE_QUOTA_BYTES": str(BATCH_FILE_QUOTA_BYTES),
    }


@pytest.fixture(scope="session")
def gatehouse(world, redis_server, static_root, django_db_blocker):
    """The real web process serving the world above."""
    server = DaphneServer(live_server_env(redis_server, static_root))
    yield server
    server.stop()


@pytest.fixture
def base_url(gatehouse) -> str:
    return gatehouse.url + "/v1"


@pytest.fixture
def superuser_client(redis_server):
    """A Django test client signed in as a superuser (admin pages); needs the django_db mark."""
    from django.contrib.auth import get_user_model
    from django.test import Client

    client = Client()
    client.force_login(get_user_model().objects.create_superuser("boss", password="pw"))
    return client
