"""The benchmark's verdicts: each target's PASS/FAIL follows its figures (bench.targets),
and the load client counts what it received the way the targets assume (bench.client)."""

from __future__ import annotations

from typing import Any

from bench import targets
from bench.client import Run, Spec, StreamResult, summarise


def row(system: str, n: int, **client: Any) -> dict[str, Any]:
    base = {"streams_failed": 0, "deltas_delivered": n * 10}
    resources = {"gateway": {"cpu_s": 1.0, "idle_rss_mb": 100.0, "peak_rss_mb": 150.0}}
    return {"label": system, "system": system, "n": n, "error": None,
            "client": {**base, **client}, "resources": resources}  # fmt: skip


def test_the_burst_targets_are_ratios_to_the_direct_proxy_in_the_same_run() -> None:
    burst = [
        row("sluice", 1000, deltas_per_s=9000, ttfd_ms={"p50": 1200}),
        row("direct", 1000, deltas_per_s=10000, ttfd_ms={"p50": 1000}),
    ]
    lines = targets.check_burst({"burst": burst})
    assert lines[0].startswith("PASS (2a)") and "(90%)" in lines[0]
    assert lines[1].startswith("PASS (2b)") and "(1.20×)" in lines[1]
    burst[0]["client"]["deltas_per_s"] = 8900
    burst[0]["client"]["ttfd_ms"] = {"p50": 1400}
    lines = targets.check_burst({"burst": burst})
    assert lines[0].startswith("FAIL (2a)") and lines[1].startswith("FAIL (2b)")
    burst[0]["client"].update(deltas_per_s=9500, ttfd_ms={"p50": 900}, streams_failed=1)
    assert all(line.startswith("FAIL") for line in targets.check_burst({"burst": burst}))


def test_every_n100_run_must_pass_and_n1_compares_medians() -> None:
    def pair(s: float, d: float) -> tuple[dict[str, Any], dict[str, Any]]:
        return (
            row("sluice", 100, latency_ms={"p99": s}),
            row("direct", 100, latency_ms={"p99": d}),
        )

    runs = [pair(10, 8), pair(12, 9), pair(14, 9)]
    ones = {"sluice": [row("sluice", 1, ttfd_ms={"p50": v}) for v in (6, 7, 30)],
            "direct": [row("direct", 1, ttfd_ms={"p50": v}) for v in (4, 5, 4)]}  # fmt: skip
    small = {"n1": ones, "n100": {"sluice": [s for s, _ in runs], "direct": [d for _, d in runs]}}
    lines = targets.check_small({"small": small})
    assert lines[0].startswith("PASS (3a)") and "7.0 − 4.0 = +3.0 ms" in lines[0]
    assert lines[1].startswith("FAIL (3b)") and "14.0/9.0 ms (1.56×)" in lines[1]
    small["n100"]["sluice"][2]["client"]["latency_ms"]["p99"] = 13.5
    assert targets.check_small({"small": small})[1].startswith("PASS (3b)")


def test_long_streams_pass_on_no_failure_and_memory_per_stream() -> None:
    sluice = row("sluice", 10_000)
    sluice["resources"]["gateway"]["peak_rss_mb"] = 100.0 + 0.019 * 10_000
    direct = row("direct", 10_000, streams_failed=12)
    lines = targets.check_long({"long": [sluice, direct]})
    assert lines[0].startswith("PASS (1)") and "direct 12/10000 failed" in lines[0]
    sluice["resources"]["gateway"]["peak_rss_mb"] = 100.0 + 0.021 * 10_000
    assert targets.check_long({"long": [sluice, direct]})[0].startswith("FAIL (1)")


def test_the_client_counts_the_sustained_rate_while_every_stream_runs() -> None:
    spec = Spec("sluice", "http://x", n=2, deltas=5, interval=0.1, timeout=10)
    run = Run(spec, session=None)  # type: ignore[arg-type]  # (no request is made)
    results = []
    for offset in (0.0, 0.05):
        res = StreamResult(t0=100.0 + offset)
        for seq in range(5):  # one every 0.1 s, 10 ms after it was emitted
            emitted = 100.0 + offset + seq * 0.1
            payload = f'{{"content": "{seq}:{emitted}|"}}'.encode()
            run._delta(res, payload, emitted + 0.01)
        res.terminal, res.ended = "done", res.last_delta
        results.append(res)
    summary = summarise(spec, results, run)
    assert summary["deltas_delivered"] == 10 and summary["streams_failed"] == 0
    # all open at 100.06, first to end at 100.41: 7 deltas received, 2 × 3.5 offered
    assert summary["sustained"]["delivered"] == 7
    assert abs(summary["sustained"]["ratio"] - 1.0) < 1e-6
    assert summary["ttlb_ms"]["p50"] == 410.0


def test_a_snapshot_event_counts_the_deltas_its_text_holds() -> None:
    spec = Spec("sluice", "http://x", n=1, deltas=3, interval=0, timeout=10)
    run = Run(spec, session=None)  # type: ignore[arg-type]
    res = StreamResult(t0=1.0)
    run._snapshot(res, b'{"choices": [{"index": 0, "content": "0:1.0|1:1.1|"}]}', 2.0)
    run._delta(res, b'{"content": "2:1.2|"}', 2.1)
    assert res.seqs == {0, 1, 2} and res.duplicates == 0 and res.first_delta == 2.0
