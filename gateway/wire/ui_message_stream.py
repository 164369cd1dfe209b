"""The Vercel AI SDK's UI message stream (``useChat``'s default transport): a job's log as
the parts ai 7 reads (``uiMessageChunkSchema`` of the pinned ``ai``, web/package.json).

Frames are ``data: {part}\\n\\n`` and ``data: [DONE]\\n\\n`` at the end; the response
carries ``x-vercel-ai-ui-message-stream: v1``. One job is one assistant message:

* ``start`` (``messageId``: ``msg_`` + the job id's random part, or the id of the
  assistant message the job continues: so a replay names the same message, and
  ``useChat`` replaces it instead of adding a second) and ``start-step``, at once (the
  first byte, which PaaS routers wait for);
* ``content`` (and ``refusal``) fragments of choice 0 as ``text-start`` /
  ``text-delta`` / ``text-end``, ``reasoning`` as ``reasoning-start`` / ``-delta`` /
  ``-end``; a part ends when another kind of fragment starts (ids ``text-N``,
  ``reasoning-N``, numbered in log order, so a replay gives the same ids);
* a tool call's first fragment as ``tool-input-start`` (``toolCallId``, ``toolName``;
  ``inputEncoding: "text"`` for a custom tool), its argument fragments as
  ``tool-input-delta``; at ``done``, ``tool-input-available`` with the parsed
  arguments, or ``tool-input-error`` when they are not JSON (a call cut by
  ``max_tokens``);
* ``done``: ``finish-step`` and ``finish`` (``finishReason`` in ai 7's words:
  ``stop``, ``length``, ``tool-calls``, ``content-filter``, else ``other``);
* ``error``: an ``error`` part (``errorText``: the job's error message); ``cancelled``:
  ``abort`` (``reason: "cancelled"``); a stream this gateway stops following before the
  job's end (shutdown, Redis lost): an ``error`` part saying so. Before each, the open
  text or reasoning part ends and a call still streaming is a ``tool-input-error``;
* ``reset`` (a worker was lost and the job restarts): ``reset-step``, which ai 7 has for
  exactly this, drops the step's parts from the message (text, reasoning, calls), and
  the restarted attempt's parts follow in the same step; a reset before any part is
  nothing. The text shown is always the log's, nothing doubled.

Choices other than 0 (``n`` > 1) are not shown: a UI message has one answer. There is no
cursor: a stream always starts at the job's first event (``GET /api/chat/<id>/stream``
replays the whole answer, then follows it live; ``useChat`` resets the message on the
replayed ``start``). ``message_parts`` folds the same parts into the message's ``parts``
for ``GET /api/chat/<id>``, so a reloaded page shows what the stream showed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from gateway.feed import HEARTBEAT, Item
from sluice.events import CANCELLED, DELTA, DONE, ERROR, RESET, Event, dumps

HEADERS = {"x-vercel-ai-ui-message-stream": "v1"}
DONE_FRAME = b"data: [DONE]\n\n"
FINISH_REASONS = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool-calls",
    "function_call": "tool-calls",
    "content_filter": "content-filter",
}
INTERRUPTED = "the stream was interrupted before the answer ended; reload to resume it"
LOST = "this answer's log no longer holds all its events (it expired or was lost)"
Part = dict[str, Any]


def message_id(job_id: str) -> str:
    """The assistant message a job answers with, named after the job (a replay of the
    job's stream names the same message)."""
    return "msg_" + job_id.removeprefix("job_")


@dataclass
class _Call:
    id: str
    name: str
    custom: bool
    arguments: str = ""

    def ready(self) -> Part:
        """``tool-input-available`` with the parsed input, or ``tool-input-error``."""
        head = {"toolCallId": self.id, "toolName": self.name}
        if self.custom:
            return {"type": "tool-input-available", **head, "input": self.arguments}
        try:
            parsed = json.loads(self.arguments) if self.arguments.strip() else {}
        except ValueError:
            error = "the arguments are not complete JSON (cut short?)"
            return {"type": "tool-input-error", **head, "input": self.arguments, "errorText": error}
        return {"type": "tool-input-available", **head, "input": parsed}


class UIMessageParts:
    """The log's events, one at a time, as UI message stream parts (dicts)."""

    def __init__(self, message_id: str) -> None:
        self.message_id = message_id
        self.open: tuple[str, str] | None = None  # ("text" | "reasoning", part id)
        self.calls: dict[int, _Call] = {}
        self.count = 0  # parts started, for their ids
        self.dirty = False  # parts since the step started (a reset must take them back)

    def start(self) -> list[Part]:
        return [{"type": "start", "messageId": self.message_id}, {"type": "start-step"}]

    def event(self, event: Event) -> list[Part]:
        data = event.data
        if event.type == DELTA:
            return self._delta(data) if data.get("index", 0) == 0 else []
        if event.type == RESET:
            taken_back = [{"type": "reset-step"}] if self.dirty else []
            self.open, self.calls, self.dirty = None, {}, False
            return taken_back
        if event.type == DONE:
            reasons = data.get("finish_reasons") or ["stop"]
            reason = FINISH_REASONS.get(str(reasons[0] or "stop"), "other")
            calls = [call.ready() for call in self.calls.values()]
            return [
                *self._close(),
                *calls,
                {"type": "finish-step"},
                {"type": "finish", "finishReason": reason},
            ]
        if event.type == ERROR:
            message = str(data.get("error", {}).get("message") or "the job failed")
            return [*self._end("the job failed"), {"type": "error", "errorText": message}]
        if event.type == CANCELLED:
            return [*self._end("the job was cancelled"), {"type": "abort", "reason": "cancelled"}]
        return []

    def interrupted(self) -> list[Part]:
        return [
            *self._end("the stream was interrupted"),
            {"type": "error", "errorText": INTERRUPTED},
        ]

    def _end(self, why: str) -> list[Part]:
        """The open parts closed, before a failure or a cancel: a call whose arguments
        were still coming is a ``tool-input-error`` (never left "input-streaming")."""
        head = {"type": "tool-input-error"}
        calls = [
            {**head, "toolCallId": c.id, "toolName": c.name, "input": c.arguments,
             "errorText": f"{why} before the call was complete"}
            for c in self.calls.values()
        ]  # fmt: skip
        self.calls = {}
        return [*self._close(), *calls]

    def _delta(self, data: dict[str, Any]) -> list[Part]:
        fragment = data.get("tool_call")
        if isinstance(fragment, dict):
            return self._tool_call(fragment)
        kind = "reasoning" if "reasoning" in data else "text"
        text = (
            data.get("reasoning")
            if kind == "reasoning"
            else data.get("content", data.get("refusal"))
        )
        if not isinstance(text, str) or not text:
            return []  # (a fragment that only carries logprobs)
        out: list[Part] = []
        if self.open is None or self.open[0] != kind:
            out += self._close()
            self.count += 1
            self.open = (kind, f"{kind}-{self.count}")
            out.append({"type": f"{kind}-start", "id": self.open[1]})
        self.dirty = True
        out.append({"type": f"{kind}-delta", "id": self.open[1], "delta": text})
        return out

    def _tool_call(self, fragment: dict[str, Any]) -> list[Part]:
        out = self._close()
        index = int(fragment.get("index", 0))
        call = self.calls.get(index)
        if call is None:
            call_id = str(fragment.get("id") or f"call_{self.message_id}_{index}")
            custom = fragment.get("type") == "custom"
            call = self.calls[index] = _Call(call_id, str(fragment.get("name") or ""), custom)
            start: Part = {"type": "tool-input-start", "toolCallId": call.id, "toolName": call.name}
            if custom:
                start["inputEncoding"] = "text"
            out.append(start)
        self.dirty = True
        arguments = str(fragment.get("arguments") or "")
        if arguments:
            call.arguments += arguments
            out.append(
                {"type": "tool-input-delta", "toolCallId": call.id, "inputTextDelta": arguments}
            )
        return out

    def _close(self) -> list[Part]:
        if self.open is None:
            return []
        kind, part_id = self.open
        self.open = None
        return [{"type": f"{kind}-end", "id": part_id}]


def frame(part: Part) -> bytes:
    return f"data: {dumps(part)}\n\n".encode()


class UIMessageStream:
    """The projection: the parts above as SSE frames, ``[DONE]`` at the end."""

    def __init__(self, message_id: str) -> None:
        self.parts = UIMessageParts(message_id)

    @staticmethod
    def event_id(cursor: str) -> int | None:
        """No cursor of its own: a stream always starts at the job's first event."""
        return 0 if cursor == "" else None

    def frames(self, items: Iterable[Item]) -> Iterator[bytes]:
        yield b"".join(frame(p) for p in self.parts.start())
        for item in items:
            if item is HEARTBEAT:
                yield b": keep-alive\n"
                continue
            assert isinstance(item, tuple)
            event = Event.from_entry(item[1])
            out = b"".join(frame(p) for p in self.parts.event(event))
            if event.terminal:
                yield out + DONE_FRAME
                return
            if out:
                yield out
        yield b"".join(frame(p) for p in self.parts.interrupted()) + DONE_FRAME

    def lost(self) -> bytes:
        """The whole stream of a job whose log no longer holds all its events."""
        parts = [*self.parts.start(), {"type": "error", "errorText": LOST}]
        return b"".join(frame(p) for p in parts) + DONE_FRAME


def message_parts(message_id: str, entries: Iterable[tuple[int, str]]) -> list[Part]:
    """The assistant message's ``parts`` once the stream of ``entries`` has been read, as
    ai 7's ``processUIMessageStream`` builds them (no ``providerMetadata``)."""
    parts: list[Part] = []
    by_id: dict[str, Part] = {}
    projection = UIMessageParts(message_id)
    for chunk in _chunks(projection, entries):
        kind = chunk["type"]
        if kind == "start-step":
            parts.append({"type": "step-start"})
        elif kind == "text-start":
            part = by_id[chunk["id"]] = {"type": "text", "text": "", "state": "streaming"}
            parts.append(part)
        elif kind == "reasoning-start":
            part = by_id[chunk["id"]] = {"type": "reasoning", "id": chunk["id"], "text": ""}
            part["state"] = "streaming"
            parts.append(part)
        elif kind in ("text-delta", "reasoning-delta"):
            by_id[chunk["id"]]["text"] += chunk["delta"]
        elif kind in ("text-end", "reasoning-end"):
            by_id[chunk["id"]]["state"] = "done"
        elif kind == "tool-input-start":
            part = {"type": f"tool-{chunk['toolName']}", "toolCallId": chunk["toolCallId"]}
            part["state"] = "input-streaming"
            by_id[chunk["toolCallId"]] = part
            parts.append(part)
        elif kind == "tool-input-available":
            by_id[chunk["toolCallId"]].update(state="input-available", input=chunk["input"])
        elif kind == "tool-input-error":
            by_id[chunk["toolCallId"]].update(
                state="output-error", input=chunk["input"], errorText=chunk["errorText"]
            )
        elif kind == "reset-step":
            last_step = max(i for i, p in enumerate(parts) if p["type"] == "step-start")
            del parts[last_step + 1 :]
    return parts


def _chunks(projection: UIMessageParts, entries: Iterable[tuple[int, str]]) -> Iterator[Part]:
    yield from projection.start()
    for _, entry in entries:
        event = Event.from_entry(entry)
        yield from projection.event(event)
        if event.terminal:
            return
