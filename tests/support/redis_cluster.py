"""A real Redis Cluster of three masters on free ports, for the tests that run against one as well.

    cluster = RedisCluster()          # three `redis-server --cluster-enabled yes`, joined by redis-cli
    cluster.url                       # one node's URL: what REDIS_URL names with REDIS_CLUSTER=true
    cluster.client()                  # a redis-py cluster client (decode_responses)
    cluster.stop()

Each node keeps nothing on disk but its cluster configuration (nodes.conf), in a directory of its own
under the session's temporary directory. Every process started ends with stop() (or the session).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile

import redis
import redis.cluster

from tests.support.processes import STARTING, eventually, port_open, session_tmp, spawn, stop_group

MASTERS = 3
BUS_OFFSET = 10000  # a node also listens on its port + 10000 for the cluster bus


def _free_port_with_bus() -> int:
    """A free port whose cluster-bus port (+10000) is free too."""
    for _ in range(200):
        with socket.socket() as sock, socket.socket() as bus:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
            if port + BUS_OFFSET > 65535:
                continue
            try:
                bus.bind(("127.0.0.1", port + BUS_OFFSET))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port with a free cluster-bus port")


class RedisCluster:
    def __init__(self) -> None:
        self.binary = shutil.which("redis-server")
        if self.binary is None:
            raise RuntimeError("redis-server is not installed; `make test` installs it (apt-get install redis-server)")
        self.ports: list[int] = []
        self.dirs: list[str] = []
        self.procs = []
        try:
            for _ in range(MASTERS):
                self._start_node()
            self._join()
        except Exception:
            self.stop()
            raise
        self.port = self.ports[0]
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def _start_node(self) -> None:
        port = _free_port_with_bus()
        node_dir = tempfile.mkdtemp(prefix=f"redis-cluster-{port}-", dir=session_tmp())
        proc = spawn([self.binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                      "--dir", node_dir, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                      "--cluster-node-timeout", "2000", "--maxmemory-policy", "noeviction"],
                     what=f"redis-server cluster node :{port}")
        self.ports.append(port)
        self.dirs.append(node_dir)
        self.procs.append(proc)
        eventually(lambda: port_open(port), timeout=10, what="a cluster node", proc=proc, ignore=STARTING)

    def _join(self) -> None:
        """redis-cli assigns the 16384 slots over the masters; then wait until every node says ok."""
        result = subprocess.run(["redis-cli", "--cluster", "create", *(f"127.0.0.1:{port}" for port in self.ports),
                                 "--cluster-replicas", "0", "--cluster-yes"], capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise RuntimeError("redis-cli --cluster create failed:\n" + result.stdout + result.stderr)

        def every_node_ok() -> bool:
            for port in self.ports:
                with redis.Redis(port=port, decode_responses=True) as node:
                    if node.cluster("info").get("cluster_state") != "ok":
                        return False
            return True

        eventually(every_node_ok, timeout=30, what="the cluster's state to be ok")

    def client(self) -> redis.cluster.RedisCluster:
        return redis.cluster.RedisCluster.from_url(self.url, decode_responses=True)

    def shard_key_counts(self) -> list[int]:
        """How many keys each master holds: where the data went."""
        counts = []
        for port in self.ports:
            with redis.Redis(port=port) as node:
                counts.append(node.dbsize())
        return counts

    def stop(self) -> None:
        for proc in self.procs:
            stop_group(proc, timeout=5)
        for node_dir in self.dirs:
            shutil.rmtree(node_dir, ignore_errors=True)
        self.procs = []
