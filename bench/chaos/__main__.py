"""The chaos soak: ``python -m bench.chaos --seconds 600 --seed N`` (docs/reliability.md).

A steady mixed load (``bench.chaos.load``) through two gateways and two workers on a Redis
of the soak's own, while a seeded schedule of overlapping faults (``bench.chaos.faults``)
kills, stops and pauses them and disturbs the upstream. After each fault ends, a probe job
through each gateway measures how long until the deployment answers again. When the load
has stopped and the last fault has ended, every job is checked (``bench.chaos.checks``).
Prints the schedule first (so a failure can be replayed with the same seed), then jobs,
faults by kind, violations (must be 0) and recovery time p50/p99; writes them as JSON with
``--out``. Exits 1 when any invariant was violated.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.chaos.checks import Verdict, WorkerLog, check
from bench.chaos.faults import Fault, FaultRunner, schedule
from bench.chaos.load import KINDS, Client, Session
from bench.chaos.stack import SoakSettings, Stack

log = logging.getLogger("bench.chaos")
DRAIN_BOUND = 120.0  # seconds after the last fault within which every job must have ended


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=60.0, help="length of the load (60)")
    p.add_argument("--seed", type=int, default=1, help="seeds the faults and the load (1)")
    p.add_argument("--rate", type=float, default=12.0, help="new jobs per second (12)")
    p.add_argument("--fault-gap", type=float, default=2.5, help="mean seconds between faults (2.5)")
    p.add_argument("--out", type=Path, help="write the results as JSON here")
    p.add_argument("--workdir", type=Path, help="logs and Redis files (default: a temp dir)")
    p.add_argument("-v", "--verbose", action="store_true", help="log every fault and probe")
    return p.parse_args(argv)


class Soak:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.settings = SoakSettings()
        self.stack = Stack(workdir, self.settings)
        self.faults = schedule(args.seed, args.seconds, args.fault_gap)
        self.sessions: list[Session] = []
        self.probes: dict[int, list[Session]] = {}  # fault index -> its probes
        self.lock = threading.Lock()
        self.pool = ThreadPoolExecutor(max_workers=256, thread_name_prefix="client")
        self.client: Client | None = None

    def session(self, kind: str, gateway: int, pinned: bool = False) -> Session:
        with self.lock:
            n = len(self.sessions)
            session = Session(kind, f"{self.args.seed}-{n}", seed=self.args.seed * 100_003 + n,
                              gateway=gateway, pinned=pinned)  # fmt: skip
            self.sessions.append(session)
        assert self.client is not None
        self.pool.submit(self.client.run, session)
        return session

    def burst(self, count: int) -> None:
        for i in range(count):
            self.session("plain", i % 2)

    def probe(self, fault: Fault) -> None:
        """After a fault: a fresh job through each gateway, to time the recovery."""
        index = self.faults.index(fault)
        self.probes[index] = [self.session("probe", g, pinned=True) for g in range(2)]

    def run(self) -> dict[str, Any]:
        print(f"chaos soak: seed {self.args.seed}, {self.args.seconds:.0f} s, "
              f"{self.args.rate:g} jobs/s, {len(self.faults)} faults scheduled:")  # fmt: skip
        for fault in self.faults:
            print("  " + fault.describe())
        self.stack.start_all()
        deadline = time.monotonic() + 60
        while not self.stack.ready():
            if time.monotonic() > deadline:
                raise RuntimeError("the stack never became ready")
            time.sleep(0.2)
        self.client = Client([g.url for g in self.stack.gateways])
        stop = threading.Event()
        runner = FaultRunner(self.stack, self.faults, self.probe, self.burst)
        t0 = time.monotonic()
        scheduler = threading.Thread(target=runner.run, args=(t0, stop), daemon=True)
        scheduler.start()
        rng = random.Random(self.args.seed * 7919)
        kinds = [k for k in KINDS if KINDS[k][0] > 0]
        weights = [KINDS[k][0] for k in kinds]
        while time.monotonic() - t0 < self.args.seconds:
            time.sleep(rng.expovariate(self.args.rate))
            self.session(rng.choices(kinds, weights)[0], rng.randrange(2))
        load_ended = time.monotonic()
        scheduler.join()
        runner.join(120)
        last_fault_end = max([f.ended for f in self.faults if f.ended] or [load_ended])
        finals = [self.session("probe", g, pinned=True) for g in range(2)]
        self.pool.shutdown(wait=True)
        return self.report(t0, last_fault_end, finals)

    def report(self, t0: float, last_fault_end: float, finals: list[Session]) -> dict[str, Any]:
        assert self.client is not None
        polls = {s.job_id: self.client.poll(s.job_id) for s in self.sessions if s.job_id}
        worker_log = WorkerLog.read(self.stack.worker_logs())
        verdict = check(self.sessions, list(self.stack.upstream.requests), worker_log,
                        self.faults, polls)  # fmt: skip
        ended = [s.finished for s in self.sessions if s.finished]
        drain = max(ended, default=last_fault_end) - last_fault_end
        if drain > DRAIN_BOUND:
            verdict.violations.append(f"the last job ended {drain:.0f}s after the last fault")
        for final in finals:
            if final.terminal is None or final.terminal.event != "done":
                verdict.violations.append(f"a fresh job through gateway {final.gateway} failed")
        recovery: list[tuple[Fault, float]] = []
        for index, probes in self.probes.items():
            fault = self.faults[index]
            if fault.ended and all(p.finished for p in probes):
                took = max(p.finished for p in probes if p.finished) - fault.ended
                recovery.append((fault, took))
        return summarize(self, verdict, worker_log, recovery, drain)


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


def summarize(soak: Soak, verdict: Verdict, worker_log: WorkerLog,
              recovered: list[tuple[Fault, float]], drain: float) -> dict[str, Any]:  # fmt: skip
    sessions = soak.sessions
    recovery = [took for _fault, took in recovered]
    faults: Counter[str] = Counter()
    skipped: Counter[str] = Counter()
    for fault in soak.faults:
        (skipped if fault.skipped or fault.error else faults)[fault.kind] += 1
    answers: Counter[str] = Counter()
    for s in sessions:
        answers.update(s.answers)
    return {
        "seed": soak.args.seed,
        "seconds": soak.args.seconds,
        "rate": soak.args.rate,
        "settings": soak.settings.__dict__,
        "jobs": len([s for s in sessions if s.job_id]),
        "sessions_by_kind": dict(Counter(s.kind for s in sessions)),
        "terminals": dict(verdict.terminals),
        "errors_explained_by_faults": dict(verdict.explained_errors),
        "faults": dict(faults),
        "faults_skipped": dict(skipped),
        "fault_errors": [f"{f.describe()}: {f.error}" for f in soak.faults if f.error],
        "violations": verdict.violations,
        "recovery_s": {"p50": _quantile(recovery, 0.5), "p99": _quantile(recovery, 0.99),
                       "max": max(recovery, default=None), "faults": len(recovery)},
        "recovery_by_fault": [f"{f.describe()} -> {f.target}: {took:.2f} s"
                              for f, took in recovered],
        "last_job_after_last_fault_s": round(drain, 1),
        "reconnects": sum(s.reconnects for s in sessions),
        "resets": sum(1 for s in sessions for e in s.received if e.event == "reset"),
        "answers": dict(answers),
        "worker_log": dict(worker_log.counts),
        "texts_matched_without_log_line": verdict.unmapped,
        "violating_sessions": [_details(s) for s in verdict.failed[:50]],
    }  # fmt: skip


def _details(session: Session) -> dict[str, Any]:
    """What a violating job's client saw, to start the investigation from."""
    return {
        "kind": session.kind, "tag": session.tag, "job": session.job_id,
        "events": [f"{e.id} {e.event} {json.dumps(e.data, ensure_ascii=False)[:160]}"
                   for e in session.received],
        "answers": dict(session.answers), "reconnects": session.reconnects,
        "cancel": session.cancel, "sdk_text": session.sdk_text, "sdk_error": session.sdk_error,
    }  # fmt: skip


