"""Sluice's benchmark, one command: ``python -m bench.run`` (see docs/performance.md).

Starts a fast fake upstream (``bench.upstream``), then for each system (Sluice as
deployed, the direct proxy, flask-sse) its gunicorn gateway (and Celery worker), warms it
up, and runs N concurrent streams for each size with the load client (``bench.client``)
in its own process while ``bench.monitor`` samples CPU and RSS. Prints one markdown
table, the Sluice/baseline ratios and the target checks, and writes them with the raw
results to ``bench/results/latest.{md,json}``. Every process it starts is stopped (its
whole process group) and every Redis key it made is deleted, whatever happens.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import resource
import secrets
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, replace
from importlib import metadata
from pathlib import Path
from types import FrameType
from typing import Any

import redis

from bench import report
from bench.client import Spec
from bench.monitor import Monitor
from bench.procs import BenchError, Processes, free_port, wait_http
from bench.profile import Profiler
from bench.systems import ROOT, Context, Stack, Variant, start_stack

log = logging.getLogger("bench")
RESULTS = Path(__file__).resolve().parent / "results"
SYSTEMS = ("sluice", "direct", "flask-sse")
WARMUP_DELTAS, WARMUP_INTERVAL = 5, 0.01


# -- the command line ---------------------------------------------------------------------


def _csv(kind: type, choices: tuple[str, ...] | None = None) -> Any:
    def parse(text: str) -> list[Any]:
        items = [kind(item.strip()) for item in text.split(",") if item.strip()]
        if not items:
            raise argparse.ArgumentTypeError("empty list")
        if choices and any(item not in choices for item in items):
            raise argparse.ArgumentTypeError(f"choose from {', '.join(choices)}")
        return items

    return parse


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=_csv(int), default=[1, 100, 1000], help="N, e.g. 1,100,1000")
    p.add_argument(
        "--systems", type=_csv(str, SYSTEMS), default=list(SYSTEMS), help=",".join(SYSTEMS)
    )
    p.add_argument("--deltas", type=int, default=40, help="deltas per stream (40)")
    p.add_argument("--interval", type=float, default=0.02, help="seconds between deltas")
    p.add_argument(
        "--shared-subscriber", choices=("0", "1", "both"), default="both",
        help="Sluice rows with one pub/sub connection per stream (0: bench.per_stream_gateway), "
        "per process (1), or both (default)",
    )  # fmt: skip
    p.add_argument(
        "--requests", choices=("1", "2", "both"), default="both",
        help="Sluice's client: 1 = POST /v1/jobs with stream: true, 2 = POST then GET "
        "events_url, or both (default)",
    )  # fmt: skip
    p.add_argument(
        "--env", action="append", default=[], metavar="NAME=VALUE",
        help="a setting for the systems under test, e.g. SLUICE_SUBMIT_CONCURRENCY=0 "
        "(repeatable; to measure a lever with and without)",
    )  # fmt: skip
    p.add_argument(
        "--compare-rev", metavar="REV",
        help="also run Sluice as it was at this git revision (checked out in a temporary "
        "worktree), after each Sluice row: a lever's before and after in one run",
    )  # fmt: skip
    p.add_argument("--timeout", type=float, default=120, help="deadline of one run (s)")
    p.add_argument("--warmup", type=int, default=5, help="concurrent warm-up streams")
    p.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    p.add_argument("--out", type=Path, default=RESULTS / "matrix", help="where latest.{md,json} go")
    p.add_argument(
        "--profile", action="store_true",
        help="py-spy the gateway and the worker during each run (bench/profile.py)",
    )  # fmt: skip
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    if args.deltas < 1 or args.interval < 0 or min(args.sizes) < 1:
        p.error("--deltas and --sizes must be ≥ 1, --interval ≥ 0")
    if any("=" not in item for item in args.env):
        p.error("--env takes NAME=VALUE")
    return args


def variants(args: argparse.Namespace) -> list[Variant]:
    """Sluice's rows: one request per stream with each subscriber mode, then (with
    ``--requests both``) two requests per stream with the first mode."""
    out: list[Variant] = []
    for system in args.systems:
        if system == "sluice":
            switches = ["1", "0"] if args.shared_subscriber == "both" else [args.shared_subscriber]
            ours = []
            if args.requests in ("1", "both"):
                ours += [Variant("sluice", s, 1) for s in switches]
            if args.requests in ("2", "both"):
                ours.append(Variant("sluice", switches[0], 2))
            for variant in ours:
                out.append(variant)
                if args.compare_rev:
                    root = checkout(args.compare_rev)
                    out.append(replace(variant, revision=args.compare_rev, root=root))
        else:
            out.append(Variant(system))
    return out


def checkout(revision: str) -> Path:
    """Sluice's code at ``revision``, in a worktree of its own (made once per revision)."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short", revision], cwd=ROOT, check=True, capture_output=True,
        text=True,
    ).stdout.strip()  # fmt: skip
    path = Path(tempfile.gettempdir()) / f"sluice-bench-{commit}"
    if not (path / "gateway").is_dir():
        subprocess.run(["git", "worktree", "add", "--detach", "--force", str(path), commit],
                       cwd=ROOT, check=True, capture_output=True)  # fmt: skip
    return path


