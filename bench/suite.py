"""The benchmark's targets, one command: ``make bench`` (``python -m bench.suite``).

Each scenario runs the systems it compares side by side in one run, on one machine, and
each target is a ratio or a bound inside that run (the VM's speed varies from run to run,
so figures are never compared across runs). docs/performance.md says what each measures.

1. ``long``: 10,000 concurrent slow streams (1 delta/s for 60 s, like open chat tabs) on
   one gateway process: Sluice, the direct proxy and the peer at the same N.
2. ``burst``: N=1,000 streams of 100 deltas at 10/s, all submitted at once: Sluice, the
   direct proxy, flask-sse and the peer.
3. ``small``: N=1 (TTFD, ten alternating runs) and N=100 (per-delta p99, five alternating
   runs), Sluice against the direct proxy.
4. ``tokens``: 200 streams of one token per delta at 50 tokens/s for 20 s.
5. ``late``: 100 clients join a finished 4,000-delta answer at once, and 100 join a
   running one, replaying every delta or with ``?snapshot=1``; the peer joins a running
   one (it cannot join a finished one).
7. CPU-µs per delta of the gateway, the worker and Redis in each run, and a py-spy
   profile of Sluice's gateway and worker in a second, unmeasured burst
   (``bench/profile.py``: the profiler's own CPU would slow the measured one).

The results go to ``bench/results/latest.md`` and ``latest.json`` (raw figures, profiles).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench import targets
from bench.procs import BenchError
from bench.run import RESULTS, Bench, begin, measure_all
from bench.systems import PEER, ROOT, Stack, Variant, start_stack

log = logging.getLogger("bench")
SCENARIOS = ("small", "burst", "tokens", "late", "long")
SLUICE = Variant("sluice")
DIRECT = Variant("direct")
FLASK_SSE = Variant("flask-sse")
PEER_VARIANT = Variant(PEER)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.suite", description=__doc__.split("\n")[0])
    p.add_argument(
        "--scenarios", default=",".join(SCENARIOS),
        help=f"which to run, in this order: {','.join(SCENARIOS)}",
    )  # fmt: skip
    p.add_argument("--long-n", type=int, default=10_000, help="streams in `long` (10000)")
    p.add_argument("--long-seconds", type=int, default=60, help="length of a `long` stream")
    p.add_argument("--runs", type=int, default=5, help="alternating N=100 runs in `small`")
    p.add_argument("--no-profile", action="store_true", help="no py-spy in `burst`")
    p.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                   help="a setting for the systems under test (repeatable)")  # fmt: skip
    p.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [s for s in args.scenarios if s not in SCENARIOS]
    if unknown:
        p.error(f"unknown scenario(s) {unknown}: choose from {', '.join(SCENARIOS)}")
    # what bench.run.Bench reads
    args.warmup, args.timeout, args.profile = 5, 120.0, False
    args.deltas, args.interval = 100, 0.1
    return args


class Suite(Bench):
    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(args)
        self.results: dict[str, Any] = {}

    # -- the pieces -------------------------------------------------------------------------

    def stack(self, variant: Variant, *, concurrency: int = 1000, connections: int = 2000) -> Stack:
        assert self.ctx is not None
        ctx = self.ctx
        extra = (("SLUICE_WORKER_CONNECTIONS", str(connections)),)
        self.ctx = type(ctx)(ctx.run_id, ctx.redis_url, ctx.upstream_url, ctx.extra_env + extra)
        try:
            stack = start_stack(variant, self.ctx, self.procs, concurrency=concurrency)
        finally:
            self.ctx = ctx
        self.warm_up(stack)
        return stack

    def stop(self, *stacks: Stack) -> None:
        for stack in stacks:
            for proc in (stack.gateway, stack.worker):
                if proc is not None:
                    self.procs.stop(proc)

    def run_once(
        self, stack: Stack, n: int, deltas: int, interval: float, timeout: float, *,
        join: tuple[str, ...] = (), profile: bool = False, label: str | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """One client run, measured (``Bench.observe``), as a row of the report."""
        summary, resources, prof = self.observe(
            stack, n, deltas, interval, timeout, join=join, profile=profile, name=label
        )
        row: dict[str, Any] = {
            "label": stack.variant.label, "system": stack.variant.system, "n": n,
            "deltas": deltas, "interval": interval, "client": summary,
            "resources": resources, "upstream_stats": self._upstream("/bench/stats"),
            "error": None,
        }  # fmt: skip
        if prof:
            row["profile"] = prof
        row["cpu_us_per_delta"] = targets.cpu_per_delta(row)
        self._log_row(row)
        self._settle()
        return row

    def failed_row(self, variant: Variant, n: int, why: str) -> dict[str, Any]:
        log.error("%s N=%d: %s", variant.label, n, why.splitlines()[0] if why else why)
        return {"label": variant.label, "system": variant.system, "n": n, "error": why}

    # -- the scenarios ----------------------------------------------------------------------

    def small(self) -> None:
        """N=1 ten times and N=100 ``--runs`` times, Sluice and direct alternating."""
        stacks = [self.stack(SLUICE), self.stack(DIRECT)]
        try:
            ones: dict[str, list[Any]] = {s.variant.label: [] for s in stacks}
            for i in range(10):
                for stack in stacks if i % 2 == 0 else stacks[::-1]:
                    row = self.run_once(stack, 1, 10, 0.05, 30, label=f"1-{i}")
                    ones[stack.variant.label].append(row)
            hundreds: dict[str, list[Any]] = {s.variant.label: [] for s in stacks}
            for i in range(self.args.runs):
                for stack in stacks if i % 2 == 0 else stacks[::-1]:
                    row = self.run_once(stack, 100, 50, 0.1, 60, label=f"100-{i}")
                    hundreds[stack.variant.label].append(row)
            self.results["small"] = {"n1": ones, "n100": hundreds}
        finally:
            self.stop(*stacks)

    def burst(self) -> None:
        rows = []
        for variant in (SLUICE, DIRECT, FLASK_SSE, PEER_VARIANT):
            try:
                stack = self.stack(variant)
            except BenchError as exc:
                rows.append(self.failed_row(variant, 1000, f"start failed: {exc}"))
                continue
            try:
                rows.append(self.run_once(stack, 1000, 100, 0.1, 120))
                if variant is SLUICE and not self.args.no_profile:
                    # py-spy takes CPU from the two cores: a run of its own, not measured
                    profiled = self.run_once(stack, 1000, 100, 0.1, 120, profile=True,
                                             label="1000-profiled")  # fmt: skip
                    self.results["profile"] = profiled.get("profile")
                    self.results["profiled_run"] = {
                        k: profiled.get(k) for k in ("client", "resources", "cpu_us_per_delta")
                    }
            except BenchError as exc:
                rows.append(self.failed_row(variant, 1000, str(exc)))
            finally:
                self.stop(stack)
        self.results["burst"] = rows

    def tokens(self) -> None:
        rows = []
        for variant in (SLUICE, DIRECT):
            stack = self.stack(variant)
            try:
                rows.append(self.run_once(stack, 200, 1000, 0.02, 120, label="tokens"))
            finally:
                self.stop(stack)
        self.results["tokens"] = rows

    def late(self) -> None:
        """Late joiners on Sluice (replay and snapshot; finished and running) and the peer."""
        out: dict[str, Any] = {}
        stack = self.stack(SLUICE)
        try:
            finished = self._sluice_job(stack, "bench;deltas=4000;interval=0")
            self._wait_job(stack, finished, ended=True)
            for mode, query in (("replay", ""), ("snapshot", "?snapshot=1")):
                join = (f"/v1/jobs/{finished}/events{query}",)
                out[f"finished-{mode}"] = self.run_once(
                    stack, 100, 4000, 0, 120, join=join, label=f"late-finished-{mode}"
                )
            for mode, query in (("replay", ""), ("snapshot", "?snapshot=1")):
                running = self._sluice_job(stack, "bench;deltas=4000;interval=0.005")
                self._wait_job(stack, running, at_least=2000)
                join = (f"/v1/jobs/{running}/events{query}",)
                row = self.run_once(
                    stack, 100, 4000, 0, 120, join=join, label=f"late-running-{mode}"
                )
                out[f"running-{mode}"] = row
        finally:
            self.stop(stack)
        out.update(self._late_peer())
        self.results["late"] = out

    def _late_peer(self) -> dict[str, Any]:
        try:
            stack = self.stack(PEER_VARIANT)
        except BenchError as exc:
            return {"peer-running": self.failed_row(PEER_VARIANT, 100, f"start failed: {exc}")}
        out: dict[str, Any] = {}
        try:
            # the peer's answer exists only while its first request reads it: a producer
            # client reads it, and the joiners join halfway through
            stream_id = f"late-{self.run_id}"
            producer = self._background_post(
                stack, stream_id, "bench;deltas=4000;interval=0.005", seconds=60
            )
            time.sleep(10)
            join = (f"/chat/{stream_id}",)
            out["peer-running"] = self.run_once(
                stack, 100, 4000, 0, 120, join=join, label="late-running-peer"
            )
            with contextlib.suppress(subprocess.TimeoutExpired):
                producer.wait(30)
            finished = self.client(stack, 1, 4000, 0, 30, join=join, name="late-finished-peer")
            out["peer-finished"] = {"label": PEER, "system": PEER, "n": 1, "client": finished,
                                    "error": None}  # fmt: skip
        finally:
            self.stop(stack)
        return out

    def long(self) -> None:
        n, seconds = self.args.long_n, self.args.long_seconds
        rows = []
        for variant in (SLUICE, DIRECT, PEER_VARIANT):
            try:
                stack = self.stack(variant, concurrency=n, connections=n + 500)
            except BenchError as exc:
                rows.append(self.failed_row(variant, n, f"start failed: {exc}"))
                continue
            try:
                timeout = seconds + 180.0
                rows.append(self.run_once(stack, n, seconds, 1.0, timeout, label="long"))
            except BenchError as exc:
                rows.append(self.failed_row(variant, n, str(exc)))
            finally:
                self.stop(stack)
        self.results["long"] = rows

    # -- helpers ----------------------------------------------------------------------------

    def _sluice_job(self, stack: Stack, model: str) -> str:
        body = {"model": model, "messages": [{"role": "user", "content": "x"}]}
        request = urllib.request.Request(
            stack.base_url + "/v1/jobs", data=json.dumps(body).encode(), method="POST",
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=10) as response:
            return str(json.loads(response.read())["id"])

    def _wait_job(
        self, stack: Stack, job_id: str, *, ended: bool = False, at_least: int = 0
    ) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with urllib.request.urlopen(f"{stack.base_url}/v1/jobs/{job_id}", timeout=10) as r:
                job = json.loads(r.read())
            if ended and job["status"] in ("succeeded", "failed", "cancelled"):
                return
            if not ended and job["last_event_id"] >= at_least:
                return
            time.sleep(0.05)
        raise BenchError(f"job {job_id} did not get there within 120 s")

    def _background_post(
        self, stack: Stack, stream_id: str, model: str, seconds: float
    ) -> subprocess.Popen[bytes]:
        """A client process reading ``POST /chat`` (with this id) to its end."""
        code = (
            "import json, sys, urllib.request;"
            f"body = json.dumps({{'id': {stream_id!r}, 'model': {model!r},"
            " 'messages': [{'role': 'user', 'content': 'x'}]}).encode();"
            f"r = urllib.request.urlopen(urllib.request.Request({stack.base_url + '/chat'!r},"
            " data=body, headers={'Content-Type': 'application/json'}),"
            f" timeout={seconds});"
            "sys.stdout.write(str(len(r.read())))"
        )
        return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT,
                                stdout=subprocess.DEVNULL, start_new_session=True)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = begin("python -m bench.suite", args.verbose)
    suite = Suite(args)

    def every_scenario() -> None:
        for name in args.scenarios:
            log.info("=== scenario %s", name)
            try:
                getattr(suite, name)()
            except BenchError as exc:
                log.error("scenario %s failed: %s", name, exc)
                suite.results.setdefault("errors", {})[name] = str(exc)

    info = measure_all(suite, every_scenario)
    if info is None:
        return 2
    seconds = info["seconds"]
    markdown = targets.render(suite.results, info, command, seconds)
    args.out.mkdir(parents=True, exist_ok=True)
    raw = {"command": command, "machine": info, "seconds": round(seconds, 1),
           "results": suite.results, "markdown": markdown}  # fmt: skip
    (args.out / "latest.md").write_text(markdown)
    (args.out / "latest.json").write_text(json.dumps(raw, indent=2, default=str) + "\n")
    print(markdown)
    log.info("written %s and latest.json", args.out / "latest.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
