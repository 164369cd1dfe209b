"""Starting the benchmark's processes in their own process groups, and always stopping them."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("bench")


class BenchError(RuntimeError):
    """A process or a step of the benchmark failed; the message says which and why."""


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    stop_signal: signal.Signals

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Processes:
    """Every process the benchmark started, each the leader of its own process group."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.procs: list[Proc] = []
        log_dir.mkdir(parents=True, exist_ok=True)

    def start(
        self,
        name: str,
        cmd: list[str],
        env: Mapping[str, str],
        cwd: Path,
        stop_signal: signal.Signals = signal.SIGTERM,
    ) -> Proc:
        path = self.log_dir / f"{name}.log"
        with path.open("wb") as out:
            popen = subprocess.Popen(
                cmd, env=dict(env), cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        proc = Proc(name, popen, path, stop_signal)
        self.procs.append(proc)
        log.debug("started %s (pid %d): %s", name, popen.pid, " ".join(cmd))
        return proc

    def stop(self, proc: Proc, grace: float = 5.0) -> None:
        """Signal the process group, then SIGKILL it if it is not gone after ``grace``."""
        if proc.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, proc.stop_signal)
            try:
                proc.popen.wait(grace)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0fs; killing it", proc.name, grace)
        # the group may hold children that outlive the leader
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.popen.wait(5)
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self) -> None:
        for proc in reversed(list(self.procs)):
            self.stop(proc)


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def wait_http(url: str, proc: Proc, timeout: float = 30.0) -> None:
    """Wait until ``url`` answers 200; fail early if the process dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if http_ok(url):
            return
        if not proc.alive():
            raise BenchError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.tail()}")
        time.sleep(0.1)
    raise BenchError(f"{proc.name} did not answer {url} within {timeout:.0f}s:\n{proc.tail()}")
