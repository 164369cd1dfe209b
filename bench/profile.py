"""Where a process spends its CPU during a run: py-spy, sampled from outside the process.

``Profiler.start`` attaches ``py-spy record`` (``--nonblocking``: it reads the process's
memory without pausing it, so the run is not slowed by the profiler's samples) to the
busiest Python process of each group (gunicorn's worker, not its master; the Celery
worker), and ``stop`` ends it with SIGINT, which makes py-spy write its collapsed stacks
(``--format raw``: one ``frame;frame;… count`` line per distinct stack). ``summarise``
turns them into the figures the report prints: the share of samples per function where
it is the leaf (self time) and per function anywhere on the stack (inclusive), so the
next lever is named by the data, not by a guess. Idle samples (a greenlet hub waiting in
``epoll``) are left out by py-spy unless ``--idle`` is given.
"""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

log = logging.getLogger("bench")
RATE = 250  # samples per second
_PROJECT = re.compile(r"\((gateway|sluice|worker)/")
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def py_spy() -> str | None:
    """The py-spy executable beside this Python, or on PATH; None when there is none."""
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


def busiest_python(root_pid: int) -> int:
    """The process of the group that has used the most CPU so far: gunicorn's worker
    rather than its master, the Celery worker itself."""
    try:
        root = psutil.Process(root_pid)
        members = [root, *root.children(recursive=True)]
    except psutil.Error:
        return root_pid
    best, best_cpu = root_pid, -1.0
    for process in members:
        with contextlib.suppress(psutil.Error):
            if "python" not in process.name() and "gunicorn" not in process.name():
                continue
            times = process.cpu_times()
            if times.user + times.system > best_cpu:
                best, best_cpu = process.pid, times.user + times.system
    return best


@dataclass
class _Recording:
    name: str
    pid: int
    path: Path
    popen: subprocess.Popen[bytes]


class Profiler:
    """py-spy on each group's busiest process, from ``start`` to ``stop``."""

    def __init__(self, roots: dict[str, int], out_dir: Path, label: str) -> None:
        self.roots = roots
        self.out_dir = out_dir
        self.label = label
        self.recordings: list[_Recording] = []

    def start(self) -> None:
        exe = py_spy()
        if exe is None:
            log.warning("py-spy not found: no profile (pip install -r requirements-dev.txt)")
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for name, root in self.roots.items():
            pid = busiest_python(root)
            path = self.out_dir / f"profile-{self.label}-{name}.txt"
            cmd = [exe, "record", "--pid", str(pid), "--rate", str(RATE), "--nonblocking",
                   "--format", "raw", "--output", str(path)]  # fmt: skip
            popen = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            self.recordings.append(_Recording(name, pid, path, popen))

    def stop(self) -> dict[str, Any]:
        """SIGINT each recorder (it then writes its file); the summaries by group name."""
        out: dict[str, Any] = {}
        for rec in self.recordings:
            if rec.popen.poll() is None:
                rec.popen.send_signal(signal.SIGINT)
            try:
                _, err = rec.popen.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                rec.popen.kill()
                _, err = rec.popen.communicate()
            if not rec.path.exists():
                log.warning("py-spy wrote no profile of %s: %s", rec.name, err.decode()[-300:])
                continue
            out[rec.name] = {"pid": rec.pid, "file": str(rec.path), **summarise(rec.path)}
        return out


def _function(frame: str) -> str:
    """``"send (redis/connection.py:123)"`` -> ``"send (redis/connection.py)"``."""
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    file = match["file"]
    for marker in ("site-packages/", "lib/python3"):
        if marker in file:
            file = file.split(marker, 1)[1]
    return f"{match['func']} ({file})"


def summarise(path: Path, top: int = 15) -> dict[str, Any]:
    """The top functions by self and by inclusive share of the samples."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [_function(f) for f in stack.split(";") if f.strip()]
        if not frames:
            continue
        own[frames[-1]] += count
        for func in set(frames):
            inclusive[func] += count

    def shares(counter: Counter[str]) -> list[list[Any]]:
        return [[f, round(100 * c / total, 1)] for f, c in counter.most_common(top)]

    ours = Counter({f: c for f, c in inclusive.items() if _PROJECT.search(f)})
    return {
        "samples": total,
        "self_pct": shares(own),
        "inclusive_pct": shares(inclusive),
        "inclusive_sluice_pct": shares(ours),  # Sluice's own functions only
    }
