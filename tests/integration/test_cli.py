"""``python -m sluice_cli chat`` against the real stack: typing effect, stdin, Ctrl-C, resume."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time

import httpx
import pytest

from devtools.fake_upstream import FakeUpstream, expected_reply
from tests.helpers.stack import RestartableGateway
from tests.helpers.support import ROOT, upstream_body

pytestmark = pytest.mark.integration


def cli(gateway_url: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sluice_cli", "chat", "--url", gateway_url, *args],
        cwd=ROOT, input=stdin, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def start_cli(gateway_url: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-u", "-m", "sluice_cli", "chat", "--url", gateway_url, *args],
        cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


def test_a_prompt_streams_to_stdout_and_usage_to_stderr(
    gateway_url: str, upstream: FakeUpstream
) -> None:
    prompt = f"cli {secrets.token_hex(3)}"
    result = cli(gateway_url, "--model", "openai", "--system", "Be brief.", prompt)
    assert result.returncode == 0, result.stderr
    body = upstream_body(upstream, prompt)
    assert result.stdout == expected_reply(body) + "\n"
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert "[job job_" in result.stderr
    assert "tokens" in result.stderr and "finish: stop" in result.stderr


def test_a_conversation_is_read_from_stdin(gateway_url: str, upstream: FakeUpstream) -> None:
    last = f"and now? {secrets.token_hex(3)}"
    conversation = [
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "hi!"},
        {"role": "user", "content": last},
    ]
    result = cli(gateway_url, "--model", "openai", stdin=json.dumps(conversation))
    assert result.returncode == 0, result.stderr
    assert upstream_body(upstream, last)["messages"] == conversation
    plain = f"plain text {secrets.token_hex(3)}"
    result = cli(gateway_url, "--model", "openai", stdin=plain)
    assert result.returncode == 0 and result.stdout.strip()
    upstream_body(upstream, plain)


def test_an_upstream_error_is_said_plainly_with_a_failing_exit(gateway_url: str) -> None:
    result = cli(gateway_url, "--model", "http-401", "hi")
    assert result.returncode == 1
    assert "Incorrect API key" in result.stderr and "401" in result.stderr


def test_ctrl_c_cancels_the_job_on_the_server(gateway_url: str) -> None:
    process = start_cli(gateway_url, "--model", "slow;delay=0.05;words=300", "long one")
    assert process.stdout is not None and process.stderr is not None
    first = process.stdout.read(10)  # the answer has started
    assert first
    process.send_signal(signal.SIGINT)
    _out, err = process.communicate(timeout=20)
    assert process.returncode == 130, err
    job_id = err.split("[job ")[1].split("]")[0]
    job = httpx.get(f"{gateway_url}/v1/jobs/{job_id}").json()
    assert job["status"] == "cancelled"


def test_a_dropped_connection_resumes_without_loss_or_repeat(
    restartable_gateway: RestartableGateway, upstream: FakeUpstream
) -> None:
    prompt = f"resume me {secrets.token_hex(3)}"
    process = start_cli(restartable_gateway.url, "--model", "slow;delay=0.03;words=120", prompt)
    assert process.stdout is not None
    start = process.stdout.read(20)  # 20 characters of the answer have been printed
    restartable_gateway.kill()
    time.sleep(1)
    restartable_gateway.start()
    # read through the same text wrapper (communicate() would skip what it buffered)
    out = process.stdout.read()
    err = process.stderr.read() if process.stderr else ""
    assert process.wait(30) == 0, err
    assert "reconnecting" in err
    expected = expected_reply(upstream_body(upstream, prompt))
    assert start + out == expected + "\n"  # nothing lost, nothing printed twice


def test_without_a_prompt_or_stdin_it_explains_itself() -> None:
    result = subprocess.run(
        [sys.executable, "-c", "import sys; from sluice_cli.chat import main; "
         "sys.stdin.isatty = lambda: True; sys.exit(main(['chat']))"],
        cwd=ROOT, capture_output=True, text=True, timeout=30,
        env={**os.environ},
    )  # fmt: skip
    assert result.returncode == 1 and "give a prompt" in result.stderr
