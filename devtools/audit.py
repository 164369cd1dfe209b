"""``make audit``: the pinned dependencies against the public advisory databases.

Python: ``pip-audit`` on requirements.txt and requirements-dev.txt (every pin, ``--no-deps``:
the files pin the whole tree); where it could not look a pin up, PyPI's project JSON
decides for a pin that is the newest release (``read_pypi_project``). Node: ``npm audit``
in each folder with a package-lock.json (``web/``, the Node client tests' packages;
``bench/peer/``, the benchmark's peer).

Both tools can look clean when they checked nothing: pip-audit prints "No known
vulnerabilities found" and exits 0 when it could not look up a single package (a
registry mirror that serves only ``/simple``, or no network), and npm audit fails the same
way for "vulnerable" and for "the advisory endpoint refused the request". So this reads
their JSON and tells three outcomes apart:

- a known vulnerability in a pin: listed, exit 1 (CI fails);
- nothing known, with every package looked up: exit 0;
- a database unreachable, or packages it could not look up: said plainly, with how many,
  and exit 0, because a machine without the advisory services cannot decide either way
  (``--strict`` makes that exit 2, for a CI that must have an answer).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ("requirements.txt", "requirements-dev.txt")
NODE_FOLDERS = ("web", "bench/peer")
TIMEOUT = 300  # seconds for one tool's run


@dataclass
class Verdict:
    """What one audit found: vulnerabilities (one line each), and what it could not check."""

    source: str
    checked: int = 0
    findings: list[str] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)  # why each skip, or the tool's error

    @property
    def conclusive(self) -> bool:
        return not self.unchecked and self.checked > 0


def read_pip_audit(source: str, report: dict[str, Any]) -> Verdict:
    """A verdict from ``pip-audit -f json`` output: a dependency with ``skip_reason`` was
    not looked up, one with ``vulns`` is vulnerable."""
    verdict = Verdict(source)
    for dep in report.get("dependencies", []):
        name = str(dep.get("name"))
        if dep.get("version"):  # (a skipped one has none: its reason names it)
            name += f"=={dep['version']}"
        if dep.get("skip_reason"):
            verdict.unchecked.append(f"{name}: {dep['skip_reason']}")
            continue
        verdict.checked += 1
        for vuln in dep.get("vulns", []):
            fixed = ", ".join(vuln.get("fix_versions") or []) or "no fixed release"
            verdict.findings.append(f"{name}: {vuln.get('id')} (fixed in {fixed})")
    return verdict


def read_npm_audit(source: str, report: dict[str, Any]) -> Verdict:
    """A verdict from ``npm audit --json`` output: an ``error`` or a ``statusCode`` means
    the registry's advisory endpoint gave no answer; otherwise ``vulnerabilities`` maps each
    vulnerable package to its severity and the range affected."""
    verdict = Verdict(source)
    if "error" in report or "statusCode" in report:
        error = report.get("error") or {}
        why = report.get("message") or error.get("summary") or error.get("code") or "no answer"
        verdict.unchecked.append(f"the advisory endpoint gave no answer: {why}")
        return verdict
    metadata = report.get("metadata", {})
    verdict.checked = int(metadata.get("dependencies", {}).get("total", 0)) or 1
    for name, vuln in sorted(report.get("vulnerabilities", {}).items()):
        verdict.findings.append(f"{name}: {vuln.get('severity')} in {vuln.get('range')}")
    return verdict


def _run_json(cmd: list[str], cwd: Path) -> dict[str, Any] | str:
    """The tool's JSON report, or why there is none."""
    try:
        done = subprocess.run(
            cmd, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{cmd[0]} did not run: {exc}"
    try:
        report = json.loads(done.stdout)
    except ValueError:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        return f"{' '.join(cmd[:3])} exited {done.returncode}: {tail[0]}"
    return report if isinstance(report, dict) else f"{cmd[0]}: unexpected output"


def audit_python() -> Verdict:
    cmd = [sys.executable, "-m", "pip_audit", "--no-deps", "--disable-pip", "--progress-spinner",
           "off", "-f", "json"]  # fmt: skip
    for name in REQUIREMENTS:
        cmd += ["-r", name]
    report = _run_json(cmd, ROOT)
    if isinstance(report, str):
        return Verdict("python (pip-audit)", unchecked=[report])
    verdict = read_pip_audit("python (pip-audit)", report)
    skipped = {str(d.get("name")).lower() for d in report.get("dependencies", [])
               if d.get("skip_reason")}  # fmt: skip
    if skipped:
        _ask_pypi_projects(verdict, {n: v for n, v in pins().items() if n in skipped})
    return verdict


def pins() -> dict[str, str]:
    """``name==version`` of every pin in the requirements files, names lowercased."""
    found: dict[str, str] = {}
    for file in REQUIREMENTS:
        for line in (ROOT / file).read_text().splitlines():
            name, sep, version = line.split("#")[0].strip().partition("==")
            if sep and name and not name.startswith("-"):
                found[name.split("[")[0].strip().lower()] = version.strip()
    return found


def read_pypi_project(name: str, version: str, project: dict[str, Any]) -> list[str] | None:
    """What PyPI's project JSON (``/pypi/<name>/json``) says of the pinned release: its
    ``vulnerabilities`` (the same OSV data pip-audit asks for) describe the *newest*
    release only, so they decide only for a pin that is the newest; None otherwise."""
    if project.get("info", {}).get("version") != version:
        return None
    return [
        f"{name}=={version}: {v.get('id')} (fixed in "
        f"{', '.join(v.get('fixed_in') or []) or 'no fixed release'})"
        for v in project.get("vulnerabilities") or []
    ]


def _ask_pypi_projects(verdict: Verdict, skipped: dict[str, str]) -> None:
    """Where pip-audit could not look a pin up (a mirror that serves PyPI's project pages
    but not its per-release JSON), PyPI's project JSON decides for pins that are the newest
    release; the rest stay unchecked."""

    def ask(item: tuple[str, str]) -> tuple[str, str, list[str] | None]:
        name, version = item
        try:
            url = f"https://pypi.org/pypi/{name}/json"
            with urllib.request.urlopen(url, timeout=15) as response:
                return name, version, read_pypi_project(name, version, json.load(response))
        except (OSError, ValueError):
            return name, version, None

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(ask, sorted(skipped.items())))
    decided = {name for name, _, found in answers if found is not None}
    for _, _, found in answers:
        if found is not None:
            verdict.checked += 1
            verdict.findings += found
    verdict.unchecked = [u for u in verdict.unchecked if u.split(":")[0].lower() not in decided]


