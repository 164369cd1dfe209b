"""The invariants, checked for every job after the soak (DESIGN.md, "Invariants").

For each job: it was accepted; its client received exactly one terminal event, last;
the ids it received across all its reconnects are 1..N, each once; the text after the
last ``reset`` is exactly what the upstream sent for the job's last attempt (the worker
logs each attempt's ``upstream_request_id``; the fake upstream recorded what each
request wrote); a ``done`` carries usage, and the upstream's own count when it sent one;
an ``error`` is one an injected fault explains; a ``cancelled`` follows a cancel; the poll
says what the stream said; the OpenAI SDK's text agrees with the log; and the workers
logged one outcome per attempt, never an internal error.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.chaos.faults import Fault
from bench.chaos.load import Received, Session
from devtools.fake_upstream import RecordedRequest, expected_reply
from sluice.events import Event, fold

# error type -> the fault kinds that can explain it
EXPLAINED_BY: dict[str, tuple[str, ...]] = {
    "upstream_timeout": ("upstream_stall", "upstream_stall_long"),
    "upstream_connection_error": ("upstream_disconnect",),
    "upstream_rate_limited": ("upstream_429",),
    "upstream_error": ("upstream_500",),
    "upstream_protocol_error": ("upstream_disconnect", "upstream_no_done"),
    "worker_lost": ("worker_kill", "burst_worker_kill", "redis_pause_long", "redis_kill"),
}
STATUS_OF = {"done": "succeeded", "error": "failed", "cancelled": "cancelled"}
OUTCOMES = ("job.succeeded", "job.failed", "job.stopped")


@dataclass
class WorkerLog:
    """What the workers' JSON logs say, by job and attempt."""

    request_of: dict[tuple[str, int], str] = field(default_factory=dict)
    outcomes: dict[tuple[str, int], list[str]] = field(default_factory=lambda: defaultdict(list))
    internal_errors: list[str] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)

    @classmethod
    def read(cls, paths: Iterable[Path]) -> WorkerLog:
        out = cls()
        for path in paths:
            for line in path.read_text(errors="replace").splitlines():
                if not line.startswith("{"):
                    continue
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                event, job = record.get("event"), record.get("job")
                if not event or not job:
                    continue
                out.counts[event] += 1
                attempt = record.get("attempt")
                if event == "job.first_delta" and record.get("upstream_request_id"):
                    out.request_of[(job, int(attempt))] = record["upstream_request_id"]
                if event in OUTCOMES and attempt is not None:
                    out.outcomes[(job, int(attempt))].append(event)
                if event == "job.failed" and record.get("error") == "internal_error":
                    out.internal_errors.append(f"{job}: {record.get('reason')}")
        return out


@dataclass
class Verdict:
    violations: list[str] = field(default_factory=list)
    terminals: Counter[str] = field(default_factory=Counter)
    explained_errors: Counter[str] = field(default_factory=Counter)
    unmapped: int = 0  # texts matched to a request without the worker's log line

    failed: list[Session] = field(default_factory=list)

    def fail(self, session: Session, what: str) -> None:
        self.violations.append(f"{session.kind} {session.tag} {session.job_id}: {what}")
        if session not in self.failed:
            self.failed.append(session)


def texts(events: list[Received]) -> tuple[dict[int, str], dict[int, str]]:
    content: dict[int, str] = {}
    reasoning: dict[int, str] = {}
    for e in events:
        if e.event == "delta":
            i = int(e.data.get("index", 0))
            if e.data.get("content"):
                content[i] = content.get(i, "") + e.data["content"]
            if e.data.get("reasoning"):
                reasoning[i] = reasoning.get(i, "") + e.data["reasoning"]
    return content, reasoning


def tool_calls(events: list[Received]) -> dict[int, list[dict[str, Any]]]:
    """The tool calls a client rebuilds from these events, per choice (docs/events.md)."""
    transcript = fold((e.id, Event(e.event, e.data).entry()) for e in events)
    return {i: c.tool_call_list() for i, c in transcript.choices.items() if c.tool_calls}


def _calls_prefix(got: dict[int, list[dict[str, Any]]], sent: dict[int, list[dict]]) -> bool:
    """Each rebuilt call is the start of the one the upstream sent: the same id, type and
    name, arguments that begin its arguments (a job stopped mid-call holds a prefix)."""
    for i, calls in got.items():
        theirs = sent.get(i, [])
        if len(calls) > len(theirs):
            return False
        for call, sent_call in zip(calls, theirs, strict=False):
            mine, their = call["function"], sent_call.get("function", {})
            if call["id"] != sent_call.get("id") or mine["name"] != their.get("name"):
                return False
            if not their.get("arguments", "").startswith(mine["arguments"]):
                return False
    return True


