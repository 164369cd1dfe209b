"""A real Redis Cluster for the tests: three masters and three replicas on free loopback
ports, each ``redis-server`` started in a directory of its own, joined with
``redis-cli --cluster create``; ``stop`` kills every one of them."""

from __future__ import annotations

import contextlib
import random
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

NODE_TIMEOUT_MS = 2000  # a dead master's replica is promoted within ~2-4 s


def node_port() -> int:
    """A free port whose cluster bus port (10,000 above it) is free too."""
    while True:
        port = random.randrange(20000, 55000)
        with contextlib.ExitStack() as sockets:
            try:
                for candidate in (port, port + 10000):
                    s = sockets.enter_context(socket.socket())
                    s.bind(("127.0.0.1", candidate))
            except OSError:
                continue
        return port


@dataclass
class RedisCluster:
    """``start`` it, use ``url`` (a seed node), ``stop`` it (always, in a ``finally``)."""

    directory: Path
    masters: int = 3
    replicas: int = 1
    ports: list[int] = field(default_factory=list)
    processes: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def start(self) -> RedisCluster:
        server = shutil.which("redis-server")
        cli = shutil.which("redis-cli")
        if server is None or cli is None:
            raise RuntimeError("redis-server and redis-cli are needed for a cluster")
        self.ports = []
        while len(self.ports) < self.masters * (1 + self.replicas):
            port = node_port()
            if port not in self.ports:
                self.ports.append(port)
        for port in self.ports:
            self.start_node(port)
        for port in self.ports:
            self._wait(lambda p=port: self.cli(p, "ping") == "PONG", 10)
        subprocess.run(
            [cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in self.ports),
             "--cluster-replicas", str(self.replicas), "--cluster-yes"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        self._wait(self.healthy, 30)
        self._wait(self.replicating, 30)  # (a replica that never synced cannot take over)
        return self

    def replicating(self) -> bool:
        """Every replica's link to its master is up."""
        roles = [self.cli(port, "info", "replication") for port in self.ports]
        replicas = [info for info in roles if "role:slave" in info]
        wanted = self.masters * self.replicas
        return len(replicas) == wanted and all("master_link_status:up" in r for r in replicas)

    def start_node(self, port: int) -> None:
        node_dir = self.directory / str(port)
        node_dir.mkdir(parents=True, exist_ok=True)
        log = (node_dir / "redis.log").open("ab")
        self.processes[port] = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
             "--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf",
             "--cluster-node-timeout", str(NODE_TIMEOUT_MS), "--appendonly", "no",
             # a replica may take over however long ago it last heard from its master
             "--cluster-replica-validity-factor", "0",
             "--save", "", "--dir", str(node_dir)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip

    def cli(self, port: int, *args: str) -> str:
        done = subprocess.run(
            ["redis-cli", "-p", str(port), *args], capture_output=True, text=True, timeout=10
        )
        return done.stdout.strip()

    def healthy(self) -> bool:
        """Every node says the cluster is ok and knows every other node."""
        for port in self.ports:
            if port not in self.processes or self.processes[port].poll() is not None:
                continue
            info = self.cli(port, "cluster", "info")
            if "cluster_state:ok" not in info:
                return False
            if f"cluster_known_nodes:{len(self.ports)}" not in info:
                return False
        return True

    def master_ports(self) -> list[int]:
        """The ports of the masters that hold slots now (per ``CLUSTER SHARDS`` via a
        live node)."""
        for port in self.ports:
            if self.processes[port].poll() is None:
                out = self.cli(port, "cluster", "nodes")
                if out:
                    break
        masters = []
        for line in out.splitlines():
            parts = line.split()
            if "master" in parts[2] and "fail" not in parts[2] and len(parts) > 8:
                masters.append(int(parts[1].split("@")[0].rsplit(":", 1)[1]))
        return sorted(masters)

    def kill(self, port: int) -> None:
        """SIGKILL one node (a crash)."""
        process = self.processes[port]
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGKILL)
        process.wait(10)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGKILL)
        for process in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(10)

    @staticmethod
    def _wait(condition: object, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():  # type: ignore[operator]
                return
            time.sleep(0.1)
        raise AssertionError(f"the Redis Cluster was not ready within {timeout}s")
