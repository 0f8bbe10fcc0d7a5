"""preStop hook of Gatehouse's web pods: let the requests the pod is answering end before it is stopped.

On SIGTERM the web process (portal/web.py) stops listening and gives the requests still running only
WEB_DRAIN_SECONDS before it cancels them, streams included; and a pod must leave the Service's endpoints
before it stops taking connections. So the kubelet must not send SIGTERM while the pod still answers
a long stream. This hook runs first:

1. it sleeps --settle seconds, while the pod (Terminating) leaves the Service's endpoints and the
   ingress controller and kube-proxy stop sending it new connections;
2. it then waits until no TCP connection to the web port is open (the kernel's tables in
   /proc/net/tcp and tcp6, in the pod's network namespace), or --budget seconds have passed.

Idle keep-alive connections end on their own after WEB_IDLE_TIMEOUT_SECONDS. The kubelet sends SIGTERM
when this hook returns; terminationGracePeriodSeconds leaves room for both steps, the drain and the exit.
"""

from __future__ import annotations

import argparse
import time

ESTABLISHED = "01"
TABLES = ("/proc/net/tcp", "/proc/net/tcp6")


def open_connections(port: int, tables=TABLES) -> int:
    """Connections to `port` on this host that are established (the listening socket is not one)."""
    count = 0
    for table in tables:
        try:
            with open(table, encoding="ascii") as lines:
                next(lines, None)  # the heading
                for line in lines:
                    fields = line.split()
                    if len(fields) > 3 and fields[3] == ESTABLISHED and int(fields[1].rsplit(":", 1)[1], 16) == port:
                        count += 1
        except OSError:
            continue  # no IPv6 in this pod
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--settle", type=float, default=5.0, help="seconds to sleep first")
    parser.add_argument("--budget", type=float, default=120.0, help="longest wait for connections to end")
    parser.add_argument("--table", action="append", help="a connection table to read (default: the kernel's)")
    args = parser.parse_args()
    tables = args.table or TABLES
    time.sleep(args.settle)
    deadline = time.monotonic() + args.budget
    while open_connections(args.port, tables) and time.monotonic() < deadline:
        time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))


if __name__ == "__main__":
    main()
