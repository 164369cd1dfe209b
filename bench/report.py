"""The results table (markdown), the Sluice/baseline ratios and the target checks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Row = dict[str, Any]

COLUMNS = (
    "system", "N", "TTFD p50 ms", "TTFD p99 ms", "latency p50 ms", "latency p99 ms",
    "deltas/s", "errors", "gateway CPU s", "worker CPU s", "gateway peak RSS MB",
    "MB/stream", "worker peak RSS MB", "upstream CPU s", "client CPU s", "redis CPU s",
)  # fmt: skip


def _fmt(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def _get(row: Row, *path: str) -> Any:
    value: Any = row
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def failed(row: Row) -> int:
    """Streams that failed (all of them when the run itself failed)."""
    if row.get("error"):
        return int(row["n"])
    return int(_get(row, "client", "streams_failed") or 0)


def mb_per_stream(row: Row) -> float | None:
    peak, idle = (
        _get(row, "resources", "gateway", "peak_rss_mb"),
        _get(row, "resources", "gateway", "idle_rss_mb"),
    )
    if peak is None or idle is None:
        return None
    return (peak - idle) / row["n"]


def _cells(row: Row) -> list[str]:
    r = lambda *path: _get(row, *path)  # noqa: E731
    return [
        row["label"],
        str(row["n"]),
        _fmt(r("client", "ttfd_ms", "p50")),
        _fmt(r("client", "ttfd_ms", "p99")),
        _fmt(r("client", "latency_ms", "p50")),
        _fmt(r("client", "latency_ms", "p99")),
        _fmt(r("client", "deltas_per_s"), 0),
        f"{failed(row)}/{row['n']}",
        _fmt(r("resources", "gateway", "cpu_s"), 2),
        _fmt(r("resources", "worker", "cpu_s"), 2),
        _fmt(r("resources", "gateway", "peak_rss_mb")),
        _fmt(mb_per_stream(row), 3),
        _fmt(r("resources", "worker", "peak_rss_mb")),
        _fmt(r("resources", "upstream", "cpu_s"), 2),
        _fmt(r("client", "client_cpu_s"), 2),
        _fmt(r("resources", "redis", "cpu_s"), 2),
    ]


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines)


def results_table(rows: list[Row]) -> str:
    return _table(list(COLUMNS), [_cells(row) for row in rows])


def find(rows: list[Row], label: str, n: int) -> Row | None:
    return next((r for r in rows if r["label"] == label and r["n"] == n), None)


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "—"
    return f"{a / b:.2f}×"


def ratios_table(rows: list[Row], sluice_labels: list[str]) -> str:
    metrics: list[tuple[str, Callable[[Row], float | None]]] = [
        ("TTFD p50", lambda r: _get(r, "client", "ttfd_ms", "p50")),
        ("latency p99", lambda r: _get(r, "client", "latency_ms", "p99")),
        ("deltas/s", lambda r: _get(r, "client", "deltas_per_s")),
    ]
    header = ["Sluice row", "N"]
    for base in ("direct", "flask-sse"):
        header += [f"{name} /{base}" for name, _ in metrics]
    out: list[list[str]] = []
    for label in sluice_labels:
        for n in sorted({r["n"] for r in rows if r["label"] == label}):
            ours = find(rows, label, n)
            assert ours is not None
            cells = [label, str(n)]
            for base in ("direct", "flask-sse"):
                theirs = find(rows, base, n)
                for _, metric in metrics:
                    cells.append(_ratio(metric(ours), metric(theirs) if theirs else None))
            out.append(cells)
    return _table(header, out)


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def checks(rows: list[Row], sluice_labels: list[str]) -> list[str]:
    """One line per target and Sluice row: PASS / FAIL / SKIP with the figures."""
    lines: list[str] = []
    for label in sluice_labels:
        lines += [f"[{label}] {line}" for line in _checks_for(rows, label)]
    return lines


def _value(row: Row | None, *path: str) -> Any:
    return None if row is None else _get(row, *path)


def _checks_for(rows: list[Row], label: str) -> list[str]:
    out: list[str] = []
    s1, d1 = find(rows, label, 1), find(rows, "direct", 1)
    s100, s1000 = find(rows, label, 100), find(rows, label, 1000)
    f1000 = find(rows, "flask-sse", 1000)

    name = "(1) TTFD p50 at N=1, Sluice − direct ≤ 15 ms"
    a, b = _value(s1, "client", "ttfd_ms", "p50"), _value(d1, "client", "ttfd_ms", "p50")
    if s1 is None or d1 is None:
        out.append(f"SKIP {name}: needs sluice and direct at N=1")
    elif a is None or b is None:
        out.append(f"FAIL {name}: no delta received (sluice {a}, direct {b})")
    else:
        ok = a - b <= 15 and not failed(s1) and not failed(d1)
        out.append(f"{_verdict(ok)} {name}: {a:.1f} − {b:.1f} = {a - b:.1f} ms")

    name = "(2) per-delta latency p99 ≤ 10 ms at N=100"
    p99 = _value(s100, "client", "latency_ms", "p99")
    if s100 is None:
        out.append(f"SKIP {name}: needs sluice at N=100")
    elif p99 is None:
        out.append(f"FAIL {name}: no delta received, {failed(s100)}/100 failed")
    else:
        ok = p99 <= 10 and not failed(s100)
        out.append(f"{_verdict(ok)} {name}: p99 {p99:.1f} ms, {failed(s100)}/100 failed")

    if s1000 is None:
        out += [
            "SKIP (3) one gateway process holds N=1000 streams: needs sluice at N=1000",
            "SKIP (4) one worker process runs ≥ 200 concurrent upstream streams: "
            "needs sluice at N=1000",
        ]
    else:
        lost = failed(s1000)
        out.append(
            f"{_verdict(lost == 0)} (3) one gateway process holds N=1000 streams: "
            f"{lost}/1000 failed, {_fmt(mb_per_stream(s1000), 3)} MB per stream"
        )
        peak = _value(s1000, "upstream_stats", "peak_open") or 0
        out.append(
            f"{_verdict(peak >= 200 and lost == 0)} (4) one worker process runs ≥ 200 "
            f"concurrent upstream streams: peak {peak} open at the upstream (all from the "
            f"one worker), {lost}/1000 failed"
        )

    name = "(5) deltas/s at N=1000 ≥ 2× flask-sse's"
    a, b = _value(s1000, "client", "deltas_per_s"), _value(f1000, "client", "deltas_per_s")
    if s1000 is None or f1000 is None:
        out.append(f"SKIP {name}: needs sluice and flask-sse at N=1000")
    elif a is None or b is None:
        out.append(f"FAIL {name}: no delta received (sluice {a}, flask-sse {b})")
    else:
        ok = a >= 2 * b and failed(s1000) == 0
        out.append(
            f"{_verdict(ok)} {name}: {a:,.0f} vs {b:,.0f} ({_ratio(a, b)}); failed: "
            f"Sluice {failed(s1000)}/1000, flask-sse {failed(f1000)}/1000"
        )
    return out
