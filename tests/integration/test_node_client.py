"""The Node tests in web/test: the npm package eventsource-parser reads the gateway's streams,
and gateway/static/sluice.js assembles tool calls, reasoning and refusals and follows
conversations."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from tests.helpers.support import ROOT

pytestmark = pytest.mark.integration


def test_eventsource_parser_reads_the_event_stream(gateway_url: str) -> None:
    node = shutil.which("node")
    installed = (ROOT / "web" / "node_modules" / "eventsource-parser").is_dir()
    if node is None or not installed:
        if os.environ.get("CI"):
            pytest.fail("node and web/node_modules are needed (make test installs them)")
        pytest.skip("needs Node.js and `npm ci` in web/")
    result = subprocess.run(
        [node, "--test", "--test-reporter=tap", "test/"],
        cwd=ROOT / "web",
        env={**os.environ, "SLUICE_GATEWAY": gateway_url},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"^# pass 11$", result.stdout, re.MULTILINE), result.stdout
    assert re.search(r"^# fail 0$", result.stdout, re.MULTILINE)
