"""The load client: N concurrent SSE streams against one system, with asyncio + aiohttp.

Runs in its own process (``python -m bench.client --spec JSON --out FILE``), spawned by
``bench.run``, and writes a JSON summary. All N streams start at once. Per stream it
records the time from its first request to its first delta (TTFD), each delta's latency
(receive wall time minus the emit time the upstream wrote into the delta), the deltas
received, and what went wrong: a non-2xx answer, a missing or repeated delta, a stream
that ended without ``done``, an exception, or the run's deadline.

How each system is driven:

``sluice``     ``POST /v1/jobs`` with ``"stream": true``: the answer is the job's event
               stream (``requests`` 1, the default); or ``POST /v1/jobs`` (202) then
               ``GET`` its ``events_url`` (``requests`` 2, what an EventSource client does).
``direct``     ``POST /chat``: the answer is the stream (also ``resumable-stream``, the
               peer, whose Node server has the same route).
``flask-sse``  ``GET /stream?channel=<id>`` first (flask-sse keeps no history), then
               ``POST /start`` (202 once the subscription is seen in Redis); the client
               closes the stream after ``done``, since flask-sse never ends it.

With ``join`` (late joiners), no job is started: each stream opens one of those URLs
(``GET``) on a job that exists already, finished or running, and reads it to its end;
a ``snapshot`` event (Sluice's ``?snapshot=1``) counts the deltas its text holds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import sys
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp
import uvloop

SYSTEMS = ("sluice", "direct", "flask-sse", "resumable-stream")
TERMINAL_FAILURES = ("error", "cancelled")


@dataclass(frozen=True)
class Spec:
    system: str
    base_url: str
    n: int
    deltas: int
    interval: float
    timeout: float
    requests: int = 1  # sluice: 1 = POST with "stream": true, 2 = POST then GET events_url
    join: tuple[str, ...] = ()  # late joiners: URL paths to GET (stream i opens join[i % k])

    @property
    def model(self) -> str:
        return f"bench;deltas={self.deltas};interval={self.interval:g}"


@dataclass
class StreamResult:
    t0: float = 0.0
    accepted: float | None = None  # the job-starting request answered (sluice, flask-sse)
    opened: float | None = None  # the SSE response's headers arrived
    started: float | None = None  # Sluice's `started` event arrived (a worker claimed it)
    first_delta: float | None = None
    last_delta: float | None = None
    seqs: set[int] = field(default_factory=set)
    duplicates: int = 0
    terminal: str | None = None
    ended: float | None = None  # the terminal event arrived (time to last byte)
    resets: int = 0  # Sluice's `reset` events (the job restarted: what came before is void)
    caught_up: float | None = None  # the first delta written after t0 arrived (live)
    bytes: int = 0
    error: str | None = None


def _stage(res: StreamResult) -> str:
    """How far a stream got, for a timeout's message."""
    if res.opened is None:
        return "job accepted, stream not open" if res.accepted else "no answer yet"
    return f"stream open, {len(res.seqs)} deltas received"


class SSEReader:
    """Minimal incremental SSE parsing: (event type, data) per dispatched block."""

    def __init__(self) -> None:
        self.buffer = b""

    def feed(self, data: bytes) -> list[tuple[str, bytes]]:
        self.buffer += data
        *blocks, self.buffer = self.buffer.split(b"\n\n")
        out: list[tuple[str, bytes]] = []
        for block in blocks:
            event, lines = "message", []
            for line in block.split(b"\n"):
                if not line or line.startswith(b":"):
                    continue
                name, _, value = line.partition(b":")
                if value.startswith(b" "):
                    value = value[1:]
                if name == b"event":
                    event = value.decode()
                elif name == b"data":
                    lines.append(value)
            if lines:
                out.append((event, b"\n".join(lines)))
        return out


