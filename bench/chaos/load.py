"""The soak's clients: a steady mix of sessions, each one job, driven as real clients drive
Sluice, and each recording everything it received.

Every client resumes as ``EventSource`` does: after a dropped connection, a stream that
ended without a terminal event, or an error answer, it reconnects with ``Last-Event-ID``
(here to the other gateway, to prove that any gateway can take over). Submissions carry
an ``Idempotency-Key`` and are retried on a connection error or a 503, after its
``Retry-After``. The kinds (``KINDS``) are the shapes of real use: short and long
answers, two choices, reasoning, cancels, slow readers, clients that drop on purpose,
``"stream": true``, the OpenAI SDK on ``/v1/chat/completions``, and parallel tool calls
whose arguments arrive in fragments.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import openai
from httpx_sse import EventSource

from sluice.events import TERMINAL_EVENTS

log = logging.getLogger("bench.chaos")
SUBMIT_PATIENCE = 90.0  # seconds a client keeps trying to get its job accepted
FOLLOW_PATIENCE = 150.0  # seconds a client keeps following a job before calling it a hang
RECONNECT_DELAY = 0.3
TIMEOUT = httpx.Timeout(30.0, connect=5.0)

# kind: (weight, model); the fake upstream's model string picks the answer's shape
KINDS: dict[str, tuple[float, str]] = {
    "plain": (25, "slow;delay=0.02;words=12"),
    "long": (8, "slow;delay=0.005;words=220"),
    "n2": (8, "slow;delay=0.02;words=10"),
    "reasoning": (8, "reasoning;delay=0.02;words=10"),
    "cancel": (8, "slow;delay=0.05;words=60"),
    "slow_reader": (6, "slow;delay=0.005;words=80"),
    "dropper": (15, "slow;delay=0.02;words=30"),
    "stream_post": (10, "slow;delay=0.02;words=16"),
    "sdk": (8, "slow;delay=0.02;words=14"),
    "tools": (8, "slow;delay=0.01;calls=2"),
    "probe": (0, "openai;words=3"),
}

TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"},
                                         "unit": {"enum": ["celsius", "fahrenheit"]}}}}},
    {"type": "function", "function": {"name": "get_time", "parameters": {
        "type": "object", "properties": {"zone": {"type": "string"}}}}},
]  # fmt: skip


@dataclass
class Received:
    id: int
    event: str
    data: dict[str, Any]


@dataclass
class Session:
    """One client and its job: what it asked for and everything it saw."""

    kind: str
    tag: str
    seed: int
    gateway: int = 0  # the gateway it starts with; it alternates on trouble
    pinned: bool = False  # a probe: it keeps to its gateway
    body: dict[str, Any] = field(default_factory=dict)
    job_id: str | None = None
    events_url: str | None = None
    started: float = 0.0
    accepted: float | None = None
    finished: float | None = None
    received: list[Received] = field(default_factory=list)
    reconnects: int = 0
    answers: Counter[str] = field(default_factory=Counter)  # HTTP statuses and errors seen
    cancel: dict[str, Any] | None = None  # the cancel's answer, for cancel sessions
    sdk_text: dict[int, str] = field(default_factory=dict)
    sdk_completed: bool = False
    sdk_error: str = ""
    problems: list[str] = field(default_factory=list)  # what the client saw go wrong

    @property
    def terminal(self) -> Received | None:
        last = self.received[-1] if self.received else None
        return last if last is not None and last.event in TERMINAL_EVENTS else None


class Client:
    """Runs sessions against the deployment's gateways (shared HTTP connection pools)."""

    def __init__(self, gateways: list[str]) -> None:
        self.gateways = gateways
        self.http = httpx.Client(timeout=TIMEOUT, limits=httpx.Limits(max_connections=400))
        self.sdks = [
            openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=30.0)
            for url in gateways
        ]

    def close(self) -> None:
        self.http.close()
        for sdk in self.sdks:
            sdk.close()

    # -- one session ----------------------------------------------------------------------

    def run(self, session: Session) -> None:
        rng = random.Random(session.seed)
        _weight, model = KINDS[session.kind]
        session.body = {
            "model": model,
            "messages": [{"role": "user", "content": f"chaos {session.tag}"}],
        }
        if session.kind == "n2":
            session.body["n"] = 2
        if session.kind == "tools":  # two parallel calls, each in 4-character fragments
            session.body["tools"] = TOOLS
        session.started = time.monotonic()
        try:
            if session.kind == "sdk":
                self._sdk(session, rng)
            elif session.kind == "stream_post":
                self._stream_post(session, rng)
            else:
                if self._submit(session):
                    self._follow(session, rng)
        except Exception as exc:  # a client bug, not a Sluice one: still reported
            session.problems.append(f"client exception: {type(exc).__name__}: {exc}")
            log.exception("session %s failed", session.tag)
        session.finished = time.monotonic()

    def _url(self, session: Session, path: str) -> str:
        return self.gateways[session.gateway % len(self.gateways)] + path

    def _switch(self, session: Session) -> None:
        if not session.pinned:
            session.gateway += 1

    def _submit(self, session: Session, extra: dict[str, Any] | None = None) -> bool:
        """POST /v1/jobs until accepted; False if it never is."""
        deadline = time.monotonic() + SUBMIT_PATIENCE
        while time.monotonic() < deadline:
            try:
                response = self.http.post(
                    self._url(session, "/v1/jobs"),
                    json={**session.body, **(extra or {})},
                    headers={"Idempotency-Key": session.tag},
                )
            except httpx.HTTPError as exc:
                session.answers[f"submit {type(exc).__name__}"] += 1
                self._switch(session)
                time.sleep(RECONNECT_DELAY)
                continue
            session.answers[f"submit {response.status_code}"] += 1
            if response.status_code == 202:
                job = response.json()
                session.job_id, session.events_url = job["id"], job["events_url"]
                session.accepted = time.monotonic()
                return True
            if response.status_code == 503 and response.headers.get("retry-after"):
                time.sleep(min(float(response.headers["retry-after"]), 5.0))
                self._switch(session)
                continue
            session.problems.append(f"submit answered {response.status_code}: {response.text}")
            return False
        session.problems.append("never accepted")
        return False

    def _follow(self, session: Session, rng: random.Random, first: bool = True) -> None:
        """Read the job's events to its terminal event, reconnecting as EventSource does."""
        assert session.events_url is not None
        deadline = time.monotonic() + FOLLOW_PATIENCE
        drop_after = rng.randint(3, 12) if session.kind == "dropper" else None
        cancel_after = rng.randint(2, 8) if session.kind == "cancel" else None
        pause = 0.02 if session.kind == "slow_reader" else 0.0
        if not first:
            self._switch(session)
        while session.terminal is None and time.monotonic() < deadline:
            last = session.received[-1].id if session.received else 0
            headers = {"Last-Event-ID": str(last)} if last else {}
            try:
                with (
                    self.http.stream(
                        "GET", self._url(session, session.events_url), headers=headers
                    ) as response,
                    _closing_at(deadline, response),
                ):
                    session.answers[f"events {response.status_code}"] += 1
                    if response.status_code != 200:
                        if response.status_code != 503:
                            session.problems.append(
                                f"events after {last} answered {response.status_code}: "
                                f"{response.read()[:300]!r}"
                            )
                            if response.status_code in (204, 400, 404):
                                return
                        raise _Retry
                    for sse in EventSource(response).iter_sse():
                        session.received.append(
                            Received(int(sse.id), sse.event, json.loads(sse.data))
                        )
                        if session.terminal is not None:
                            return
                        deltas = sum(e.event == "delta" for e in session.received)
                        if cancel_after is not None and deltas >= cancel_after:
                            cancel_after = None
                            self._cancel(session)
                        if drop_after is not None and len(session.received) >= drop_after:
                            drop_after = len(session.received) + rng.randint(3, 12)
                            session.answers["dropped on purpose"] += 1
                            break  # the client goes away; it comes back to the other gateway
                        if pause:
                            time.sleep(pause)
            except (httpx.HTTPError, httpx.StreamError, _Retry) as exc:
                session.answers[f"events {type(exc).__name__}"] += 1
            session.reconnects += 1
            self._switch(session)
            time.sleep(RECONNECT_DELAY)
        if session.terminal is None:
            session.problems.append(f"no terminal event after {FOLLOW_PATIENCE:.0f}s (hang)")

    def _cancel(self, session: Session) -> None:
        """POST cancel (any gateway) until it answers 200."""
        for _ in range(60):
            try:
                response = self.http.post(
                    self.gateways[(session.gateway + 1) % len(self.gateways)]
                    + f"/v1/jobs/{session.job_id}/cancel"
                )
            except httpx.HTTPError:
                time.sleep(RECONNECT_DELAY)
                continue
            session.answers[f"cancel {response.status_code}"] += 1
            if response.status_code == 200:
                session.cancel = response.json()
                return
            time.sleep(RECONNECT_DELAY)
        session.problems.append("cancel never answered 200")

    def _stream_post(self, session: Session, rng: random.Random) -> None:
        """``"stream": true``: the POST's answer is the stream; resume from its headers."""
        deadline = time.monotonic() + SUBMIT_PATIENCE
        body = {**session.body, "stream": True}
        while session.job_id is None and time.monotonic() < deadline:
            until = time.monotonic() + FOLLOW_PATIENCE
            try:
                with self.http.stream(
                    "POST", self._url(session, "/v1/jobs"), json=body,
                    headers={"Idempotency-Key": session.tag},
                ) as response, _closing_at(until, response):  # fmt: skip
                    session.answers[f"submit {response.status_code}"] += 1
                    if response.status_code == 503:
                        raise _Retry
                    if response.status_code != 200:
                        session.problems.append(f"stream POST answered {response.status_code}")
                        return
                    session.job_id = response.headers["x-sluice-job-id"]
                    session.events_url = response.headers["x-sluice-events-url"]
                    session.accepted = time.monotonic()
                    for sse in EventSource(response).iter_sse():
                        session.received.append(
                            Received(int(sse.id), sse.event, json.loads(sse.data))
                        )
                        if session.terminal is not None:
                            return
            except (httpx.HTTPError, httpx.StreamError, _Retry) as exc:
                session.answers[f"submit {type(exc).__name__}"] += 1
                time.sleep(RECONNECT_DELAY)
                self._switch(session)
        if session.job_id is None:
            session.problems.append("never accepted")
            return
        self._follow(session, rng, first=False)

    def _sdk(self, session: Session, rng: random.Random) -> None:
        """The OpenAI SDK, streaming with usage; when its stream breaks, the app resumes
        from ``X-Sluice-Job-Id`` with /v1/jobs/<id>/events, as the README says."""
        deadline = time.monotonic() + SUBMIT_PATIENCE
        while session.job_id is None and time.monotonic() < deadline:
            sdk = self.sdks[session.gateway % len(self.sdks)]
            try:
                with sdk.chat.completions.with_streaming_response.create(
                    model=session.body["model"],
                    messages=session.body["messages"],
                    stream=True,
                    stream_options={"include_usage": True},
                    extra_headers={"Idempotency-Key": session.tag},
                ) as response:
                    session.job_id = response.headers["x-sluice-job-id"]
                    session.events_url = f"/v1/jobs/{session.job_id}/events"
                    session.accepted = time.monotonic()
                    until = time.monotonic() + FOLLOW_PATIENCE
                    with _closing_at(until, response.http_response):
                        self._read_sdk_stream(session, response)
                    session.sdk_completed = True
            except openai.APIStatusError as exc:
                session.answers[f"sdk {exc.status_code}"] += 1
                session.sdk_error = f"{exc.status_code}: {exc.message}"
                job_id = exc.response.headers.get("x-sluice-job-id")
                if session.job_id is None and job_id:  # it failed before its first delta
                    session.job_id, session.events_url = job_id, f"/v1/jobs/{job_id}/events"
                    session.accepted = time.monotonic()
            except (openai.APIError, httpx.HTTPError, httpx.StreamError) as exc:
                session.answers[f"sdk {type(exc).__name__}"] += 1
                session.sdk_error = f"{type(exc).__name__}: {exc}"
            if session.job_id is None:
                time.sleep(RECONNECT_DELAY)
                self._switch(session)
        if session.job_id is None:
            job_id = self._job_by_key(session)
            if job_id is None:
                session.problems.append("never accepted")
                return
            session.job_id, session.events_url = job_id, f"/v1/jobs/{job_id}/events"
        self._follow(session, rng, first=False)  # all its events, from the log

    @staticmethod
    def _read_sdk_stream(session: Session, response: Any) -> None:
        for chunk in response.parse():
            for choice in chunk.choices:
                text = choice.delta.content or ""
                session.sdk_text[choice.index] = session.sdk_text.get(choice.index, "") + text

    def _job_by_key(self, session: Session) -> str | None:
        """The job an SDK request that failed before its headers created, if any: the
        same Idempotency-Key on /v1/jobs returns it (202) without starting another."""
        if not self._submit(session):
            return None
        return session.job_id

    # -- after the run ----------------------------------------------------------------------

    def poll(self, job_id: str) -> dict[str, Any] | None:
        for attempt in range(20):
            try:
                response = self.http.get(self.gateways[attempt % 2] + f"/v1/jobs/{job_id}")
                if response.status_code == 200:
                    return dict(response.json())
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        return None


@contextlib.contextmanager
def _closing_at(deadline: float, response: httpx.Response) -> Iterator[None]:
    """Close the response at the deadline: a stream that only sends heartbeats would
    otherwise keep its reader waiting for an event forever."""
    timer = threading.Timer(max(0.0, deadline - time.monotonic()), response.close)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


class _Retry(Exception):
    """An answer worth reconnecting after (a 503, a non-SSE answer)."""
