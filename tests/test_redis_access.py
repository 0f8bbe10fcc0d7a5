"""All Redis access goes through common/store/: the clients (client.py), the Lua scripts (scripts.py,
lua/) and the key names (keys.py). No other module makes a client or holds Lua source, every client
gives up after REDIS_SOCKET_TIMEOUT, and the scripts load as the loader promises."""

from __future__ import annotations

import ast
import asyncio
import re
import socket
import threading
import time
from pathlib import Path

import pytest
import redis.asyncio
from django.test import override_settings

from common.store import keys, scripts
from common.store.client import REDIS_ERRORS, pubsub_client, redis_client, sync_client
from tests.support.processes import REPO

SCANNED = ("portal", "apiaccess", "inference", "usage", "common")
STORE = REPO / "common" / "store"
CLIENT_MAKERS = {"from_url", "Redis", "StrictRedis", "RedisCluster", "ConnectionPool", "BlockingConnectionPool"}
LUA_IN_TEXT = re.compile(r"redis\.p?call\s*\(")


def _modules() -> list[Path]:
    found = []
    for package in SCANNED:
        for path in sorted((REPO / package).rglob("*.py")):
            if not path.is_relative_to(STORE):
                found.append(path)
    return found


def _called_name(call: ast.Call) -> str:
    func = call.func
    if isinstance(func, ast.Attribute):
        return func.attr
    return func.id if isinstance(func, ast.Name) else ""


def _is_text(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str) or isinstance(node, ast.JoinedStr)


def _offences(path: Path, root: Path = REPO) -> list[str]:
    where = path.relative_to(root)
    out = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Call):
            name = _called_name(node)
            if name in CLIENT_MAKERS:
                out.append(f"{where}:{node.lineno} makes a Redis client ({name}): use common.store.client")
            elif name == "register_script":
                out.append(f"{where}:{node.lineno} registers a script: use common.store.scripts.get")
            elif name in ("eval", "evalsha", "eval_ro", "script_load") and isinstance(node.func, ast.Attribute) \
                    and node.args and _is_text(node.args[0]):
                out.append(f"{where}:{node.lineno} runs inline Lua ({name}): put it in common/store/lua/")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and LUA_IN_TEXT.search(node.value):
            out.append(f"{where}:{node.lineno} holds Lua source: put it in common/store/lua/")
    return out


def test_no_module_outside_common_store_makes_a_redis_client_or_holds_lua():
    modules = _modules()
    assert len(modules) > 50, "the scan found the apps' modules"
    offences = [offence for path in modules for offence in _offences(path)]
    assert not offences, "\n".join(offences)


def test_the_scan_catches_what_it_is_meant_to_catch(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import redis\n"
        "a = redis.Redis.from_url('redis://x')\n"
        "b = redis.Redis(host='x')\n"
        "c = redis.BlockingConnectionPool(max_connections=2)\n"
        "a.register_script(SOURCE)\n"
        "a.eval(\"return 1\", 0)\n"
        "SOURCE = \"return redis.call('GET', KEYS[1])\"\n"
        "a.eval(some_sha_name, 0)\n"  # not a literal: may be anything
    )
    lines = sorted(int(offence.split(":")[1].split()[0]) for offence in _offences(sample, root=tmp_path))
    assert lines == [2, 3, 4, 5, 6, 7], lines


# -- the scripts -------------------------------------------------------------------------------------

def test_every_script_loads_and_declares_what_it_uses_of_common_lua():
    names = scripts.names()
    assert {"admit", "release", "dispatch", "renew", "reassert", "place", "forecast", "limit_admit",
            "limit_settle", "usage_write", "lease_renew", "lease_release", "last_used_forget"} <= set(names)
    common = (scripts.LUA_DIR / "common.lua").read_text()
    shared = set(re.findall(r"^local function (\w+)\(", common, re.M)) | {"P"}
    assert "policy" in shared
    for name in names:
        if name == "common":
            continue
        own = (scripts.LUA_DIR / f"{name}.lua").read_text()
        uses = {word for word in shared if re.search(rf"(?<![\w.]){word}\b", own)}
        if uses:
            assert scripts.includes(name) == ["common"], f"{name}.lua uses {sorted(uses)} of common.lua"
            assert scripts.source(name).startswith(common), f"{name}: common.lua comes first"
        else:
            assert scripts.includes(name) == [], f"{name}.lua includes common.lua without using it"
            assert scripts.source(name) == own
    with pytest.raises(LookupError):
        scripts.source("no-such-script")


def test_the_channels_the_scripts_publish_to_are_the_ones_keys_py_names():
    admit = (scripts.LUA_DIR / "admit.lua").read_text()
    common = (scripts.LUA_DIR / "common.lua").read_text()
    assert f"'{keys.ACTOR_WAKE_CHANNEL}'" in admit
    # Grants go on the model's sharded channel, spelled from the model's prefix P as keys.py spells it.
    assert "redis.call('SPUBLISH', P .. 'g:' .. owner," in common
    assert keys.grant_channel("m", "web-1") == keys.model_prefix("m") + "g:" + "web-1"
    sources = "\n".join((scripts.LUA_DIR / f"{name}.lua").read_text() for name in scripts.names())
    assert set(re.findall(r"'PUBLISH', '([^']+)'", sources)) == {keys.ACTOR_WAKE_CHANNEL}
    assert len(re.findall(r"'SPUBLISH'", sources)) == 1