class Run:
    def __init__(self, spec: Spec, session: aiohttp.ClientSession) -> None:
        self.spec = spec
        self.session = session
        self.latencies: list[float] = []
        self.received: list[float] = []  # receive time of each latency sample
        self.body = {"model": spec.model, "messages": [{"role": "user", "content": "x"}]}
        self.started = 0  # late joiners opened so far

    # -- one stream -----------------------------------------------------------------------

    async def stream(self, res: StreamResult) -> None:
        res.t0 = time.time()
        try:
            if self.spec.join:
                await self._join(res)
            elif self.spec.system == "sluice":
                await self._sluice(res)
            elif self.spec.system in ("direct", "resumable-stream"):
                await self._direct(res)
            else:
                await self._flask_sse(res)
        except asyncio.CancelledError:
            res.error = res.error or f"timeout: the run's deadline passed ({_stage(res)})"
            raise
        except Exception as exc:
            res.error = res.error or f"exception: {type(exc).__name__}: {exc}"[:300]
        if res.error is None:
            missing = self.spec.deltas - len(res.seqs)
            if missing or res.duplicates:
                res.error = f"deltas: {missing} missing, {res.duplicates} repeated"

    async def _sluice(self, res: StreamResult) -> None:
        base = self.spec.base_url
        if self.spec.requests == 1:
            body = {**self.body, "stream": True}
            async with self.session.post(f"{base}/v1/jobs", json=body) as r:
                res.accepted = time.time()
                await self._read(r, res, "POST /v1/jobs (stream)")
            return
        async with self.session.post(f"{base}/v1/jobs", json=self.body) as r:
            if r.status != 202:
                res.error = f"http {r.status} on POST /v1/jobs: {(await r.text())[:200]}"
                return
            job = await r.json()
            res.accepted = time.time()
        headers = {"Accept": "text/event-stream"}
        async with self.session.get(f"{base}{job['events_url']}", headers=headers) as r:
            await self._read(r, res, "GET events")

    async def _join(self, res: StreamResult) -> None:
        path = self.spec.join[self.started % len(self.spec.join)]
        self.started += 1
        headers = {"Accept": "text/event-stream"}
        async with self.session.get(f"{self.spec.base_url}{path}", headers=headers) as r:
            await self._read(r, res, f"GET {path.split('?')[0]}")

    async def _direct(self, res: StreamResult) -> None:
        async with self.session.post(f"{self.spec.base_url}/chat", json=self.body) as r:
            await self._read(r, res, "POST /chat")

    async def _flask_sse(self, res: StreamResult) -> None:
        base, channel = self.spec.base_url, uuid.uuid4().hex
        opening = asyncio.ensure_future(
            self.session.get(f"{base}/stream", params={"channel": channel})
        )
        try:
            start = {"channel": channel, "model": self.spec.model}
            async with self.session.post(f"{base}/start", json=start) as r:
                if r.status != 202:
                    res.error = f"http {r.status} on POST /start: {(await r.text())[:200]}"
                    return
                res.accepted = time.time()
            response = await opening
            try:
                await self._read(response, res, "GET /stream")
            finally:
                response.close()  # flask-sse never ends a stream: hang up after done
        finally:
            if not opening.done():
                opening.cancel()
            with contextlib.suppress(BaseException):
                (await opening).close()

    async def _read(self, r: aiohttp.ClientResponse, res: StreamResult, what: str) -> None:
        res.opened = time.time()
        if r.status != 200:
            res.error = f"http {r.status} on {what}: {(await r.text())[:200]}"
            return
        reader = SSEReader()
        async for data in r.content.iter_any():
            received = time.time()
            res.bytes += len(data)
            for event, payload in reader.feed(data):
                if event == "delta":
                    self._delta(res, payload, received)
                elif event == "started" and res.started is None:
                    res.started = received
                elif event == "reset":  # the protocol: discard everything so far
                    res.resets += 1
                    res.seqs.clear()
                elif event == "snapshot":
                    self._snapshot(res, payload, received)
                elif event == "done":
                    res.terminal, res.ended = "done", received
                    return
                elif event in TERMINAL_FAILURES:
                    res.terminal = event
                    res.error = f"{event} event: {payload[:200].decode(errors='replace')}"
                    return
        res.error = "stream ended without a terminal event"

    def _snapshot(self, res: StreamResult, payload: bytes, received: float) -> None:
        """The text so far as one event: its deltas count, not their latency (they were
        written before the stream was opened)."""
        for choice in json.loads(payload).get("choices") or ():
            text = choice.get("content") or choice.get("text") or ""
            for piece in text.split("|"):
                if piece:
                    seq = int(piece.partition(":")[0])
                    res.duplicates += seq in res.seqs
                    res.seqs.add(seq)
        if res.first_delta is None:
            res.first_delta = received
        res.last_delta = received

    def _delta(self, res: StreamResult, payload: bytes, received: float) -> None:
        content = json.loads(payload).get("content") or ""
        for piece in content.split("|"):
            if not piece:
                continue
            seq, _, emitted = piece.partition(":")
            if res.caught_up is None and float(emitted) >= res.t0:
                res.caught_up = received
            self.latencies.append(received - float(emitted))
            self.received.append(received)
            if int(seq) in res.seqs:
                res.duplicates += 1
            res.seqs.add(int(seq))
        if res.first_delta is None:
            res.first_delta = received
        res.last_delta = received

    # -- the run --------------------------------------------------------------------------

    async def run(self) -> list[StreamResult]:
        results = [StreamResult() for _ in range(self.spec.n)]
        tasks = [asyncio.ensure_future(self.stream(res)) for res in results]
        _done, pending = await asyncio.wait(tasks, timeout=self.spec.timeout)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        return results


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of unsorted values; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 3)


