"""CPU seconds and RSS of groups of processes during a run, sampled with psutil.

A group is a root process and all its descendants (gunicorn's master and worker; the
Celery worker and any children). CPU is user + system time, taken at the start and end
of the run (a process born during the run counts from zero). RSS is the group's total,
sampled every ``interval`` seconds in a thread; the peak is the largest sample.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field

import psutil

MB = 1024 * 1024


def _members(root: psutil.Process) -> list[psutil.Process]:
    try:
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def _cpu(process: psutil.Process) -> float:
    try:
        times = process.cpu_times()
    except psutil.Error:
        return 0.0
    return float(times.user + times.system)


def _rss(processes: list[psutil.Process]) -> int:
    total = 0
    for process in processes:
        with contextlib.suppress(psutil.Error):
            total += process.memory_info().rss
    return total


@dataclass
class Group:
    name: str
    root: psutil.Process
    cpu_start: dict[int, float] = field(default_factory=dict)
    cpu_end: dict[int, float] = field(default_factory=dict)
    known: dict[int, psutil.Process] = field(default_factory=dict)
    idle_rss: int = 0
    peak_rss: int = 0

    def members(self) -> list[psutil.Process]:
        # keep the first Process object seen per pid: psutil checks it is the same process
        for process in _members(self.root):
            self.known.setdefault(process.pid, process)
        return [p for p in self.known.values() if p.is_running()]

    def start(self) -> None:
        members = self.members()
        self.cpu_start = {p.pid: _cpu(p) for p in members}
        self.idle_rss = self.peak_rss = _rss(members)

    def sample(self) -> None:
        self.peak_rss = max(self.peak_rss, _rss(self.members()))

    def stop(self) -> None:
        members = self.members()
        self.peak_rss = max(self.peak_rss, _rss(members))
        self.cpu_end = {p.pid: _cpu(p) for p in members}

    def report(self) -> dict[str, float]:
        cpu = sum(end - self.cpu_start.get(pid, 0.0) for pid, end in self.cpu_end.items())
        return {
            "cpu_s": round(cpu, 3),
            "idle_rss_mb": round(self.idle_rss / MB, 1),
            "peak_rss_mb": round(self.peak_rss / MB, 1),
            "processes": len(self.cpu_end),
        }


class Monitor:
    """Samples the groups from ``start()`` to ``stop()``."""

    def __init__(self, roots: dict[str, int], interval: float = 0.1) -> None:
        self.groups = {name: Group(name, psutil.Process(pid)) for name, pid in roots.items() if pid}
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        for group in self.groups.values():
            group.start()
        self._thread = threading.Thread(target=self._loop, name="bench-monitor", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            for group in list(self.groups.values()):
                group.sample()

    def stop(self) -> dict[str, dict[str, float]]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        for group in self.groups.values():
            group.stop()
        return {name: group.report() for name, group in self.groups.items()}