def test_a_script_is_registered_once_per_client():
    one = sync_client()
    assert scripts.get(one, "lease_renew") is scripts.get(one, "lease_renew")
    assert scripts.get(one, "lease_renew") is not scripts.get(one, "lease_release")

    async def on_a_loop():
        client = redis_client()
        script = scripts.get(client, "lease_renew")
        assert script is scripts.get(client, "lease_renew")
        assert type(script).__name__ == "AsyncScript"
        return script.sha

    assert asyncio.run(on_a_loop()) == scripts.get(one, "lease_renew").sha
    assert type(scripts.get(one, "lease_renew")).__name__ == "Script"


def test_keys_of_one_model_share_its_hash_tag():
    for key in (keys.queue("m"), keys.lease("m"), keys.run("m", "http://n:1"), keys.placement("m"),
                keys.born("m"), keys.enqueued("m"), keys.service("m")):
        assert key.startswith(keys.model_prefix("m")) and "{m}" in key
    assert keys.model_prefix("we{ird}") == "gh:{we(ird)}:"
    limit = keys.limit_keys(7, 3, day="20260101", month="202601")
    assert len(limit) == 10 and all(key.startswith("gh:u{7}:") for key in limit)
    assert keys.limit_settled(7, "r1").startswith("gh:u{7}:")
    shard = keys.usage_shard("0123abcd")
    tag = f"gh:{{usage:{shard}}}:"
    assert all(key.startswith(tag) for key in (keys.usage_written(shard, "x"), keys.metrics_recent(shard, 5),
                                                keys.usage_stream(shard), keys.metrics_histogram(shard, "ttft")))
    # Records spread over the shards' tags, so a Redis Cluster spreads their writes over its shards.
    assert len({keys.usage_shard(f"{n:032x}") for n in range(64)}) == keys.USAGE_SHARDS


# -- REDIS_SOCKET_TIMEOUT ----------------------------------------------------------------------------

class SilentRedis:
    """A TCP server that accepts connections and never says a word: a Redis that hangs."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.05)  # so the thread notices close() soon
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        self.closed = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self.closed.set()
        self.thread.join(timeout=5)
        self.sock.close()
        for conn in self.held:
            conn.close()


@pytest.fixture
def silent():
    server = SilentRedis()
    yield server
    server.close()


TIMEOUT = 0.3


def _gives_up_in_time(started: float) -> None:
    elapsed = time.monotonic() - started
    # Not the 1 s once hard-coded, and not a retry of the timed-out call: once, about the timeout.
    assert TIMEOUT * 0.8 <= elapsed < TIMEOUT + 0.5, f"gave up after {elapsed:.2f} s, not about {TIMEOUT} s"


def test_the_sync_client_gives_up_after_the_socket_timeout(silent):
    with override_settings(REDIS_URL=silent.url, REDIS_SOCKET_TIMEOUT=TIMEOUT):
        client = sync_client()
        kwargs = client.connection_pool.connection_kwargs
        assert kwargs["socket_timeout"] == TIMEOUT and kwargs["socket_connect_timeout"] == TIMEOUT
        started = time.monotonic()
        with pytest.raises(REDIS_ERRORS):
            client.get("anything")
        _gives_up_in_time(started)
        assert silent.held, "the client did reach the silent server"


def test_the_async_client_gives_up_after_the_socket_timeout(silent):
    async def call() -> None:
        client = redis_client()
        kwargs = client.connection_pool.connection_kwargs
        assert kwargs["socket_timeout"] == TIMEOUT and kwargs["socket_connect_timeout"] == TIMEOUT
        started = time.monotonic()
        with pytest.raises(REDIS_ERRORS):
            await client.get("anything")
        _gives_up_in_time(started)
        await client.aclose()

    with override_settings(REDIS_URL=silent.url, REDIS_SOCKET_TIMEOUT=TIMEOUT):
        asyncio.run(call())
    assert silent.held, "the client did reach the silent server"


def test_the_subscription_client_connects_within_the_socket_timeout(silent):
    async def make() -> redis.asyncio.Redis:
        client = pubsub_client()
        await client.aclose()
        return client

    with override_settings(REDIS_URL=silent.url, REDIS_SOCKET_TIMEOUT=TIMEOUT):
        client = asyncio.run(make())
    kwargs = client.connection_pool.connection_kwargs
    assert kwargs["socket_connect_timeout"] == TIMEOUT
    assert kwargs.get("socket_timeout") is None, "a subscription waits for messages as long as it takes"


def test_clients_follow_the_settings(silent):
    default = sync_client()
    with override_settings(REDIS_SOCKET_TIMEOUT=TIMEOUT):
        assert sync_client() is not default
        assert sync_client().connection_pool.connection_kwargs["socket_timeout"] == TIMEOUT
    assert sync_client() is default
