"""``python -m sluice_cli chat``: a terminal client with the typing effect.

    python -m sluice_cli chat "Write a haiku about queues"
    echo '[{"role": "user", "content": "Hi"}]' | python -m sluice_cli chat --model gpt-4o
    cat notes.txt | python -m sluice_cli chat
    python -m sluice_cli chat --image photo.png "What is in this picture?"
    python -m sluice_cli chat --json "Three primes as JSON: {\"primes\": [...]}"

The answer streams to stdout as it is written; the job id, reconnects and the usage go to
stderr, so stdout holds just the answer. What the model writes besides text goes to
stdout too, each on lines of its own: a tool call as ``[tool call <name>] <arguments>``, a
refusal as ``[refusal] <text>``. Its reasoning goes to stderr with ``--reasoning``. Ctrl-C
cancels the job on the server. A dropped connection (a gateway restart, a network blip)
resumes with ``Last-Event-ID``: nothing is lost or repeated.
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import requests

from sluice.events import parse_event_id
from sluice.images import image_type
from sluice.settings import read_env
from sluice.sse_decoder import SSEDecoder

EXIT_FAILED = 1
EXIT_INTERRUPTED = 130
# Model output is untrusted: on a terminal, escape sequences and other control characters
# (all but newline and tab) are shown as their code, so an answer cannot move the cursor,
# retitle the window or hide text. Piped output is left byte for byte as the model wrote it.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def terminal_safe(text: str) -> str:
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


class ChatError(Exception):
    """The job failed or could not be started; the message says why."""


def read_messages(prompt: str | None, stdin: TextIO, system: str | None) -> list[dict[str, Any]]:
    """The conversation: the prompt argument, or stdin (JSON messages or plain text)."""
    if prompt is None or prompt == "-":
        if stdin.isatty():
            raise ChatError('give a prompt: python -m sluice_cli chat "…" (or pipe one in)')
        text = stdin.read()
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            parsed = parsed.get("messages")
        if isinstance(parsed, list) and all(isinstance(m, dict) for m in parsed):
            messages = parsed
        elif text.strip():
            messages = [{"role": "user", "content": text}]
        else:
            raise ChatError("stdin is empty")
    else:
        messages = [{"role": "user", "content": prompt}]
    if system and not any(m.get("role") == "system" for m in messages):
        messages = [{"role": "system", "content": system}, *messages]
    return messages


def image_part(path: str) -> dict[str, Any]:
    """A file as an ``image_url`` content part with a base64 data URL."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ChatError(f"cannot read {path}: {exc.strerror or exc}") from None
    mime = image_type(data)
    if mime is None:
        raise ChatError(f"{path} is not a PNG, JPEG, GIF or WebP image")
    url = f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
    return {"type": "image_url", "image_url": {"url": url, "detail": "auto"}}


def attach_images(messages: list[dict[str, Any]], parts: list[dict[str, Any]]) -> None:
    """Add image parts to the last user message (its text becomes a text part)."""
    if not parts:
        return
    last = next((m for m in reversed(messages) if m.get("role") == "user"), None)
    if last is None:
        raise ChatError("--image needs a user message to go with")
    content = last.get("content")
    if isinstance(content, str):
        content = [{"type": "text", "text": content}] if content else []
    elif not isinstance(content, list):
        content = []
    last["content"] = [*content, *parts]


