"""The fault schedule: drawn from a seed before the run starts, printed, and carried out
while the load runs, each fault in its own thread so that faults overlap.

A process fault that finds its target already down (a worker still restarting after the
previous kill) takes the other one, or is skipped and reported as such; so is a Redis
fault while Redis is down or paused. A fault "ends" when what it broke is back: the
process restarted and serving, Redis answering, the upstream's window over.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.chaos.stack import Member, Stack

log = logging.getLogger("bench.chaos")
BURST = 25

# kind: (weight, shortest, longest duration in seconds); what each kind does is in _apply
KINDS: dict[str, tuple[float, float, float]] = {
    "worker_kill": (3, 1.0, 3.0),  # SIGKILL, restarted after the duration
    # 25 jobs at once, and a worker SIGKILLed while they arrive (some taken, not claimed)
    "burst_worker_kill": (1.5, 1.0, 3.0),
    "worker_term": (2, 0.5, 2.0),  # SIGTERM (hand-back), restarted after it exits
    "gateway_kill": (2, 0.5, 2.0),
    "gateway_term": (2, 0.5, 1.5),  # SIGTERM (drain)
    "redis_kill": (1.5, 0.3, 1.7),  # SIGKILL, restarted from its append-only file
    "redis_pause": (1.5, 1.0, 3.0),  # SIGSTOP, shorter than the outage tolerance
    "redis_pause_long": (1, 6.0, 8.0),  # longer than the outage tolerance (5 s)
    "upstream_stall": (1.5, 1.0, 3.0),  # every stream silent, shorter than the read timeout
    "upstream_stall_long": (1, 6.0, 8.0),  # longer than the read timeout (5 s)
    "upstream_disconnect": (2, 0.0, 0.0),  # every open stream cut at once
    "upstream_429": (1.5, 1.0, 4.0),  # every request refused for a while
    "upstream_500": (1.5, 1.0, 4.0),
    "upstream_no_done": (1, 3.0, 6.0),  # streams end without [DONE]
}


@dataclass
class Fault:
    at: float  # seconds after the load started
    kind: str
    duration: float
    pick: int  # which of two targets, for process faults
    started: float | None = None  # monotonic times, once carried out
    ended: float | None = None
    target: str = ""
    skipped: str = ""  # why it was not carried out
    error: str = ""

    def describe(self) -> str:
        return f"t={self.at:6.2f}s {self.kind:<20} {self.duration:4.1f}s pick={self.pick}"


def schedule(seed: int, seconds: float, mean_gap: float, warmup: float = 4.0,
             quiet_end: float = 8.0) -> list[Fault]:  # fmt: skip
    """The faults of a run, from its seed alone."""
    rng = random.Random(seed)
    kinds = list(KINDS)
    weights = [KINDS[k][0] for k in kinds]
    faults: list[Fault] = []
    t = warmup
    while True:
        t += rng.expovariate(1 / mean_gap)
        if t > seconds - quiet_end:
            return faults
        kind = rng.choices(kinds, weights)[0]
        _, shortest, longest = KINDS[kind]
        duration = round(rng.uniform(shortest, longest), 2)
        faults.append(Fault(round(t, 2), kind, duration, rng.randrange(2)))


@dataclass
class FaultRunner:
    """Carries out a schedule against a stack; ``on_end`` is told when each fault ended."""

    stack: Stack
    faults: list[Fault]
    on_end: Callable[[Fault], None]
    burst: Callable[[int], None]  # start this many jobs at once
    threads: list[threading.Thread] = field(default_factory=list)

    def run(self, t0: float, stop: threading.Event) -> None:
        for fault in self.faults:
            if stop.wait(max(0.0, t0 + fault.at - time.monotonic())):
                return
            thread = threading.Thread(target=self._carry_out, args=(fault,), daemon=True)
            thread.start()
            self.threads.append(thread)

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _carry_out(self, fault: Fault) -> None:
        fault.started = time.monotonic()
        try:
            self._apply(fault)
        except Exception as exc:  # a fault that could not be carried out is reported
            fault.error = f"{type(exc).__name__}: {exc}"
            log.exception("fault %s failed", fault.describe())
        fault.ended = time.monotonic()
        if not fault.skipped:
            log.info("fault ended after %.1fs: %s %s", fault.ended - fault.started,
                     fault.kind, fault.target)  # fmt: skip
            self.on_end(fault)

    def _member(self, members: list[Member], fault: Fault) -> Member | None:
        """The picked member, or the other one if it is down; None if both are."""
        for member in (members[fault.pick], members[1 - fault.pick]):
            if member.lock.acquire(blocking=False):
                if member.up:
                    return member
                member.lock.release()
        return None

    def _apply(self, fault: Fault) -> None:
        stack, kind, d = self.stack, fault.kind, fault.duration
        if kind.startswith(("worker", "gateway", "burst")):
            members = stack.gateways if kind.startswith("gateway") else stack.workers
            member = self._member(members, fault)
            if member is None:
                fault.skipped = "both targets down"
                return
            fault.target = member.name
            log.info("fault: %s %s for %.1fs", kind, member.name, d)
            try:
                if kind == "burst_worker_kill":
                    self.burst(BURST)
                    time.sleep(0.05 + (fault.at * 1000 % 200) / 1000)  # while they arrive
                if kind.endswith("_kill"):
                    stack.kill(member)
                else:
                    stack.terminate(member)
                time.sleep(d)
            finally:
                member.lock.release()
            stack.start(member)
        elif kind.startswith("redis"):
            if stack.redis_down.is_set():
                fault.skipped = "Redis already down"
                return
            stack.redis_down.set()
            fault.target = "redis"
            log.info("fault: %s for %.1fs", kind, d)
            try:
                if kind == "redis_kill":
                    stack.redis.kill()
                    time.sleep(d)
                    stack.redis.start(timeout=60)
                else:
                    stack.redis.pause()
                    time.sleep(d)
                    stack.redis.resume()
            finally:
                stack.redis_down.clear()
        else:
            fault.target = "upstream"
            log.info("fault: %s for %.1fs", kind, d)
            upstream = stack.upstream
            if kind.startswith("upstream_stall"):
                upstream.disruptions.stall(d)
            elif kind == "upstream_disconnect":
                fault.target = f"upstream ({upstream.cut_streams()} streams)"
            elif kind in ("upstream_429", "upstream_500"):
                upstream.disruptions.refuse("http-" + kind.rsplit("_", 1)[1], d)
            elif kind == "upstream_no_done":
                upstream.disruptions.omit_done(d)
            time.sleep(d)