def after_last_reset(events: list[Received]) -> list[Received]:
    resets = [i for i, e in enumerate(events) if e.event == "reset"]
    return events[resets[-1] + 1 :] if resets else events


def _error_type(event: Received) -> str | None:
    return str(event.data["error"].get("type")) if event.event == "error" else None


def _overlaps(faults: list[Fault], kinds: tuple[str, ...], start: float, end: float) -> bool:
    return any(
        f.kind in kinds and f.started is not None and f.started <= end
        and (f.ended or end) >= start - 1.0
        for f in faults
    )  # fmt: skip


def check(
    sessions: list[Session],
    requests: list[RecordedRequest],
    worker_log: WorkerLog,
    faults: list[Fault],
    polls: dict[str, dict[str, Any] | None],
) -> Verdict:
    verdict = Verdict()
    by_id = {r.request_id: r for r in requests}
    by_prompt: dict[str, list[RecordedRequest]] = defaultdict(list)
    for r in requests:
        messages = (r.body or {}).get("messages") or [{}]
        by_prompt[str(messages[-1].get("content"))].append(r)
    for session in sessions:
        for problem in session.problems:
            verdict.fail(session, problem)
        if session.job_id is None:
            continue
        _check_job(session, by_id, by_prompt, worker_log, faults, polls, verdict)
    for (job, attempt), outcomes in worker_log.outcomes.items():
        if len(outcomes) > 1:
            verdict.violations.append(f"{job} attempt {attempt}: outcomes {outcomes}")
    verdict.violations += [f"internal error: {e}" for e in worker_log.internal_errors]
    return verdict


def _check_job(
    session: Session,
    by_id: dict[str, RecordedRequest],
    by_prompt: dict[str, list[RecordedRequest]],
    worker_log: WorkerLog,
    faults: list[Fault],
    polls: dict[str, dict[str, Any] | None],
    verdict: Verdict,
) -> None:
    events = session.received
    ids = [e.id for e in events]
    if ids != list(range(1, len(ids) + 1)):
        repeated = len(ids) - len(set(ids))
        verdict.fail(session, f"ids not 1..N across reconnects ({repeated} repeated): {ids[:60]}")
        return
    terminals = [e for e in events if e.event in STATUS_OF]
    terminal = session.terminal
    if len(terminals) != 1 or terminal is None:
        verdict.fail(session, f"{len(terminals)} terminal events, last {events[-1:]}")
        return
    label = terminal.event
    if terminal.event == "error":
        label = f"error {terminal.data['error'].get('type')}"
    verdict.terminals[label] += 1
    tail = after_last_reset(events)
    content, reasoning = texts(tail)
    calls = tool_calls(tail)
    request = _request_of_last_attempt(session, tail, by_id, by_prompt, worker_log, verdict,
                                       content)  # fmt: skip
    sent = {i: t for i, t in (request.sent if request else {}).items() if t}
    sent_reasoning = {i: t for i, t in (request.reasoning_sent if request else {}).items() if t}
    sent_calls = {i: c for i, c in (request.tool_calls_sent if request else {}).items() if c}
    if terminal.event in ("cancelled", "error"):
        # ended by someone else than the attempt streaming it (a cancel, the reaper at
        # the attempt limit): the upstream went on until the worker saw it, or the
        # worker died with appends in flight; or the attempt failed and stopped reading
        # (its read timed out just before a stall ended, its connection broke with bytes
        # in flight): what the upstream wrote after that never reached it. What the log
        # holds is then a prefix (a lost or repeated piece inside it still fails)
        prefix = (
            all(sent.get(i, "").startswith(t) for i, t in content.items())
            and all(sent_reasoning.get(i, "").startswith(t) for i, t in reasoning.items())
            and _calls_prefix(calls, sent_calls)
        )
        if not prefix:
            verdict.fail(session, f"cancelled with text {content!r:.200} that is not a prefix "
                         f"of what the upstream sent, {sent!r:.200}")  # fmt: skip
    elif content != sent or reasoning != sent_reasoning:
        verdict.fail(session, f"text differs from what the upstream sent for the last attempt: "
                     f"got {content!r:.200} sent {sent!r:.200}")  # fmt: skip
    elif calls != sent_calls:
        verdict.fail(session, f"tool calls differ from what the upstream sent for the last "
                     f"attempt: got {calls!r:.300} sent {sent_calls!r:.300}")  # fmt: skip
    if terminal.event == "done":
        _check_done(session, terminal, request, content, verdict)
    elif terminal.event == "error":
        kind = str(terminal.data["error"].get("type"))
        # from when the client began: an SDK client learns its job's id only once the job
        # has its first delta or has failed
        start, end = session.started, session.finished or session.started
        if kind not in EXPLAINED_BY or not _overlaps(faults, EXPLAINED_BY[kind], start, end):
            verdict.fail(session, f"an error no fault explains: {terminal.data['error']}")
        else:
            verdict.explained_errors[kind] += 1
    elif terminal.event == "cancelled" and session.cancel is None:
        verdict.fail(session, "cancelled, but nobody cancelled it")
    cancelled = session.cancel is not None and session.cancel.get("status") == "cancelled"
    if cancelled and terminal.event != "cancelled":
        verdict.fail(session, f"the cancel answered cancelled, the stream ended {label}")
    _check_poll(session, polls.get(session.job_id or ""), terminal, content, calls, verdict)
    _check_sdk(session, events, content, verdict)