def summarise(spec: Spec, results: list[StreamResult], run: Run) -> dict[str, Any]:
    latencies = run.latencies
    ttfd = [r.first_delta - r.t0 for r in results if r.first_delta is not None]
    # steady state: deltas received once every stream had its first delta (start burst over)
    all_open = max((r.first_delta for r in results if r.first_delta is not None), default=0.0)
    steady = [lat for lat, t in zip(latencies, run.received, strict=True) if t > all_open]
    failed = [r for r in results if r.error is not None]
    reasons = Counter(r.error.split(":")[0] for r in failed if r.error)
    starts = [r.t0 for r in results if r.t0]
    ends = [r.last_delta for r in results if r.last_delta is not None]
    # the sustained rate: deltas received while every stream was open (after the last
    # first delta, before the first last delta) against what the upstream offered then
    first_end = min(ends, default=0.0)
    window = first_end - all_open
    in_window = sum(1 for t in run.received if all_open < t <= first_end)
    offered = spec.n * window / spec.interval if spec.interval and window > 0 else None
    ttlb = [r.ended - r.t0 for r in results if r.ended is not None]
    caught_up = [r.caught_up - r.t0 for r in results if r.caught_up is not None]
    wall = (max(ends) - min(starts)) if starts and ends else None
    delivered = sum(len(r.seqs) for r in results)
    usage = resource.getrusage(resource.RUSAGE_SELF)

    def stage(attr: str) -> dict[str, float | None]:
        values = [getattr(r, attr) - r.t0 for r in results if getattr(r, attr) is not None]
        return {"p50": _ms(percentile(values, 50)), "p99": _ms(percentile(values, 99))}

    return {
        "spec": asdict(spec),
        "streams": spec.n,
        "streams_failed": len(failed),
        "errors_by_kind": dict(reasons),
        "error_samples": sorted({r.error for r in failed if r.error})[:5],
        "ttfd_ms": {q: _ms(percentile(ttfd, p)) for q, p in (("p50", 50), ("p99", 99))},
        "ttfd_max_ms": _ms(max(ttfd) if ttfd else None),
        # where TTFD goes: start request answered, SSE headers received (from t0)
        "accepted_ms": stage("accepted"),
        "opened_ms": stage("opened"),
        "started_ms": stage("started"),  # (Sluice: its worker claimed the job)
        "latency_ms": {
            q: _ms(percentile(latencies, p)) for q, p in (("p50", 50), ("p90", 90), ("p99", 99))
        },
        "latency_max_ms": _ms(max(latencies) if latencies else None),
        "latency_steady_ms": {
            q: _ms(percentile(steady, p)) for q, p in (("p50", 50), ("p90", 90), ("p99", 99))
        },
        "latency_steady_samples": len(steady),
        "sustained": {
            "window_s": round(window, 3) if window > 0 else None,
            "delivered": in_window,
            "offered": None if offered is None else round(offered, 1),
            "ratio": round(in_window / offered, 4) if offered else None,
        },
        "ttlb_ms": {q: _ms(percentile(ttlb, p)) for q, p in (("p50", 50), ("p99", 99))},
        "ttlb_max_ms": _ms(max(ttlb) if ttlb else None),
        "caught_up_ms": {q: _ms(percentile(caught_up, p)) for q, p in (("p50", 50), ("p99", 99))},
        "bytes_received": sum(r.bytes for r in results),
        "streams_reset": sum(1 for r in results if r.resets),
        "deltas_delivered": delivered,
        "deltas_expected": spec.n * spec.deltas,
        "wall_s": None if wall is None else round(wall, 3),
        "deltas_per_s": round(delivered / wall, 1) if wall else None,
        "client_cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
    }


async def run_spec(spec: Spec) -> dict[str, Any]:
    connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=None)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, auto_decompress=False
    ) as session:
        run = Run(spec, session)
        results = await run.run()
    return summarise(spec, results, run)


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main() -> None:
    parser = argparse.ArgumentParser(description="Sluice benchmark load client")
    parser.add_argument("--spec", required=True, help="JSON of bench.client.Spec")
    parser.add_argument("--out", required=True, help="where to write the JSON summary")
    args = parser.parse_args()
    fields = json.loads(args.spec)
    spec = Spec(**{**fields, "join": tuple(fields.get("join") or ())})
    if spec.system not in SYSTEMS:
        sys.exit(f"unknown system {spec.system!r}")
    _raise_fd_limit()
    summary = uvloop.run(run_spec(spec))  # a lighter loop: the client is not the bottleneck
    with open(args.out, "w") as out:
        json.dump(summary, out)


if __name__ == "__main__":
    main()