class Chat:
    def __init__(self, args: argparse.Namespace, out: TextIO, err: TextIO) -> None:
        self.base = args.url.rstrip("/")
        self.out = out
        self.err = err
        self.session = requests.Session()
        if args.upstream_key:
            self.session.headers["X-Upstream-Api-Key"] = args.upstream_key
        self.max_reconnects = args.max_reconnects
        self.read_timeout = args.read_timeout
        self.show_reasoning = getattr(args, "reasoning", False)
        self.tty = _isatty(out)
        self.err_tty = _isatty(err)
        self.job_id: str | None = None
        self.last = 0  # the last event id printed
        self.at_line_start = True  # stdout's last character was a newline (or none yet)
        self.section: tuple[str, int] | None = None  # ("content"|"refusal"|"tool", call)
        self.calls: dict[int, dict[str, str]] = {}  # choice 0's tool calls: id, name
        self.reasoning = "none"  # "none", "open" (stderr is mid-line), "closed"

    def note(self, text: str) -> None:
        print(text, file=self.err, flush=True)

    def start(self, params: dict[str, Any]) -> dict[str, Any]:
        try:
            response = self.session.post(f"{self.base}/v1/jobs", json=params, timeout=30)
        except requests.RequestException as exc:
            raise ChatError(f"cannot reach the gateway at {self.base}: {exc}") from None
        body = response.json() if response.content else {}
        if response.status_code != 202:
            raise ChatError(body.get("error", {}).get("message", f"HTTP {response.status_code}"))
        self.job_id = body["id"]
        self.note(f"[job {body['id']}]")
        if body.get("truncated_messages"):
            self.note(f"[{body['truncated_messages']} older messages left out to fit]")
        return body

    def follow(self, job: dict[str, Any]) -> dict[str, Any]:
        """Print the answer as it streams; returns the terminal event's data."""
        failures = 0
        while True:
            before = self.last
            try:
                terminal = self._read(job["events_url"])
            except requests.RequestException:
                terminal = None
            if terminal is not None:
                return terminal
            failures = 1 if self.last > before else failures + 1
            if failures > self.max_reconnects:
                raise ChatError("the connection kept dropping; giving up")
            self.note(f"\n[connection lost after event {self.last}; reconnecting…]")
            time.sleep(min(5.0, 0.5 * failures))

    def _read(self, path: str) -> dict[str, Any] | None:
        """Read events after ``self.last``; the terminal event's data, or None if cut."""
        headers = {"Accept": "text/event-stream", "Last-Event-ID": str(self.last)}
        with self.session.get(
            self.base + path, headers=headers, stream=True, timeout=(5, self.read_timeout)
        ) as response:
            if response.status_code == 404:
                raise ChatError("the job does not exist any more")
            if response.status_code != 200:
                return None
            decoder = SSEDecoder()
            for chunk in response.iter_content(chunk_size=None):
                for event in decoder.feed(chunk):
                    done = self._apply(event.event, event.id, event.data)
                    if done is not None:
                        return done
        return None

    def _apply(self, kind: str, event_id: str | None, data: str) -> dict[str, Any] | None:
        seq = parse_event_id(event_id) if event_id is not None else None
        if seq is None or seq <= self.last:
            return None
        self.last = seq
        payload = json.loads(data)
        if kind == "delta" and payload.get("index", 0) == 0:
            self._delta(payload)
        elif kind == "reset":
            self.section, self.calls = None, {}
            self.end_reasoning()
            self.reasoning = "none"
            self.note("\n[the job restarted; the answer begins again]")
        elif kind in ("done", "error", "cancelled"):
            return {"type": kind, **payload}
        return None

    def _write(self, text: str) -> None:
        if text:
            self.out.write(terminal_safe(text) if self.tty else text)
            self.out.flush()
            self.at_line_start = text.endswith("\n")

    def _begin(self, section: tuple[str, int], header: str) -> None:
        """Start a part of the answer on a line of its own, unless it is the current one."""
        if self.section == section:
            return
        if self.section is not None and not self.at_line_start:
            self._write("\n")
        self.section = section
        self._write(header)

    def _delta(self, payload: dict[str, Any]) -> None:
        """One fragment of choice 0 (docs/events.md): text, refusal, tool call, reasoning."""
        if isinstance(payload.get("reasoning"), str):
            if self.show_reasoning and payload["reasoning"]:
                if self.reasoning == "none":
                    self.err.write("[reasoning] ")
                self.reasoning = "open"
                text = payload["reasoning"]
                self.err.write(terminal_safe(text) if self.err_tty else text)
                self.err.flush()
            return
        self.end_reasoning()
        if isinstance(payload.get("content"), str):
            if payload["content"]:
                self._begin(("content", 0), "")
                self._write(payload["content"])
        elif isinstance(payload.get("refusal"), str):
            if payload["refusal"]:
                self._begin(("refusal", 0), "[refusal] ")
                self._write(payload["refusal"])
        elif isinstance(payload.get("tool_call"), dict):
            fragment = payload["tool_call"]
            index = fragment.get("index", 0)
            call = self.calls.setdefault(index, {"name": ""})
            call["name"] = call["name"] or str(fragment.get("name") or "")
            self._begin(("tool", index), f"[tool call {call['name'] or '?'}] ")
            self._write(str(fragment.get("arguments") or ""))

    def end_reasoning(self) -> None:
        """End the reasoning's line on stderr once the answer proper begins."""
        if self.reasoning == "open":
            self.note("")
            self.reasoning = "closed"

    def cancel(self) -> None:
        if self.job_id is None:
            return
        try:
            self.session.post(f"{self.base}/v1/jobs/{self.job_id}/cancel", timeout=10)
        except requests.RequestException as exc:
            self.note(f"[could not cancel: {exc}]")


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def format_usage(terminal: dict[str, Any]) -> str:
    usage = terminal.get("usage") or {}
    parts = []
    if usage:
        estimated = " (estimated)" if terminal.get("usage_estimated") else ""
        parts.append(
            f"{usage.get('prompt_tokens')} prompt + {usage.get('completion_tokens')} completion"
            f" = {usage.get('total_tokens')} tokens{estimated}"
        )
    if terminal.get("finish_reasons"):
        parts.append("finish: " + ", ".join(str(r) for r in terminal["finish_reasons"]))
    return "[" + " · ".join(parts) + "]" if parts else ""


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="python -m sluice_cli", description=__doc__.split("\n")[0])
    commands = root.add_subparsers(dest="command", required=True)
    chat = commands.add_parser("chat", help="stream an answer to the terminal")
    chat.add_argument("prompt", nargs="?", help="the message (default: read stdin)")
    chat.add_argument("--url", default=read_env("SLUICE_URL"))
    chat.add_argument("--model", default=read_env("SLUICE_MODEL"))
    chat.add_argument("--system", help="a system prompt")
    chat.add_argument("--temperature", type=float)
    chat.add_argument("--max-tokens", type=int)
    chat.add_argument(
        "--json",
        action="store_true",
        help='ask for one JSON object (response_format json_object; say "JSON" in the prompt)',
    )
    chat.add_argument(
        "--image",
        action="append",
        default=[],
        metavar="PATH",
        help="attach a PNG, JPEG, GIF or WebP image to the message (repeatable)",
    )
    chat.add_argument(
        "--reasoning", action="store_true", help="print the model's reasoning to stderr"
    )
    chat.add_argument(
        "--upstream-key",
        default=read_env("SLUICE_UPSTREAM_API_KEY"),
        help="your own upstream API key for this job (env SLUICE_UPSTREAM_API_KEY)",
    )
    chat.add_argument("--max-reconnects", type=int, default=20)
    chat.add_argument("--read-timeout", type=float, default=60.0, help=argparse.SUPPRESS)
    return root


