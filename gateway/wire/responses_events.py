"""OpenAI's Responses API stream: a job's log as ``response.*`` events, and the Response.

Every event has a ``sequence_number``, its place in this projection (0, 1, 2, ... with no
gaps), and the projection is a deterministic function of the job (its id, creation time,
model and ``meta``) and its log: replaying the log from its first event yields the same
events with the same numbers in any gateway process. That is what makes OpenAI's cursor
work here: ``GET /v1/responses/{id}?stream=true&starting_after=N`` replays the log from
the start and sends only the events numbered above N. Item ids are derived from the job
id and the item's output index (``msg_<job>_<n>``, ``fc_<job>_<n>``, ``rs_<job>_<n>``),
so a replay gives the same ids too.

How the log maps onto events:

* before the log: ``response.created`` (status ``queued`` for a background response,
  else ``in_progress``); the first ``started``: ``response.in_progress``.
* ``delta`` fragments of choice 0 (a Response has one): ``reasoning`` -> a ``reasoning``
  item with one ``reasoning_text`` part (``response.reasoning_text.delta``/``.done``,
  raw reasoning as the upstream streamed it, no summary); ``content`` -> a ``message``
  item's ``output_text`` part (``response.output_text.delta``, with the fragment's
  logprobs); ``refusal`` -> a ``refusal`` part (``response.refusal.delta``);
  ``tool_call`` -> a ``function_call`` item per call (``response.function_call_arguments
  .delta``). An item opens (``output_item.added``, ``content_part.added``) at its first
  fragment and closes (``.done`` events) when a fragment of another kind begins or the
  answer ends. Parallel calls stay open together until the run of calls ends (a provider
  may interleave their fragments), then close in order.
* ``done`` -> the open items close, then ``response.completed``; finish reason
  ``length`` -> ``response.incomplete`` (``incomplete_details.reason:
  max_output_tokens``), ``content_filter`` -> ``response.incomplete`` (reason
  ``content_filter``).
* ``error`` -> ``response.failed`` with ``error: {code, message}`` (open items are left
  ``incomplete``).
* ``cancelled`` -> ``response.failed`` whose response has status ``cancelled`` (and
  ``error: null``): OpenAI's stream has no cancelled event, and ``response.failed`` is
  the terminal event SDKs stop at; the Response retrieved afterwards says the same.
* ``reset`` (a worker restarted the answer): before any output item, nothing; after one
  (this format cannot take output back), an ``error`` event and ``response.failed``,
  whatever the job then does.

The stream's terminal signal is one of ``response.completed``, ``response.incomplete``
and ``response.failed``; a stream that ends without one was cut and resumes with
``starting_after``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator
from typing import Any

from gateway.feed import HEARTBEAT, Item
from sluice.errors import StreamReset
from sluice.events import (
    CANCELLED,
    DELTA,
    DONE,
    ERROR,
    RESET,
    STARTED,
    Event,
    dumps,
    parse_event_id,
)
from sluice.store import Job

META_KEY = "responses"  # the job's meta entry that makes a job a Response


def response_id(job_id: str) -> str:
    """``job_abc`` -> ``resp_abc``: any gateway maps it back (``job_id_of``)."""
    return "resp_" + job_id.removeprefix("job_")


def job_id_of(response_id: str) -> str | None:
    """The job a response id names, or None when it is no response id of ours."""
    suffix = response_id.removeprefix("resp_")
    if suffix == response_id or not 1 <= len(suffix) <= 60:
        return None
    return "job_" + suffix


def usage_of(usage: dict[str, Any] | None) -> dict[str, Any] | None:
    """Chat usage as the Responses API counts it."""
    if not isinstance(usage, dict):
        return None
    prompt = int(usage.get("prompt_tokens") or 0)
    completion = int(usage.get("completion_tokens") or 0)
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    reasoning = (usage.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": int(usage.get("total_tokens") or prompt + completion),
    }


def error_of(error: dict[str, Any]) -> dict[str, Any]:
    """A recorded error (``to_dict()``) as a Response's ``error``: OpenAI's codes are a
    closed list, so a rate limit is ``rate_limit_exceeded`` and anything else
    ``server_error``; the message says what happened."""
    code = "rate_limit_exceeded" if error.get("type") == "upstream_rate_limited" else "server_error"
    return {"code": code, "message": str(error.get("message") or "the response failed")}


INCOMPLETE_REASONS = {"length": "max_output_tokens", "content_filter": "content_filter"}


class ResponsesEvents:
    """The projection (``gateway.wire``'s shape): ``frames(items)`` for the stream, and
    ``snapshot()``, the Response object after the entries applied so far."""

    def __init__(self, job: Job, starting_after: int = -1) -> None:
        meta = job.meta.get(META_KEY) or {}
        self.suffix = job.id.removeprefix("job_")
        self.base: dict[str, Any] = {
            "id": response_id(job.id),
            "object": "response",
            "created_at": int(job.created_at),
            "model": job.model,
            **(meta.get("echo") or {}),
        }
        self.background = bool(self.base.get("background"))
        self.after = starting_after
        self.seq = 0  # the next event's sequence number
        self.status = "queued" if self.background else "in_progress"
        self.output: list[dict[str, Any]] = []
        self.open: list[int] = []  # output indexes of the open items, in order
        self.calls: dict[int, int] = {}  # tool-call index -> output index
        self.usage: dict[str, Any] | None = None
        self.error: dict[str, Any] | None = None  # the Response's error
        self.failure: dict[str, Any] | None = None  # the recorded error behind it
        self.incomplete: dict[str, Any] | None = None
        self.created = False
        self.started = False
        self.ended = False

    @staticmethod
    def event_id(cursor: str) -> int | None:
        """The log event to follow from for a ``starting_after`` cursor: always the first
        (sequence numbers are counted by replaying the whole log), None for no cursor."""
        return 0 if cursor == "" or parse_event_id(cursor) is not None else None

    # -- the stream --------------------------------------------------------------------------

    def frames(self, items: Iterable[Item]) -> Iterator[bytes]:
        yield f": sluice response {self.base['id']}\n".encode()
        yield from self._render(self.start())
        for item in items:
            if item is HEARTBEAT:
                yield b": keep-alive\n"
                continue
            assert isinstance(item, tuple)
            yield from self._render(self.apply(*item))
            if self.ended:
                return

    def _render(self, events: list[dict[str, Any]]) -> Iterator[bytes]:
        for event in events:
            if event["sequence_number"] > self.after:
                yield f"event: {event['type']}\ndata: {dumps(event)}\n\n".encode()

    # -- the projection ------------------------------------------------------------------------

    def start(self) -> list[dict[str, Any]]:
        """``response.created``, once, before the log's first event."""
        if self.created:
            return []
        self.created = True
        return [self._emit("response.created", response=self.snapshot())]

    def apply(self, event_id: int, entry: str) -> list[dict[str, Any]]:
        """The events one log entry makes (the module docstring's mapping)."""
        out = self.start()
        if self.ended:
            return out
        event = Event.from_entry(entry)
        data = event.data
        if event.type == STARTED and not self.started:
            self.started = True
            self.status = "in_progress"
            out.append(self._emit("response.in_progress", response=self.snapshot()))
        elif event.type == DELTA and data.get("index", 0) == 0:
            out += self._fragment(data)
        elif event.type == DONE:
            reasons = data.get("finish_reasons") or ["stop"]
            reason = INCOMPLETE_REASONS.get(str(reasons[0]))
            item_status = "incomplete" if reason else "completed"
            out += self._close(self.open, item_status)
            self.usage = usage_of(data.get("usage"))
            if reason:
                self.incomplete = {"reason": reason}
                out.append(self._end("incomplete", "response.incomplete"))
            else:
                out.append(self._end("completed", "response.completed"))
        elif event.type == ERROR:
            self._fail(dict(data.get("error") or {}))
            out.append(self._end("failed", "response.failed"))
        elif event.type == CANCELLED:
            self.usage = usage_of(data.get("usage"))
            out.append(self._end("cancelled", "response.failed"))
        elif event.type == RESET and self.output:
            error = StreamReset().to_dict()
            self._fail(error)
            message = error["message"]
            out.append(self._emit("error", code="stream_reset", message=message, param=None))
            out.append(self._end("failed", "response.failed"))
        return out

    def snapshot(self) -> dict[str, Any]:
        """The Response object now (what ``GET /v1/responses/{id}`` answers)."""
        return {
            **self.base,
            "status": self.status,
            "error": self.error,
            "incomplete_details": self.incomplete,
            "output": copy.deepcopy(self.output),
            "usage": self.usage,
        }

    # -- items -----------------------------------------------------------------------------

    def _fragment(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if "reasoning" in data:
            index = self._current("reasoning", out)
            if index is None:
                index = self._add(out, {"type": "reasoning", "summary": [], "content": []}, "rs")
                out += self._add_part(index, {"type": "reasoning_text", "text": ""})
            item = self.output[index]
            item["content"][-1]["text"] += data["reasoning"]
            out.append(self._emit("response.reasoning_text.delta", **self._at(index),
                                  delta=data["reasoning"]))  # fmt: skip
        elif isinstance(data.get("tool_call"), dict):
            out += self._call_fragment(data["tool_call"])
        elif "content" in data or "refusal" in data:
            kind = "refusal" if "refusal" in data else "output_text"
            index = self._current("message", out)
            if index is None:
                item = {"type": "message", "role": "assistant", "content": []}
                index = self._add(out, item, "msg")
            parts = self.output[index]["content"]
            if not parts or parts[-1]["type"] != kind:
                if parts:
                    out += self._close_part(index)
                part: dict[str, Any] = (
                    {"type": "refusal", "refusal": ""}
                    if kind == "refusal"
                    else {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
                )
                out += self._add_part(index, part)
            part = parts[-1]
            text = data.get("refusal" if kind == "refusal" else "content") or ""
            if kind == "refusal":
                part["refusal"] += text
                out.append(self._emit("response.refusal.delta", **self._at(index), delta=text))
            else:
                part["text"] += text
                logprobs = data.get("logprobs") if isinstance(data.get("logprobs"), list) else []
                part["logprobs"] += logprobs
                out.append(self._emit("response.output_text.delta", **self._at(index),
                                      delta=text, logprobs=logprobs))  # fmt: skip
        return out

    def _call_fragment(self, fragment: dict[str, Any]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        call = int(fragment.get("index") or 0)
        index = self.calls.get(call)
        if index is None:
            if any(self.output[i]["type"] != "function_call" for i in self.open):
                out += self._close(self.open, "completed")
            item = {
                "type": "function_call",
                "call_id": str(fragment.get("id") or f"call_{self.suffix}_{call}"),
                "name": str(fragment.get("name") or ""),
                "arguments": "",
            }
            index = self.calls[call] = self._add(out, item, "fc")
        item = self.output[index]
        item["name"] = item["name"] or str(fragment.get("name") or "")
        delta = str(fragment.get("arguments") or "")
        item["arguments"] += delta
        if delta and index in self.open:  # (a closed call's late fragment: no event)
            out.append(self._emit("response.function_call_arguments.delta",
                                  item_id=item["id"], output_index=index, delta=delta))  # fmt: skip
        return out

    def _current(self, kind: str, out: list[dict[str, Any]]) -> int | None:
        """The open item of ``kind`` that a fragment continues, closing other open items
        first; None when a new item must open."""
        if self.open and self.output[self.open[-1]]["type"] == kind:
            return self.open[-1]
        out += self._close(self.open, "completed")
        return None

    def _add(self, out: list[dict[str, Any]], item: dict[str, Any], prefix: str) -> int:
        index = len(self.output)
        item = {"id": f"{prefix}_{self.suffix}_{index}", **item, "status": "in_progress"}
        self.output.append(item)
        self.open.append(index)
        out.append(self._emit("response.output_item.added", output_index=index,
                              item=copy.deepcopy(item)))  # fmt: skip
        return index

    def _add_part(self, index: int, part: dict[str, Any]) -> list[dict[str, Any]]:
        self.output[index]["content"].append(part)
        return [self._emit("response.content_part.added", **self._at(index), part=dict(part))]

    def _close_part(self, index: int) -> list[dict[str, Any]]:
        part = self.output[index]["content"][-1]
        at = self._at(index)
        if part["type"] == "output_text":
            done = self._emit("response.output_text.done", **at, text=part["text"],
                              logprobs=part["logprobs"])  # fmt: skip
        elif part["type"] == "refusal":
            done = self._emit("response.refusal.done", **at, refusal=part["refusal"])
        else:
            done = self._emit("response.reasoning_text.done", **at, text=part["text"])
        return [done, self._emit("response.content_part.done", **at, part=copy.deepcopy(part))]

    def _close(self, indexes: list[int], status: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for index in list(indexes):
            item = self.output[index]
            if item["type"] == "function_call":
                out.append(self._emit("response.function_call_arguments.done",
                                      item_id=item["id"], output_index=index,
                                      arguments=item["arguments"]))  # fmt: skip
            elif item["content"]:
                out += self._close_part(index)
            item["status"] = status
            self.open.remove(index)
            out.append(self._emit("response.output_item.done", output_index=index,
                                  item=copy.deepcopy(item)))  # fmt: skip
        return out

    def _at(self, index: int) -> dict[str, Any]:
        return {
            "item_id": self.output[index]["id"],
            "output_index": index,
            "content_index": len(self.output[index]["content"]) - 1,
        }

    # -- the end ---------------------------------------------------------------------------

    def _fail(self, error: dict[str, Any]) -> None:
        self.failure = error
        self.error = error_of(error)

    def _end(self, status: str, kind: str) -> dict[str, Any]:
        for index in self.open:  # what was still being written stays unfinished
            self.output[index]["status"] = "incomplete"
        self.open.clear()
        self.status = status
        self.ended = True
        return self._emit(kind, response=self.snapshot())

    def _emit(self, kind: str, **fields: Any) -> dict[str, Any]:
        event = {"type": kind, **fields, "sequence_number": self.seq}
        self.seq += 1
        return event
