"""The suite's targets (``bench.suite``): PASS/FAIL per target, and its report.

Every target compares figures of one run (side by side on one machine): the VM's speed
changes from run to run, so a bound in milliseconds or deltas per second measured on
another day means nothing here. docs/performance.md says why each target is what it is.
"""

from __future__ import annotations

import statistics
from typing import Any

from bench import report
from bench.systems import PEER

Row = dict[str, Any]
MB_PER_STREAM = 0.02


def _get(row: Row | None, *path: str) -> Any:
    return None if row is None else report._get(row, *path)


def cpu_per_delta(row: Row) -> dict[str, float | None]:
    """CPU-µs per delivered delta of each process group of the run."""
    delivered = _get(row, "client", "deltas_delivered") or 0
    out: dict[str, float | None] = {}
    for group in ("gateway", "worker", "redis"):
        cpu = _get(row, "resources", group, "cpu_s")
        out[group] = round(cpu * 1e6 / delivered, 1) if cpu is not None and delivered else None
    return out


def _by_system(rows: list[Row], system: str) -> Row | None:
    return next((r for r in rows if r.get("system") == system), None)


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def _f(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


# -- the checks ---------------------------------------------------------------------------


def check_long(results: dict[str, Any]) -> list[str]:
    rows = results.get("long")
    name = "(1) 10,000 concurrent slow streams on one gateway process"
    if not rows:
        return [f"SKIP {name}: scenario `long` not run"]
    sluice = _by_system(rows, "sluice")
    n = sluice["n"] if sluice else 0
    mb = report.mb_per_stream(sluice) if sluice and not sluice.get("error") else None
    ok = sluice is not None and report.failed(sluice) == 0 and mb is not None
    ok = ok and mb is not None and mb <= MB_PER_STREAM
    others = "; ".join(
        f"{r['label']} {report.failed(r)}/{r['n']} failed, "
        f"{_f(report.mb_per_stream(r) if not r.get('error') else None, 3)} MB/stream"
        for r in rows
        if r is not sluice
    )
    resets = _get(sluice, "client", "streams_reset")
    restarted = f" ({resets} restarted with `reset`)" if resets else ""
    return [
        f"{_verdict(ok)} {name}: N={n}, Sluice {report.failed(sluice) if sluice else '?'}/{n} "
        f"failed{restarted}, {_f(mb, 3)} MB per stream (≤ {MB_PER_STREAM}); {others}"
    ]


def check_burst(results: dict[str, Any]) -> list[str]:
    rows = results.get("burst")
    if not rows:
        return ["SKIP (2) N=1,000 against the direct proxy: scenario `burst` not run"]
    sluice, direct = _by_system(rows, "sluice"), _by_system(rows, "direct")
    a, b = _get(sluice, "client", "deltas_per_s"), _get(direct, "client", "deltas_per_s")
    t, u = _get(sluice, "client", "ttfd_ms", "p50"), _get(direct, "client", "ttfd_ms", "p50")
    lost = report.failed(sluice) if sluice else None
    out = []
    ok = bool(a and b and a >= 0.9 * b and lost == 0)
    ratio = f"{a / b:.0%}" if a and b else "—"
    out.append(
        f"{_verdict(ok)} (2a) N=1,000 deltas/s ≥ 90 % of the direct proxy's: "
        f"{_f(a, 0)} vs {_f(b, 0)} ({ratio}), Sluice {lost}/1000 failed"
    )
    ok = bool(t is not None and u and t <= 1.3 * u and lost == 0)
    ratio = f"{t / u:.2f}×" if t is not None and u else "—"
    out.append(
        f"{_verdict(ok)} (2b) N=1,000 TTFD p50 ≤ 1.3× the direct proxy's: "
        f"{_f(t)} vs {_f(u)} ms ({ratio})"
    )
    return out


def check_small(results: dict[str, Any]) -> list[str]:
    small = results.get("small")
    if not small:
        return ["SKIP (3) N=1 and N=100 against the direct proxy: scenario `small` not run"]
    out = []
    ones = small["n1"]
    s = [_get(r, "client", "ttfd_ms", "p50") for r in ones.get("sluice", [])]
    d = [_get(r, "client", "ttfd_ms", "p50") for r in ones.get("direct", [])]
    s, d = [x for x in s if x is not None], [x for x in d if x is not None]
    if s and d:
        gap = statistics.median(s) - statistics.median(d)
        out.append(
            f"{_verdict(gap <= 3)} (3a) N=1 TTFD ≤ direct + 3 ms (median of {len(s)} "
            f"alternating runs): {statistics.median(s):.1f} − {statistics.median(d):.1f} = "
            f"{gap:+.1f} ms"
        )
    else:
        out.append("FAIL (3a) N=1 TTFD: no delta received")
    hundreds = small["n100"]
    pairs = list(zip(hundreds.get("sluice", []), hundreds.get("direct", []), strict=False))
    figures, ok = [], bool(pairs)
    for sluice, direct in pairs:
        a, b = (
            _get(sluice, "client", "latency_ms", "p99"),
            _get(direct, "client", "latency_ms", "p99"),
        )
        good = bool(a is not None and b and a <= 1.5 * b and not report.failed(sluice))
        ok = ok and good
        figures.append(f"{_f(a)}/{_f(b)} ms ({a / b:.2f}×)" if a is not None and b else "—")
    out.append(
        f"{_verdict(ok)} (3b) N=100 per-delta p99 ≤ 1.5× the direct proxy's in each of "
        f"{len(pairs)} consecutive runs (Sluice/direct): " + ", ".join(figures)
    )
    return out


def check_tokens(results: dict[str, Any]) -> list[str]:
    rows = results.get("tokens")
    if not rows:
        return ["SKIP (4) token rate: scenario `tokens` not run"]
    out = []
    for row in rows:
        ratio = _get(row, "client", "sustained", "ratio")
        lat = _get(row, "client", "latency_steady_ms") or {}
        lost = report.failed(row)
        line = (
            f"{row['label']}: delivered ÷ offered {_f(ratio, 3)} while all 200 streams ran, "
            f"latency p50 {_f(lat.get('p50'))} / p99 {_f(lat.get('p99'))} ms, "
            f"{lost}/{row['n']} failed"
        )
        if row["system"] == "sluice":
            ok = ratio is not None and ratio >= 0.98 and lost == 0
            out.insert(0, f"{_verdict(ok)} (4) 200 streams × 50 tokens/s: " + line)
        else:
            out.append(f"INFO (4) {line}")
    return out


def check_late(results: dict[str, Any]) -> list[str]:
    late = results.get("late")
    if not late:
        return ["SKIP (5) late joiners: scenario `late` not run"]
    out = []
    for when in ("finished", "running"):
        replay, snap = late.get(f"{when}-replay"), late.get(f"{when}-snapshot")
        # a finished answer: until its end; a running one: until the joiner is live
        measure = "ttlb_ms" if when == "finished" else "caught_up_ms"
        a, b = _get(replay, "client", measure, "p50"), _get(snap, "client", measure, "p50")
        ca, cb = (
            _get(replay, "resources", "gateway", "cpu_s"),
            _get(snap, "resources", "gateway", "cpu_s"),
        )
        lost = (report.failed(replay) if replay else 100) + (report.failed(snap) if snap else 100)
        ok = a is not None and b is not None and b <= a and lost == 0
        what = "time to last byte" if when == "finished" else "time to catch up (live)"
        out.append(
            f"{_verdict(ok)} (5) 100 late joiners, {when} 4,000-delta answer: {what} p50 "
            f"replay {_f(a)} ms / snapshot {_f(b)} ms, gateway CPU {_f(ca, 2)} / "
            f"{_f(cb, 2)} s, {lost} failed"
        )
    peer = late.get("peer-running")
    if peer:
        out.append(
            f"INFO (5) resumable-stream, 100 join a running answer: time to catch up p50 "
            f"{_f(_get(peer, 'client', 'caught_up_ms', 'p50'))} ms, node CPU "
            f"{_f(_get(peer, 'resources', 'gateway', 'cpu_s'), 2)} s, "
            f"{report.failed(peer)}/100 failed; a finished one: "
            + ", ".join((_get(late.get("peer-finished"), "client", "error_samples") or ["?"])[:1])
        )
    return out


def check_peer(results: dict[str, Any]) -> list[str]:
    ran = [
        f"{name} N={r['n']}"
        for name in ("burst", "long")
        for r in results.get(name) or ()
        if r.get("system") == PEER and not r.get("error")
    ]
    ok = bool(ran)
    runs = ", ".join(ran) or "no run"
    return [f"{_verdict(ok)} (6) the peer (resumable-stream) ran beside Sluice: {runs}"]


def check_cost(results: dict[str, Any]) -> list[str]:
    burst = results.get("burst") or []
    sluice = _by_system(burst, "sluice")
    if sluice is None:
        return ["SKIP (7) cost per delta: scenario `burst` not run"]
    cost = sluice.get("cpu_us_per_delta") or {}
    profile = results.get("profile") or {}
    ok = bool(cost.get("gateway")) and bool(profile)
    named = "; ".join(
        f"{group}: {p['self_pct'][0][0]} {p['self_pct'][0][1]} % self"
        for group, p in profile.items()
        if p.get("self_pct")
    )
    return [
        f"{_verdict(ok)} (7) CPU-µs per delivered delta at N=1,000: gateway "
        f"{_f(cost.get('gateway'))}, worker {_f(cost.get('worker'))}, Redis "
        f"{_f(cost.get('redis'))}; profile: {named or 'none'}"
    ]


def checks(results: dict[str, Any]) -> list[str]:
    return [
        *check_long(results), *check_burst(results), *check_small(results),
        *check_tokens(results), *check_late(results), *check_peer(results),
        *check_cost(results),
    ]  # fmt: skip


# -- the report ---------------------------------------------------------------------------

EXTRA = (
    "CPU-µs/delta gw", "worker", "redis", "TTLB p50 ms", "TTLB p99 ms", "caught up p50 ms",
    "sustained",
)  # fmt: skip


def _table(rows: list[Row]) -> str:
    """The results table, plus the cost per delta, time to last byte and sustained rate."""
    header = [*report.COLUMNS, *EXTRA]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        if row.get("error"):
            cells = [row["label"], str(row["n"]), *["—"] * (len(header) - 3), "error"]
            lines.append("| " + " | ".join(cells) + " |")
            continue
        cost = row.get("cpu_us_per_delta") or {}
        extra = [
            _f(cost.get("gateway")), _f(cost.get("worker")), _f(cost.get("redis")),
            _f(_get(row, "client", "ttlb_ms", "p50")), _f(_get(row, "client", "ttlb_ms", "p99")),
            _f(_get(row, "client", "caught_up_ms", "p50")),
            _f(_get(row, "client", "sustained", "ratio"), 3),
        ]  # fmt: skip
        lines.append("| " + " | ".join([*report._cells(row), *extra]) + " |")
    return "\n".join(lines)


def _profile_lines(results: dict[str, Any]) -> list[str]:
    profile = results.get("profile") or {}
    out: list[str] = []
    for group, p in profile.items():
        out += [
            f"**{group}** ({p['samples']} samples, py-spy at 250 Hz; raw stacks in "
            f"`bench/results/logs/`)",
            "",
            "| self % | function | | inclusive % | Sluice's function |",
            "|---|---|---|---|---|",
        ]
        ours = p.get("inclusive_sluice_pct") or []
        for own, inc in zip(p["self_pct"][:12], ours[:12], strict=False):
            out.append(f"| {own[1]} | `{own[0]}` | | {inc[1]} | `{inc[0]}` |")
        out.append("")
    return out


def render(results: dict[str, Any], info: dict[str, Any], command: str, seconds: float) -> str:
    lines = [
        "# Sluice benchmark: the targets",
        "",
        f"- command: `{command}`",
        f"- machine: {info['cores']} cores, {info['cpu']}, Python {info['python']}, "
        f"Redis {info['redis']}, {info['platform']}",
        f"- load average at start {info['loadavg_start']}, at end {info.get('loadavg_end')}",
        f"- packages: {', '.join(f'{k} {v}' for k, v in info['packages'].items())}",
        f"- total time {seconds:.0f} s",
        "",
        "## Targets",
        "",
        *[f"- {line}" for line in checks(results)],
        "",
    ]
    sections = (
        ("long", "1. 10,000 slow streams (60 deltas, 1/s each)"),
        ("burst", "2. N=1,000 at once (100 deltas, 10/s each)"),
        ("tokens", "4. 200 streams, one token per delta at 50/s for 20 s"),
    )
    for key, title in sections:
        if results.get(key):
            lines += [f"## {title}", "", _table(results[key]), ""]
    small = results.get("small")
    if small:
        lines += ["## 3. N=1 (10 alternating runs) and N=100 (alternating runs)", ""]
        for size in ("n1", "n100"):
            rows = [r for label in small[size] for r in small[size][label]]
            lines += [_table(rows), ""]
    late = results.get("late")
    if late:
        rows = []
        for key, row in late.items():
            if isinstance(row, dict) and "label" in row:
                rows.append({**row, "label": f"{row['label']} {key}"})
        lines += ["## 5. Late joiners (100 at once)", "", _table(rows), ""]
    profile = _profile_lines(results)
    if profile:
        lines += ["## 7. Where Sluice's CPU goes at N=1,000 (py-spy)", "", *profile]
    errors = results.get("errors")
    if errors:
        lines += ["## Scenarios that failed", ""]
        lines += [f"- {name}: {' '.join(why.split())[:500]}" for name, why in errors.items()]
    lines += [
        "",
        "TTFD: first request → first delta. Latency: delta received − emitted by the "
        "upstream. deltas/s: delivered ÷ (first request → last delta). CPU-µs/delta: the "
        "group's CPU during the run ÷ deltas delivered. TTLB: request → terminal event. "
        "Caught up: a late joiner's request → its first delta written after it (it is live). "
        "Sustained: deltas received while every stream ran ÷ what the upstream offered "
        "then. MB/stream: (gateway peak RSS − idle) ÷ N.",
    ]
    return "\n".join(lines) + "\n"
