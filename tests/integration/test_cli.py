"""``python -m sluice_cli chat`` against the real stack: typing effect, stdin, Ctrl-C, resume."""

from __future__ import annotations

import base64
import io
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import httpx
import pytest

from devtools.fake_upstream import FakeUpstream, expected_reasoning, expected_reply
from tests.helpers.stack import RestartableGateway
from tests.helpers.support import ROOT, upstream_body

pytestmark = pytest.mark.integration
PNG = (  # a 1×1 PNG's signature and header chunk: what image readers look at
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00"
    + zlib.crc32(b"IHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00").to_bytes(4, "big")
)


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


def job_of(gateway_url: str, stderr: str) -> dict:
    job_id = stderr.split("[job ")[1].split("]")[0]
    return httpx.get(f"{gateway_url}/v1/jobs/{job_id}").json()


def test_tool_calls_print_on_lines_of_their_own(gateway_url: str) -> None:
    result = cli(gateway_url, "--model", "tools;calls=2", "weather in Paris and Tokyo?")
    assert result.returncode == 0, result.stderr
    calls = job_of(gateway_url, result.stderr)["choices"][0]["tool_calls"]
    assert len(calls) == 2
    expected = "".join(
        f"[tool call {c['function']['name']}] {c['function']['arguments']}\n" for c in calls
    )
    assert result.stdout == expected
    assert "finish: tool_calls" in result.stderr


def test_a_refusal_prints_marked_as_one(gateway_url: str) -> None:
    result = cli(gateway_url, "--model", "refusal", "something bad")
    assert result.returncode == 0, result.stderr
    refusal = job_of(gateway_url, result.stderr)["choices"][0]["refusal"]
    assert refusal and result.stdout == f"[refusal] {refusal}\n"


def test_reasoning_goes_to_stderr_when_asked(gateway_url: str, upstream: FakeUpstream) -> None:
    prompt = f"think {secrets.token_hex(3)}"
    quiet = cli(gateway_url, "--model", "reasoning", prompt)
    assert quiet.returncode == 0, quiet.stderr
    assert "[reasoning]" not in quiet.stderr
    result = cli(gateway_url, "--model", "reasoning", "--reasoning", prompt)
    assert result.returncode == 0, result.stderr
    body = upstream_body(upstream, prompt)
    assert result.stdout == quiet.stdout == expected_reply(body) + "\n"
    assert f"[reasoning] {expected_reasoning(body)}\n" in result.stderr


def test_json_and_an_image_reach_the_upstream(
    gateway_url: str, upstream: FakeUpstream, tmp_path: Path
) -> None:
    png = tmp_path / "dot.png"
    png.write_bytes(PNG)
    prompt = f"describe it as JSON {secrets.token_hex(3)}"
    result = cli(gateway_url, "--model", "openai", "--json", "--image", str(png), prompt)
    assert result.returncode == 0, result.stderr
    body = next(
        r.body for r in reversed(upstream.requests)
        if r.body and r.body.get("messages") and isinstance(r.body["messages"][-1]["content"], list)
        and r.body["messages"][-1]["content"][0].get("text") == prompt
    )  # fmt: skip
    url = "data:image/png;base64," + base64.b64encode(PNG).decode()
    assert body["messages"][-1]["content"] == [
        {"type": "text", "text": prompt},
        {"type": "image_url", "image_url": {"url": url, "detail": "auto"}},
    ]
    assert body["response_format"] == {"type": "json_object"}
    assert "[1 image]" in result.stdout
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    refused = cli(gateway_url, "--model", "openai", "--image", str(text), "hi")
    assert refused.returncode == 1
    assert "is not a PNG, JPEG, GIF or WebP image" in refused.stderr


def test_control_characters_in_model_output_are_shown_not_obeyed_on_a_terminal() -> None:
    from sluice_cli.chat import Chat, parser

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    out, err = Terminal(), io.StringIO()
    chat = Chat(parser().parse_args(["chat", "--url", "http://x", "hi"]), out, err)
    evil = "\x1b]0;pwned\x07\x1b[2J"
    events = [
        ("delta", {"index": 0, "content": f"ok{evil}\tfine\n"}),
        ("delta", {"index": 0, "tool_call": {"index": 0, "id": "c", "name": f"n{evil}",
                                             "arguments": "{}"}}),
    ]  # fmt: skip
    for i, (kind, data) in enumerate(events, 1):
        chat._apply(kind, str(i), json.dumps(data))
    shown = "\\x1b]0;pwned\\x07\\x1b[2J"
    assert out.getvalue() == f"ok{shown}\tfine\n[tool call n{shown}] {{}}"
    piped = io.StringIO()  # not a terminal: byte for byte
    chat = Chat(parser().parse_args(["chat", "--url", "http://x", "hi"]), piped, err)
    chat._apply(*events[0][:1], "1", json.dumps(events[0][1]))
    assert piped.getvalue() == f"ok{evil}\tfine\n"
