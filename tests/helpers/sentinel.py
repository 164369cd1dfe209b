"""A Sentinel-managed Redis of a test's own: one master, one replica and three Sentinels
(quorum 2) on free loopback ports in a temporary directory, with a failover in about three
seconds (down-after-milliseconds 1000). The test may SIGKILL the master; ``stop`` kills
every process it started.

The first master is reached (by everyone: the Sentinels, the replica, the stack) through
a small TCP proxy, ``ReplicationFreeze``, which can stop passing the replication stream to
the replica while the master goes on acknowledging writes: the writes a master
acknowledged but never replicated, which a crash then takes with it."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
import time
from pathlib import Path

import redis

from devtools.local_redis import server_binary
from tests.helpers.support import free_port

MASTER_NAME = "mymaster"


class SentinelTopology:
    def __init__(self, directory: Path, down_after_ms: int = 1000) -> None:
        binary = server_binary()
        if binary is None:
            raise RuntimeError("no redis-server to start (apt-get install redis-server)")
        self.binary = binary
        self.directory = directory
        self.down_after_ms = down_after_ms
        self.processes: dict[int, subprocess.Popen[bytes]] = {}
        self.master_port = free_port()
        self.replica_port = free_port()
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.proxy = ReplicationFreeze(self.master_port)
        try:
            self._start_server(self.master_port)
            self._start_server(self.replica_port, "--replicaof", "127.0.0.1", str(self.proxy.port))
            for port in self.sentinel_ports:
                self._start_sentinel(port)
            self.wait_agreed()
        except BaseException:
            self.stop()
            raise

    # -- what a stack is configured with ----------------------------------------------------

    @property
    def sentinels(self) -> tuple[str, ...]:
        return tuple(f"127.0.0.1:{port}" for port in self.sentinel_ports)

    @property
    def url(self) -> str:
        """The first master's URL (a stack with Sentinels ignores its host and port; one
        without them stays on it after a failover)."""
        return f"redis://127.0.0.1:{self.proxy.port}/0"

    # -- processes ----------------------------------------------------------------------

    def _start_server(self, port: int, *extra: str) -> None:
        args = [
            self.binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(self.directory),
            "--save", "", "--appendonly", "no", "--dbfilename", f"dump-{port}.rdb",
            "--logfile", str(self.directory / f"redis-{port}.log"), *extra,
        ]  # fmt: skip
        self.processes[port] = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        self._wait(lambda: _ping(port), f"redis on {port}")

    def _start_sentinel(self, port: int) -> None:
        conf = self.directory / f"sentinel-{port}.conf"
        conf.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {self.directory}\n"
            f"logfile {self.directory / f'sentinel-{port}.log'}\n"
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.proxy.port} 2\n"
            f"sentinel down-after-milliseconds {MASTER_NAME} {self.down_after_ms}\n"
            f"sentinel failover-timeout {MASTER_NAME} 5000\n"
            f"sentinel parallel-syncs {MASTER_NAME} 1\n"
        )
        self.processes[port] = subprocess.Popen(
            [self.binary, str(conf), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        self._wait(lambda: _ping(port), f"sentinel on {port}")

    def _wait(self, condition: object, what: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if callable(condition) and condition():
                return
            time.sleep(0.05)
        raise RuntimeError(f"{what} not ready within {timeout:.0f}s (logs in {self.directory})")

    def wait_agreed(self, timeout: float = 20.0) -> None:
        """Until every Sentinel knows the other two and the replica, and the replica is in
        sync: a failover is possible from then on."""

        def agreed() -> bool:
            for port in self.sentinel_ports:
                try:
                    state = _client(port).sentinel_master(MASTER_NAME)
                except redis.RedisError:
                    return False
                if int(state["num-other-sentinels"]) < 2 or int(state["num-slaves"]) < 1:
                    return False
            replica = _client(self.replica_port).info("replication")
            return bool(replica.get("master_link_status") == "up")

        self._wait(agreed, "the sentinels' agreement", timeout)

    def master(self) -> tuple[str, int]:
        """The master the first Sentinel names now."""
        host, port = _client(self.sentinel_ports[0]).sentinel_get_master_addr_by_name(MASTER_NAME)
        return str(host), int(port)

    def kill_master(self) -> int:
        """SIGKILL the current master (a crash: no shutdown, no last replication); returns
        the port the Sentinels knew it by."""
        _, port = self.master()
        process = self.processes[self.master_port if port == self.proxy.port else port]
        process.kill()
        process.wait(10)
        return port

    def restart_first_master(self) -> None:
        """Start the crashed first master again, empty, as a replica of the new master (as
        an operator restarting the node would; the Sentinels would convert it too, but
        only some ten seconds later)."""
        host, port = self.master()
        self._start_server(self.master_port, "--replicaof", host, str(port))

    def wait_failover(self, old_port: int, timeout: float = 30.0) -> tuple[str, int]:
        """Until every Sentinel names a master other than ``old_port`` and it answers as one."""

        def promoted() -> bool:
            try:
                ports = {
                    int(_client(p).sentinel_get_master_addr_by_name(MASTER_NAME)[1])
                    for p in self.sentinel_ports
                }
            except redis.RedisError:
                return False
            if len(ports) != 1 or old_port in ports:
                return False
            (port,) = ports
            return bool(_client(port).info("replication")["role"] == "master")

        self._wait(promoted, "the failover", timeout)
        return self.master()

    def stop(self) -> None:
        self.proxy.close()
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
        for process in self.processes.values():
            process.wait(10)


def _client(port: int) -> redis.Redis:
    return redis.Redis(port=port, socket_timeout=2, socket_connect_timeout=1, decode_responses=True)


def _ping(port: int) -> bool:
    try:
        return bool(_client(port).ping())
    except redis.RedisError:
        return False


class ReplicationFreeze:
    """A TCP proxy to a Redis server that, once ``freeze`` is called, stops passing what
    the server sends on replication connections (those whose client sent REPLCONF or
    PSYNC): the server goes on as if its replica received it, the replica receives
    nothing, and its acknowledgements stop advancing (WAIT sees it behind)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.frozen = threading.Event()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._server.getsockname()[1])
        self._closed = False
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def freeze(self) -> None:
        self.frozen.set()

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._server.close()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=1)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            for sock in (client, upstream):  # no Nagle delay on WAIT's small round trips
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._sockets += [client, upstream]
            replication = threading.Event()
            threading.Thread(
                target=self._pump, args=(client, upstream, replication, True), daemon=True
            ).start()
            threading.Thread(
                target=self._pump, args=(upstream, client, replication, False), daemon=True
            ).start()

    def _pump(
        self, source: socket.socket, sink: socket.socket, replication: threading.Event,
        from_client: bool,
    ) -> None:  # fmt: skip
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if from_client and (b"REPLCONF" in data or b"PSYNC" in data):
                    replication.set()
                if not from_client and replication.is_set() and self.frozen.is_set():
                    continue  # the replica never gets it
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