def main(argv: list[str] | None = None, stdin: TextIO = sys.stdin) -> int:
    args = parser().parse_args(argv)
    chat = Chat(args, sys.stdout, sys.stderr)
    try:
        params: dict[str, Any] = {
            "model": args.model,
            "messages": read_messages(args.prompt, stdin, args.system),
        }
        if args.temperature is not None:
            params["temperature"] = args.temperature
        if args.max_tokens is not None:
            params["max_tokens"] = args.max_tokens
        if args.json:
            params["response_format"] = {"type": "json_object"}
        attach_images(params["messages"], [image_part(path) for path in args.image])
        terminal = chat.follow(chat.start(params))
    except KeyboardInterrupt:
        chat.cancel()
        chat.note("\n[cancelled]")
        return EXIT_INTERRUPTED
    except ChatError as exc:
        chat.note(f"error: {exc}")
        return EXIT_FAILED
    print(file=sys.stdout, flush=True)
    chat.end_reasoning()
    if terminal["type"] == "error":
        error = terminal.get("error", {})
        status = f" (upstream status {error['status']})" if error.get("status") else ""
        chat.note(f"error: {error.get('type')}: {error.get('message')}{status}")
        return EXIT_FAILED
    if terminal["type"] == "cancelled":
        chat.note("[cancelled]")
    chat.note(format_usage(terminal))
    return 0