# -- the machine --------------------------------------------------------------------------


def machine(client: redis.Redis) -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    info = client.info("server")
    versions = {}
    for package in ("gunicorn", "gevent", "celery", "flask", "flask-sse", "redis", "aiohttp"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[package] = metadata.version(package)
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "redis": info.get("redis_version"),
        "redis_pid": info.get("process_id"),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
        "packages": versions,
    }


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < 8192:
        log.warning("open-file limit %d: N=1000 needs several thousand descriptors", hard)


def _on_sigterm(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


# -- the runs -----------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.run_id = secrets.token_hex(3)
        self.log_dir = args.out / "logs"
        self.procs = Processes(self.log_dir)
        self.redis = redis.Redis.from_url(args.redis_url, decode_responses=True, socket_timeout=10)
        self.rows: list[report.Row] = []
        self.ctx: Context | None = None
        self.upstream_pid = 0
        self.redis_pid = 0

    def _upstream(self, path: str, method: str = "GET") -> dict[str, Any]:
        assert self.ctx is not None
        url = self.ctx.upstream_url.removesuffix("/v1") + path
        request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
        with urllib.request.urlopen(request, timeout=5) as response:
            return dict(json.loads(response.read()))

    def start_upstream(self) -> None:
        port = free_port()
        cmd = [sys.executable, "-m", "bench.upstream", "--port", str(port)]
        proc = self.procs.start("upstream", cmd, {**os.environ, "PYTHONUNBUFFERED": "1"}, ROOT)
        wait_http(f"http://127.0.0.1:{port}/v1/models", proc, timeout=20)
        self.upstream_pid = proc.pid
        extra = tuple((k, v) for k, _, v in (item.partition("=") for item in self.args.env))
        upstream_url = f"http://127.0.0.1:{port}/v1"
        self.ctx = Context(self.run_id, self.args.redis_url, upstream_url, extra)
        log.info("fake upstream on http://127.0.0.1:%d/v1 (pid %d)", port, proc.pid)

    def client(
        self, stack: Stack, n: int, deltas: int, interval: float, timeout: float,
        join: tuple[str, ...] = (), name: str | None = None,
    ) -> Any:  # fmt: skip
        """Run the load client (``join``: late joiners on those URL paths) to its end."""
        spec = Spec(
            stack.variant.system, stack.base_url, n, deltas, interval, timeout,
            stack.variant.requests, tuple(join),
        )  # fmt: skip
        name = f"client-{stack.variant.slug}-{name or n}"
        out = self.log_dir / f"{name}.json"
        out.unlink(missing_ok=True)
        cmd = [sys.executable, "-m", "bench.client", "--spec", json.dumps(asdict(spec))]
        proc = self.procs.start(name, [*cmd, "--out", str(out)], os.environ, ROOT)
        try:
            proc.popen.wait(timeout + 30)
        except subprocess.TimeoutExpired:
            raise BenchError(f"the client did not finish within {timeout + 30:.0f}s") from None
        finally:
            self.procs.stop(proc)
        if proc.popen.returncode != 0 or not out.exists():
            raise BenchError(f"the client failed ({proc.popen.returncode}):\n{proc.tail()}")
        return json.loads(out.read_text())

    def warm_up(self, stack: Stack) -> None:
        """One stream (it waits until the worker is ready), then a few at once."""
        for n, timeout in ((1, 90.0), (self.args.warmup, 60.0)):
            if n < 1:
                continue
            result = self.client(stack, n, WARMUP_DELTAS, WARMUP_INTERVAL, timeout)
            if result["streams_failed"]:
                raise BenchError(f"warm-up failed: {result['error_samples']}")
        log.info("%s: warmed up", stack.variant.label)

    def observe(
        self, stack: Stack, n: int, deltas: int, interval: float, timeout: float, *,
        join: tuple[str, ...] = (), profile: bool = False, name: str | None = None,
    ) -> tuple[Any, dict[str, Any], dict[str, Any]]:  # fmt: skip
        """One client run with the processes' CPU and memory (and, with ``profile``, a
        py-spy profile) taken around it: (the client's summary, resources, profile)."""
        self._upstream("/bench/reset", "POST")
        roots = {"gateway": stack.gateway.pid, "upstream": self.upstream_pid}
        if stack.worker is not None:
            roots["worker"] = stack.worker.pid
        if self.redis_pid:
            roots["redis"] = self.redis_pid
        monitor = Monitor(roots)
        profiler = Profiler(
            {k: v for k, v in roots.items() if k in ("gateway", "worker")},
            self.log_dir, f"{stack.variant.slug}-{name or n}",
        )  # fmt: skip
        monitor.start()
        if profile:
            profiler.start()
        try:
            summary = self.client(stack, n, deltas, interval, timeout, join=join, name=name)
        finally:
            resources = monitor.stop()
            profiled = profiler.stop()
        return summary, resources, profiled

    def measure(self, stack: Stack, n: int) -> report.Row:
        args = self.args
        summary, resources, profile = self.observe(
            stack, n, args.deltas, args.interval, args.timeout, profile=args.profile
        )
        return {
            "profile": profile,
            **self._row_head(stack.variant, n),
            "client": summary,
            "resources": resources,
            "upstream_stats": self._upstream("/bench/stats"),
            "error": None,
        }

    def _row_head(self, variant: Variant, n: int) -> report.Row:
        return {
            "label": variant.label,
            "system": variant.system,
            "shared_subscriber": variant.shared_subscriber,
            "requests": variant.requests,
            "n": n,
            "deltas": self.args.deltas,
            "interval": self.args.interval,
        }

    def _settle(self, timeout: float = 15.0) -> None:
        """Wait (bounded) until the upstream has no stream open, so runs do not overlap."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self._upstream("/bench/stats")["open"] == 0:
                    break
            except OSError as exc:
                raise BenchError(f"the fake upstream stopped answering: {exc}") from None
            time.sleep(0.2)
        time.sleep(0.5)

    def run_variant(self, variant: Variant) -> None:
        assert self.ctx is not None
        sizes = sorted(self.args.sizes)
        log.info("== %s: starting", variant.label)
        try:
            stack = start_stack(variant, self.ctx, self.procs)
        except BenchError as exc:
            for proc in [p for p in self.procs.procs if p.name.startswith(variant.slug + "-")]:
                self.procs.stop(proc)
            self._fail_all(variant, sizes, f"start failed: {exc}")
            return
        try:
            self.warm_up(stack)
            for i, n in enumerate(sizes):
                if not stack.gateway.alive() or (stack.worker and not stack.worker.alive()):
                    self._fail_all(variant, sizes[i:], "a process of the stack died")
                    break
                log.info("%s: N=%d, %d deltas every %gs", variant.label, n, self.args.deltas,
                         self.args.interval)  # fmt: skip
                try:
                    row = self.measure(stack, n)
                except BenchError as exc:
                    log.error("%s N=%d: %s", variant.label, n, exc)
                    row = {**self._row_head(variant, n), "error": str(exc)}
                self.rows.append(row)
                self._log_row(row)
                self._settle()
        except BenchError as exc:
            log.error("%s: %s", variant.label, exc)
            done = {r["n"] for r in self.rows if r["label"] == variant.label}
            self._fail_all(variant, [n for n in sizes if n not in done], str(exc))
        finally:
            for proc in (stack.gateway, stack.worker):
                if proc is not None:
                    self.procs.stop(proc)

    def _fail_all(self, variant: Variant, sizes: list[int], why: str) -> None:
        log.error("%s: %s", variant.label, why.splitlines()[0] if why else why)
        for n in sizes:
            self.rows.append({**self._row_head(variant, n), "error": why})

    @staticmethod
    def _log_row(row: report.Row) -> None:
        c = row.get("client") or {}
        log.info(
            "%s N=%d: TTFD p50 %s ms, latency p99 %s ms, %s deltas/s, %d/%d failed %s",
            row["label"], row["n"], (c.get("ttfd_ms") or {}).get("p50"),
            (c.get("latency_ms") or {}).get("p99"), c.get("deltas_per_s"), report.failed(row),
            row["n"], c.get("errors_by_kind") or row.get("error") or "",
        )  # fmt: skip

    def cleanup_redis(self) -> None:
        if self.ctx is None:
            return
        keys = list(self.redis.scan_iter(match=self.ctx.redis_pattern, count=1000))
        for i in range(0, len(keys), 500):
            self.redis.unlink(*keys[i : i + 500])
        log.info("deleted %d Redis keys of this run", len(keys))


# -- output -------------------------------------------------------------------------------


def render(bench: Bench, info: dict[str, Any], command: str, seconds: float) -> tuple[str, dict]:
    args, rows = bench.args, bench.rows
    sluice_labels = [v.label for v in variants(args) if v.system == "sluice"]
    checks = report.checks(rows, sluice_labels)
    offered = f"{1 / args.interval:g} deltas/s per stream" if args.interval else "unpaced"
    lines = [
        "# Sluice benchmark",
        "",
        f"- command: `{command}`",
        f"- machine: {info['cores']} cores, {info['cpu']}, Python {info['python']}, "
        f"Redis {info['redis']}, {info['platform']}",
        f"- load average at start {info['loadavg_start']}, at end {info['loadavg_end']}",
        f"- packages: {', '.join(f'{k} {v}' for k, v in info['packages'].items())}",
        f"- each stream: {args.deltas} deltas every {args.interval:g}s ({offered}); "
        f"run deadline {args.timeout:g}s; total time {seconds:.0f}s",
        "",
        report.results_table(rows),
        "",
        "TTFD: first request sent → first delta received. Latency: delta received − emitted "
        "by the upstream. deltas/s: delivered ÷ (first request → last delta). CPU: user+sys "
        "seconds during the run; RSS: peak of the process group; MB/stream: (gateway peak − "
        "idle RSS) ÷ N. Redis CPU is the shared server's (other clients included).",
        "",
        "## Ratios (Sluice ÷ baseline)",
        "",
        report.ratios_table(rows, sluice_labels) if sluice_labels else "(Sluice not run)",
        "",
        "## Targets",
        "",
        *[f"- {line}" for line in checks],
    ]
    failures = [r for r in rows if r.get("error") or report.failed(r)]
    if failures:
        lines += ["", "## Failures", ""]
        for r in failures:
            why = r.get("error") or "; ".join((r.get("client") or {}).get("error_samples") or [])
            why = " ".join(why.split())  # one line
            lines.append(f"- {r['label']} N={r['n']}: {why[:500]}")
    markdown = "\n".join(lines) + "\n"
    raw = {
        "command": command,
        "machine": info,
        "params": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "seconds": round(seconds, 1),
        "rows": rows,
        "checks": checks,
        "markdown": markdown,
    }
    return markdown, raw


def begin(prog: str, verbose: bool) -> str:
    """What every benchmark command does first: logging, SIGTERM as an exit (so that every
    process it started is stopped), the open-file limit; returns its command line."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s bench %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
    )
    signal.signal(signal.SIGTERM, _on_sigterm)
    _raise_fd_limit()
    return " ".join([prog, *(shlex.quote(a) for a in sys.argv[1:])])


def measure_all(bench: Bench, work: Callable[[], None]) -> dict[str, Any] | None:
    """The machine's facts, then ``work`` with the fake upstream up; every process and
    Redis key of the run gone afterwards, whatever happens. None when Redis is down."""
    try:
        info = machine(bench.redis)
    except redis.RedisError as exc:
        log.error("no Redis at %s: %s", bench.args.redis_url, exc)
        return None
    bench.redis_pid = int(info.get("redis_pid") or 0)
    started = time.monotonic()
    try:
        bench.start_upstream()
        work()
    finally:
        bench.procs.stop_all()
        with contextlib.suppress(redis.RedisError):
            bench.cleanup_redis()
    info["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    info["seconds"] = time.monotonic() - started
    return info


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = begin("python -m bench.run", args.verbose)
    bench = Bench(args)

    def every_variant() -> None:
        for variant in variants(args):
            bench.run_variant(variant)

    info = measure_all(bench, every_variant)
    if info is None:
        return 2
    markdown, raw = render(bench, info, command, info["seconds"])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.md").write_text(markdown)
    (args.out / "latest.json").write_text(json.dumps(raw, indent=2) + "\n")
    print(markdown)
    log.info("written %s and latest.json", args.out / "latest.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
