"""Helpers for the tests of every layer: waiting, reading SSE streams, creating jobs.

Nothing here starts a process of the stack (that is ``tests.helpers.stack``) and nothing
opens a socket until it is called.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from httpx_sse import EventSource, connect_sse

from sluice.events import DELTA, TERMINAL_EVENTS, Event

if TYPE_CHECKING:
    from devtools.fake_upstream import FakeUpstream, RecordedRequest
    from sluice.store import JobStore

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
UPSTREAM_KEY = "sk-test-" + "k3y" * 8


def json_from_child(script: str) -> dict[str, Any]:
    """Run ``script`` in a fresh Python (one that may monkey-patch, say, without touching
    the test process) and return the JSON object its last line prints."""
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(
    condition: Callable[[], bool],
    timeout: float,
    process: subprocess.Popen[bytes] | None = None,
    log_path: Path | None = None,
    interval: float = 0.05,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if process is not None and process.poll() is not None:
            break
        time.sleep(interval)
    logs = log_path.read_text(errors="replace")[-4000:] if log_path else ""
    raise AssertionError(f"condition not met within {timeout}s\n{logs}")


@dataclass(frozen=True)
class Received:
    id: int
    event: str
    data: dict[str, Any]


def _events_of(source: EventSource) -> Iterator[Received]:
    """The events of an SSE response whose status was 200, as the server sends them."""
    assert source.response.headers["content-type"].startswith("text/event-stream")
    for sse in source.iter_sse():
        yield Received(int(sse.id), sse.event, json.loads(sse.data))


def read_stream(
    client: httpx.Client,
    path: str,
    headers: Mapping[str, str] | None = None,
    limit: int | None = None,
    *,
    body: Any = None,
    seen: dict[str, str] | None = None,
) -> list[Received]:
    """Read an SSE stream with httpx-sse until the server ends it (or ``limit`` events).

    With ``body`` it is a POST of that JSON; ``seen`` receives the response's headers.
    """
    out: list[Received] = []
    method, extra = ("GET", {}) if body is None else ("POST", {"json": body})
    with connect_sse(client, method, path, headers=dict(headers or {}), **extra) as source:
        if seen is not None:
            seen.update(source.response.headers)
        assert source.response.status_code == 200, source.response.read()
        for received in _events_of(source):
            out.append(received)
            if limit is not None and len(out) >= limit:
                break
    return out


def read_in_slices(
    client: httpx.Client, path: str, first: list[Received], size: int
) -> list[Received]:
    """After ``first``, read ``path`` ``size`` events at a time, reconnecting with
    ``Last-Event-ID`` after each slice, up to the terminal event; returns them all."""
    received = list(first)
    while not received or received[-1].event not in TERMINAL_EVENTS:
        headers = {"Last-Event-ID": str(received[-1].id)} if received else {}
        received += read_stream(client, path, headers=headers, limit=size)
    return received


def follow(
    client: httpx.Client, path: str, after: Sequence[Received] = (), max_reconnects: int = 100
) -> list[Received]:
    """Read a job's events to the end, reconnecting with Last-Event-ID as EventSource does,
    through errors, refusals and dropped connections; each response is read once.

    With ``after`` (the events already read) it starts after them and returns the rest.
    A 204 (the gateway telling EventSource to stop) ends it, as it ends EventSource.
    """
    events = list(after)
    for _ in range(max_reconnects):
        headers = {"Last-Event-ID": str(events[-1].id)} if events else {}
        try:
            with connect_sse(client, "GET", path, headers=headers) as source:
                if source.response.status_code == 204:
                    return events[len(after) :]
                if source.response.status_code == 200:
                    events.extend(_events_of(source))
        except httpx.HTTPError:
            pass
        if events and events[-1].event in TERMINAL_EVENTS:
            return events[len(after) :]
        time.sleep(0.3)
    raise AssertionError(f"no terminal event after {max_reconnects} reconnects: {events[-3:]}")


def text_of(events: list[Received], index: int = 0) -> str:
    """The text a client reassembles: content deltas of a choice since the last reset."""
    text = ""
    for e in events:
        if e.event == "reset":
            text = ""
        elif e.event == "delta" and e.data["index"] == index:
            text += e.data.get("content", "")
    return text


def last_prompt(recorded: RecordedRequest) -> Any:
    """The content of a recorded request's last message; None for a request without one
    (the session's upstream also serves other tests' odd requests, e.g. no messages)."""
    messages = (recorded.body or {}).get("messages") or []
    return messages[-1].get("content") if messages else None


def upstream_body(upstream: FakeUpstream, prompt: str) -> dict[str, Any]:
    """The request the fake upstream received whose last message is ``prompt``."""
    for recorded in reversed(upstream.requests):
        if last_prompt(recorded) == prompt:
            return recorded.body or {}
    raise AssertionError(f"the upstream never saw {prompt!r}")


def create_job(client: httpx.Client, **body: Any) -> dict[str, Any]:
    body.setdefault("model", "openai")
    body.setdefault("messages", [{"role": "user", "content": "Say hello"}])
    response = client.post("/v1/jobs", json=body)
    assert response.status_code == 202, response.text
    return response.json()


def wait_for_text(client: httpx.Client, url: str, chars: int, timeout: float = 30) -> None:
    """Wait until the job at ``url`` (its JSON) holds ``chars`` characters of choice 0."""

    def enough() -> bool:
        choices = client.get(url).json()["choices"]
        return bool(choices) and len(choices[0]["content"]) >= chars

    wait_until(enough, timeout)


def status_of(store: JobStore, job_id: str) -> str:
    """The status of a job that must still be in the store."""
    job = store.get(job_id)
    assert job is not None, f"{job_id} is not in the store"
    return job.status


def running_job(store: JobStore) -> str:
    """A job claimed by attempt 1: `started` is event 1."""
    job, _ = store.create(
        model="m", request={"model": "m", "messages": []}, prompt_tokens=1, truncated_messages=0
    )
    assert store.claim(job.id) is not None
    return job.id


def delta(text: str) -> list[Event]:
    """One delta event with this text, as an append takes it."""
    return [Event(DELTA, {"index": 0, "content": text})]
