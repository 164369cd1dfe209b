"""The job event schema and its encoding in the log and on pub/sub.

Deliberate choices (read before changing):

* An event is stored in the job's Redis list as ``"<type> <json data>"``. Its id is not
  stored: the event with id N is the N-th element of the list, so ids are contiguous by
  construction and ``RPUSH``'s return value assigns them atomically.
* A pub/sub message carries one or more events, one per line: ``"<id> <type> <json>"``.
  JSON never contains a raw line break (``json.dumps`` escapes ``\\n`` and ``\\r``), so
  splitting on ``\\n`` is safe, and U+2028 and friends pass through untouched.
* How a client reads the events is a projection of the log (``gateway/wire/``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

STARTED = "started"
DELTA = "delta"
RESET = "reset"
DONE = "done"
ERROR = "error"
CANCELLED = "cancelled"

TERMINAL_EVENTS = frozenset({DONE, ERROR, CANCELLED})
EVENT_TYPES = frozenset({STARTED, DELTA, RESET}) | TERMINAL_EVENTS


def dumps(data: Any) -> str:
    """Compact JSON, UTF-8 kept as is (the SSE stream is UTF-8)."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class Event:
    type: str
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def terminal(self) -> bool:
        return self.type in TERMINAL_EVENTS

    def entry(self) -> str:
        """The event as stored in the job's log."""
        return f"{self.type} {dumps(self.data)}"

    @classmethod
    def from_entry(cls, entry: str) -> Event:
        type_, _, data = entry.partition(" ")
        return cls(type_, json.loads(data))


def entry_type(entry: str) -> str:
    return entry.partition(" ")[0]


def parse_event_id(raw: str) -> int | None:
    """A cursor (``Last-Event-ID``, ``?after=``, an SSE ``id:``) as an event id, or None
    when it is not 1 to 18 ASCII digits. ``str.isdigit()`` would accept "²" or "١٢",
    which ``int()`` then refuses or reads as another number."""
    text = raw.strip()
    return int(text) if _EVENT_ID.fullmatch(text) else None


_EVENT_ID = re.compile(r"[0-9]{1,18}")


def parse_message(message: str) -> Iterator[tuple[int, str]]:
    """Split a pub/sub message into ``(event id, log entry)`` pairs."""
    for line in message.split("\n"):
        seq, _, entry = line.partition(" ")
        yield int(seq), entry


@dataclass
class ChoiceState:
    index: int
    content: str = ""
    reasoning: str = ""
    finish_reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "index": self.index,
            "content": self.content,
            "finish_reason": self.finish_reason,
        }
        if self.reasoning:
            out["reasoning"] = self.reasoning
        return out


@dataclass
class Transcript:
    """What a client knows after applying events in order (the poll view of a job)."""

    choices: dict[int, ChoiceState] = field(default_factory=dict)
    usage: dict[str, Any] | None = None
    usage_estimated: bool | None = None
    error: dict[str, Any] | None = None
    last_event_id: int = 0

    def apply(self, event_id: int, event: Event) -> None:
        self.last_event_id = event_id
        data = event.data
        if event.type == DELTA:
            choice = self.choices.setdefault(data["index"], ChoiceState(data["index"]))
            choice.content += data.get("content", "")
            choice.reasoning += data.get("reasoning", "")
        elif event.type == RESET:
            self.choices.clear()
        elif event.type == DONE:
            for index, reason in enumerate(data.get("finish_reasons", [])):
                self.choices.setdefault(index, ChoiceState(index)).finish_reason = reason
            self.usage = data.get("usage")
            self.usage_estimated = data.get("usage_estimated")
        elif event.type == ERROR:
            self.error = data.get("error")
        elif event.type == CANCELLED:
            self.usage = data.get("usage")
            self.usage_estimated = data.get("usage_estimated")

    def texts(self) -> list[str]:
        return [self.choices[i].content for i in sorted(self.choices)]

    def choice_list(self) -> list[dict[str, Any]]:
        return [self.choices[i].to_dict() for i in sorted(self.choices)]


def fold(entries: Iterable[tuple[int, str]]) -> Transcript:
    transcript = Transcript()
    for event_id, entry in entries:
        transcript.apply(event_id, Event.from_entry(entry))
    return transcript
