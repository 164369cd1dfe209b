"""A minute of the chaos soak (``python -m bench.chaos``): overlapping faults of every kind
while a mixed load runs, and then every invariant checked for every job."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.support import ARTIFACTS, ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]
# this seed's 60 s schedule has all 14 kinds of fault, 24 in all, overlapping
SEED = 235


@pytest.mark.timeout(900)
def test_a_minute_of_overlapping_faults_breaks_no_invariant(tmp_path: Path) -> None:
    out = ARTIFACTS / "chaos.json"
    command = [
        sys.executable, "-m", "bench.chaos", "--seconds", "60", "--seed", str(SEED),
        "--out", str(out), "--workdir", str(tmp_path),
    ]  # fmt: skip
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=840)
    report = run.stdout[run.stdout.find("\njobs:") :]
    print(report)
    assert run.returncode == 0, f"{report}\n{run.stderr[-6000:]}"
    result = json.loads(out.read_text())
    assert result["violations"] == [] and result["fault_errors"] == []
    assert result["jobs"] > 400
    assert len(result["faults"]) >= 12  # kinds carried out
    assert result["recovery_s"]["faults"] >= 20