def audit_node(folder: str) -> Verdict:
    source = f"node {folder} (npm audit)"
    if shutil.which("npm") is None:
        return Verdict(source, unchecked=["npm is not installed"])
    report = _run_json(["npm", "audit", "--json"], ROOT / folder)
    if isinstance(report, str):
        return Verdict(source, unchecked=[report])
    return read_npm_audit(source, report)


def exit_code(verdicts: list[Verdict], strict: bool) -> int:
    if any(v.findings for v in verdicts):
        return 1
    if strict and not all(v.conclusive for v in verdicts):
        return 2
    return 0


def describe(verdict: Verdict) -> list[str]:
    lines = [f"{verdict.source}: {verdict.checked} checked, {len(verdict.findings)} "
             f"vulnerable, {len(verdict.unchecked)} not checked"]  # fmt: skip
    lines += [f"  VULNERABLE {f}" for f in verdict.findings]
    shown = verdict.unchecked[:3]
    lines += [f"  not checked: {u}" for u in shown]
    if len(verdict.unchecked) > len(shown):
        lines.append(f"  … and {len(verdict.unchecked) - len(shown)} more not checked")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m devtools.audit", description=__doc__.split("\n")[0])
    p.add_argument("--strict", action="store_true", help="exit 2 when anything went unchecked")
    args = p.parse_args(argv)
    verdicts = [audit_python(), *(audit_node(f) for f in NODE_FOLDERS)]
    for verdict in verdicts:
        print("\n".join(describe(verdict)))
    code = exit_code(verdicts, args.strict)
    if code == 0 and not all(v.conclusive for v in verdicts):
        print("audit: no known vulnerability among what was checked; some advisory databases "
              "could not be reached from here, so that part is undecided (see above)")  # fmt: skip
    elif code == 0:
        print("audit: no known vulnerability in any pinned dependency")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