def print_report(result: dict[str, Any]) -> None:
    r = result["recovery_s"]

    def s(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    kinds = ", ".join(f"{k} {v}" for k, v in sorted(result["sessions_by_kind"].items()))
    print(f"\njobs: {result['jobs']} ({kinds})")
    print(f"outcomes: {', '.join(f'{k} {v}' for k, v in sorted(result['terminals'].items()))}")
    print(f"faults: {sum(result['faults'].values())} "
          f"({', '.join(f'{k} {v}' for k, v in sorted(result['faults'].items()))})")  # fmt: skip
    if result["faults_skipped"]:
        print(f"faults skipped: {result['faults_skipped']}")
    print(f"recovery after a fault (probe through both gateways): p50 {s(r['p50'])} s, "
          f"p99 {s(r['p99'])} s, max {s(r['max'])} s over {r['faults']} faults")  # fmt: skip
    print(f"last job ended {result['last_job_after_last_fault_s']} s after the last fault; "
          f"{result['reconnects']} reconnects, {result['resets']} resets")  # fmt: skip
    print(f"violations: {len(result['violations'])}")
    for violation in result["violations"][:30]:
        print(f"  - {violation}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="sluice-chaos-"))
    soak = Soak(args, workdir)
    try:
        result = soak.run()
    finally:
        if soak.client is not None:
            soak.client.close()
        soak.stack.stop()
    result["workdir"] = str(workdir)
    print_report(result)
    print(f"logs: {workdir / 'logs'}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2, default=str))
    return 1 if result["violations"] or result["fault_errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
