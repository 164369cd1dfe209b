"""A process raises its own open-file limit to what its streams need, or says why not."""

from __future__ import annotations

import ast
import resource
import subprocess
import sys

import pytest

from sluice.fd_limit import SPARE, raise_open_file_limit


@pytest.fixture
def limits():
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    yield before
    resource.setrlimit(resource.RLIMIT_NOFILE, before)


def test_the_soft_limit_is_raised_to_what_the_streams_need(limits) -> None:
    _, hard = limits
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
    new_soft, _ = raise_open_file_limit(500)
    assert new_soft >= 500 + SPARE


def test_a_hard_limit_too_low_is_raised_by_root_or_reported() -> None:
    """In a child, so that a hard limit lowered here cannot outlive the test (only root
    may raise it again)."""
    code = (
        "import logging, resource; logging.basicConfig(level=logging.INFO);"
        "from sluice.fd_limit import raise_open_file_limit;"
        "print(raise_open_file_limit(100_000, per_stream=2))"
    )
    child = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (256, 512)),
    )  # fmt: skip
    assert child.returncode == 0, child.stderr
    soft, hard = ast.literal_eval(child.stdout.strip())
    if hard > 512:  # allowed to raise the hard limit (CAP_SYS_RESOURCE): it did
        assert soft == hard == 200_000 + SPARE
        assert "open-file limit raised from 256 to 200256" in child.stderr
    else:  # up to the hard limit, and a warning that says what is missing
        assert soft == hard == 512
        assert "open-file limit raised from 256 to 512" in child.stderr
        assert "below the 200256 that 100000 streams need" in child.stderr