def _request_of_last_attempt(
    session: Session,
    tail: list[Received],
    by_id: dict[str, RecordedRequest],
    by_prompt: dict[str, list[RecordedRequest]],
    worker_log: WorkerLog,
    verdict: Verdict,
    content: dict[int, str],
) -> RecordedRequest | None:
    started = [e for e in tail if e.event == "started"]
    if not started:
        return None  # ended while queued (again): no attempt's text
    attempt = int(started[-1].data["attempt"])
    request_id = worker_log.request_of.get((str(session.job_id), attempt))
    if request_id is not None:
        return by_id.get(request_id)
    if not content:
        return None
    # the worker died between appending its first delta and logging it: any request of
    # this job that sent exactly this text (a lost or repeated delta matches none)
    matching = [
        request
        for request in by_prompt.get(f"chaos {session.tag}", [])
        if {i: t for i, t in request.sent.items() if t} == content
    ]
    if not matching:
        return None
    verdict.unmapped += 1
    return max(matching, key=lambda request: request.finished)  # the last to finish, if any


def _check_done(
    session: Session,
    terminal: Received,
    request: RecordedRequest | None,
    content: dict[int, str],
    verdict: Verdict,
) -> None:
    if request is None or not request.finished:
        verdict.fail(session, "done, but the upstream never finished that attempt's stream")
        return
    n = int(session.body.get("n") or 1)
    for i in range(n):
        if content.get(i, "") != expected_reply(request.body or {}, i):
            verdict.fail(session, f"done with choice {i} incomplete")
    usage = terminal.data.get("usage") or {}
    if not all(isinstance(usage.get(k), int) for k in ("prompt_tokens", "completion_tokens",
                                                       "total_tokens")):  # fmt: skip
        verdict.fail(session, f"done without usage: {terminal.data}")
    elif terminal.data.get("usage_estimated") is False and (
        usage["completion_tokens"] != request.pieces_sent
    ):
        verdict.fail(session, f"usage {usage} is not the upstream's ({request.pieces_sent})")


def _check_poll(
    session: Session,
    poll: dict[str, Any] | None,
    terminal: Received,
    content: dict[int, str],
    calls: dict[int, list[dict[str, Any]]],
    verdict: Verdict,
) -> None:
    if poll is None:
        verdict.fail(session, "the poll never answered")
        return
    if poll["status"] != STATUS_OF[terminal.event]:
        verdict.fail(session, f"poll says {poll['status']}, the stream ended {terminal.event}")
    polled = {c["index"]: c["content"] for c in poll["choices"] if c["content"]}
    if polled != content:
        verdict.fail(session, f"poll text {polled!r:.200} differs from the stream's")
    polled_calls = {c["index"]: c["tool_calls"] for c in poll["choices"] if c.get("tool_calls")}
    if polled_calls != calls:
        verdict.fail(session, f"poll tool calls {polled_calls!r:.200} differ from the stream's")
    if poll["last_event_id"] != terminal.id:
        verdict.fail(session, f"poll last_event_id {poll['last_event_id']} != {terminal.id}")


def _check_sdk(
    session: Session, events: list[Received], content: dict[int, str], verdict: Verdict
) -> None:
    if session.kind != "sdk" or any(e.event == "reset" for e in events):
        return
    for i, text in session.sdk_text.items():
        final = content.get(i, "")
        if session.sdk_completed and text != final:
            verdict.fail(session, f"the SDK streamed {text!r:.120}, the log holds {final!r:.120}")
        elif not final.startswith(text):
            verdict.fail(session, f"the SDK's text {text!r:.120} is not a prefix of the log's")
