"""``python -m sluice_cli chat``: a terminal client with the typing effect.

    python -m sluice_cli chat "Write a haiku about queues"
    echo '[{"role": "user", "content": "Hi"}]' | python -m sluice_cli chat --model gpt-4o
    cat notes.txt | python -m sluice_cli chat

The answer streams to stdout as it is written; the job id, reconnects and the usage go to
stderr, so stdout holds just the answer. Ctrl-C cancels the job on the server. A dropped
connection (a gateway restart, a network blip) resumes with ``Last-Event-ID``: nothing is
lost or repeated.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, TextIO

import requests

from sluice.events import parse_event_id
from sluice.settings import read_env
from sluice.sse_decoder import SSEDecoder

EXIT_FAILED = 1
EXIT_INTERRUPTED = 130


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
        self.job_id: str | None = None
        self.last = 0  # the last event id printed

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
        if kind == "delta" and payload.get("index", 0) == 0 and payload.get("content"):
            self.out.write(payload["content"])
            self.out.flush()
        elif kind == "reset":
            self.note("\n[the job restarted; the answer begins again]")
        elif kind in ("done", "error", "cancelled"):
            return {"type": kind, **payload}
        return None

    def cancel(self) -> None:
        if self.job_id is None:
            return
        try:
            self.session.post(f"{self.base}/v1/jobs/{self.job_id}/cancel", timeout=10)
        except requests.RequestException as exc:
            self.note(f"[could not cancel: {exc}]")


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
        terminal = chat.follow(chat.start(params))
    except KeyboardInterrupt:
        chat.cancel()
        chat.note("\n[cancelled]")
        return EXIT_INTERRUPTED
    except ChatError as exc:
        chat.note(f"error: {exc}")
        return EXIT_FAILED
    print(file=sys.stdout, flush=True)
    if terminal["type"] == "error":
        error = terminal.get("error", {})
        status = f" (upstream status {error['status']})" if error.get("status") else ""
        chat.note(f"error: {error.get('type')}: {error.get('message')}{status}")
        return EXIT_FAILED
    if terminal["type"] == "cancelled":
        chat.note("[cancelled]")
    chat.note(format_usage(terminal))
    return 0
