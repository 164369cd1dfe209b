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
from dataclasses import dataclass, field, replace
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
class ToolCallState:
    """One tool call of a choice, rebuilt from its ``tool_call`` fragments."""

    id: str = ""
    type: str = ""
    name: str = ""
    arguments: str = ""

    def apply(self, fragment: dict[str, Any]) -> None:
        # the first non-empty id, type and name win (Mistral repeats them on every fragment)
        self.id = self.id or str(fragment.get("id") or "")
        self.type = self.type or str(fragment.get("type") or "")
        self.name = self.name or str(fragment.get("name") or "")
        self.arguments += str(fragment.get("arguments") or "")

    def copy(self) -> ToolCallState:
        return replace(self)

    def to_dict(self) -> dict[str, Any]:
        """OpenAI's message shape: ``function: {name, arguments}`` (``custom: {name,
        input}`` for a custom tool)."""
        if self.type == "custom":
            body = {"name": self.name, "input": self.arguments}
            return {"id": self.id, "type": "custom", "custom": body}
        body = {"name": self.name, "arguments": self.arguments}
        return {"id": self.id, "type": self.type or "function", "function": body}


@dataclass
class ChoiceState:
    """One choice, rebuilt from its ``delta`` fragments (docs/events.md)."""

    index: int
    content: str = ""
    reasoning: str = ""
    refusal: str = ""
    tool_calls: dict[int, ToolCallState] = field(default_factory=dict)
    # logprobs of the content and of the refusal fragments; None until one carries them
    content_logprobs: list[Any] | None = None
    refusal_logprobs: list[Any] | None = None
    finish_reason: str | None = None

    def apply(self, data: dict[str, Any]) -> None:
        logprobs = data.get("logprobs")
        if "content" in data:
            self.content += data["content"]
            if isinstance(logprobs, list):
                self.content_logprobs = (self.content_logprobs or []) + logprobs
        elif "refusal" in data:
            self.refusal += data["refusal"]
            if isinstance(logprobs, list):
                self.refusal_logprobs = (self.refusal_logprobs or []) + logprobs
        elif "reasoning" in data:
            self.reasoning += data["reasoning"]
        elif isinstance(data.get("tool_call"), dict):
            fragment = data["tool_call"]
            call_index = fragment.get("index", 0)
            self.tool_calls.setdefault(call_index, ToolCallState()).apply(fragment)

    def copy(self) -> ChoiceState:
        """A copy that ``apply`` can extend without touching this one (the strings are
        shared, being immutable; the containers are new)."""
        return replace(
            self,
            tool_calls={i: call.copy() for i, call in self.tool_calls.items()},
            content_logprobs=None if self.content_logprobs is None else [*self.content_logprobs],
            refusal_logprobs=None if self.refusal_logprobs is None else [*self.refusal_logprobs],
        )

    def tool_call_list(self) -> list[dict[str, Any]]:
        return [self.tool_calls[i].to_dict() for i in sorted(self.tool_calls)]

    def logprobs(self) -> dict[str, Any] | None:
        """OpenAI's ``choice.logprobs`` object, or None when no fragment carried any."""
        if self.content_logprobs is None and self.refusal_logprobs is None:
            return None
        return {"content": self.content_logprobs, "refusal": self.refusal_logprobs}

    def texts(self) -> list[str]:
        """Everything the model wrote for this choice (what completion tokens count)."""
        calls = [part for c in self.tool_calls.values() for part in (c.name, c.arguments)]
        return [t for t in (self.reasoning, self.content, self.refusal, *calls) if t]

    def to_dict(self) -> dict[str, Any]:
        """The poll view: fields beyond content and finish_reason only when present."""
        out: dict[str, Any] = {
            "index": self.index,
            "content": self.content,
            "finish_reason": self.finish_reason,
        }
        if self.reasoning:
            out["reasoning"] = self.reasoning
        if self.refusal:
            out["refusal"] = self.refusal
        if self.tool_calls:
            out["tool_calls"] = self.tool_call_list()
        logprobs = self.logprobs()
        if logprobs is not None:
            out["logprobs"] = logprobs
        return out


@dataclass
class Transcript:
    """What a client knows after applying events in order (the poll view of a job)."""

    choices: dict[int, ChoiceState] = field(default_factory=dict)
    usage: dict[str, Any] | None = None
    usage_estimated: bool | None = None
    error: dict[str, Any] | None = None
    last_event_id: int = 0
    # from the latest ``started`` (``attempt`` also from a ``reset``: the attempt to come)
    model: str | None = None
    attempt: int | None = None

    def apply(self, event_id: int, event: Event) -> None:
        self.last_event_id = event_id
        data = event.data
        if event.type == DELTA:
            self.choices.setdefault(data["index"], ChoiceState(data["index"])).apply(data)
        elif event.type == STARTED:
            self.model = data.get("model", self.model)
            self.attempt = data.get("attempt", self.attempt)
        elif event.type == RESET:
            self.choices.clear()
            self.attempt = data.get("attempt", self.attempt)
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

    def copy(self) -> Transcript:
        """A copy to apply more events to while others read this one (the gateway's
        snapshot cache, ``gateway/snapshots.py``, never changes a transcript it shares).
        Cheap: the texts are shared strings, only the containers are new."""
        return replace(
            self,
            choices={i: choice.copy() for i, choice in self.choices.items()},
            usage=None if self.usage is None else {**self.usage},
            error=None if self.error is None else {**self.error},
        )

    def texts(self) -> list[str]:
        return [self.choices[i].content for i in sorted(self.choices)]

    def completion_texts(self) -> list[str]:
        """Every text the model wrote, in every choice (to count completion tokens)."""
        return [t for i in sorted(self.choices) for t in self.choices[i].texts()]

    def choice_list(self) -> list[dict[str, Any]]:
        return [self.choices[i].to_dict() for i in sorted(self.choices)]


def fold(entries: Iterable[tuple[int, str]], transcript: Transcript | None = None) -> Transcript:
    """Apply log entries in order, to ``transcript`` (changed in place) or a new one.
    Folding a log in parts gives what folding it whole gives, resets included (a reset
    clears what came before it, whichever part that was in)."""
    transcript = Transcript() if transcript is None else transcript
    for event_id, entry in entries:
        transcript.apply(event_id, Event.from_entry(entry))
    return transcript
