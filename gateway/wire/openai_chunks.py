"""OpenAI's chat completion wire format: ``chat.completion.chunk`` SSE, or one object.

Official SDKs read it unchanged: ``data: {chunk}`` frames, a usage chunk when
``stream_options.include_usage`` is set, ``data: [DONE]``; without streaming one
``chat.completion`` once the job ends. OpenAI's format cannot take text back and has no
event for a cancel: a failure after the first chunk, a cancel, and a ``reset`` after text
was sent are a ``data: {"error": …}`` frame (which openai-python raises as ``APIError``)
and then ``data: [DONE]``. It has no cursor either: a client that lost the stream resumes
the job in Sluice's own format, from ``X-Sluice-Events-Url``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from gateway.feed import HEARTBEAT, Item
from sluice.errors import JobCancelled, StreamInterrupted, StreamReset
from sluice.events import CANCELLED, DELTA, DONE, ERROR, RESET, Event, Transcript, dumps
from sluice.store import Job

DONE_FRAME = b"data: [DONE]\n\n"


def error_body(error: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's error object for an error recorded as Sluice's ``to_dict()``."""
    return {
        "error": {
            "message": error.get("message", "error"),
            "type": error.get("upstream_type") or error.get("type", "error"),
            "param": error.get("param"),
            "code": error.get("code"),
        }
    }


def terminal_error(event: Event) -> dict[str, Any] | None:
    """The error a terminal ``error`` or ``cancelled`` event stands for, else None."""
    if event.type == ERROR:
        return dict(event.data.get("error", {}))
    if event.type == CANCELLED:
        return JobCancelled().to_dict()
    return None


class OpenAIChunks:
    """The projection: deltas as chunks, the end as finish chunks (+ usage) and [DONE]."""

    def __init__(self, job: Job, include_usage: bool) -> None:
        self.job = job
        self.include_usage = include_usage
        self.role_sent: set[int] = set()
        self.text_sent = False
        # (choice, tool-call index) -> the call's type, from its first fragment
        self.call_types: dict[tuple[int, int], str] = {}

    @staticmethod
    def event_id(cursor: str) -> int | None:
        """No cursor of its own: a stream always starts at the job's first event."""
        return 0 if cursor == "" else None

    def frames(self, items: Iterable[Item]) -> Iterator[bytes]:
        for item in items:
            if item is HEARTBEAT:
                yield b": keep-alive\n"
                continue
            assert isinstance(item, tuple)
            event = Event.from_entry(item[1])
            frame = self.render(event)
            if frame:
                yield frame
            if event.terminal or frame.endswith(DONE_FRAME):
                return
        yield self.error(StreamInterrupted().to_dict())

    def render(self, event: Event) -> bytes:
        data = event.data
        if event.type == DELTA:
            delta, logprobs = self._delta(data)
            return self._chunk([self._choice(data["index"], delta, logprobs=logprobs)])
        if event.type == DONE:
            out = b"".join(
                self._chunk([self._choice(index, {}, reason or "stop")])
                for index, reason in enumerate(data.get("finish_reasons") or ["stop"])
            )
            if self.include_usage:
                out += self._chunk([], usage=data.get("usage"))
            return out + DONE_FRAME
        error = terminal_error(event)
        if error is not None:
            return self.error(error)
        if event.type == RESET:
            if self.text_sent:
                return self.error(StreamReset().to_dict())
            self.call_types.clear()
        return b""

    def _delta(self, data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """A fragment (docs/events.md) as OpenAI's ``delta`` and the choice's logprobs."""
        if "reasoning" in data:
            return {"reasoning_content": data["reasoning"]}, None
        self.text_sent = True  # what follows cannot be taken back in this format
        if isinstance(data.get("tool_call"), dict):
            return {"tool_calls": [self._tool_call(data["index"], data["tool_call"])]}, None
        field = "refusal" if "refusal" in data else "content"
        tokens = data.get("logprobs")
        logprobs = None
        if isinstance(tokens, list):
            logprobs = {"content": None, "refusal": None, field: tokens}
        return {field: data.get(field, "")}, logprobs

    def _tool_call(self, choice: int, fragment: dict[str, Any]) -> dict[str, Any]:
        """OpenAI's tool-call delta: index, id, type and name on the call's first chunk
        (type defaults to ``function``: the AI SDK refuses a first chunk without it),
        then the argument fragments."""
        key = (choice, fragment.get("index", 0))
        call: dict[str, Any] = {"index": key[1]}
        first = key not in self.call_types
        if first:
            self.call_types[key] = str(fragment.get("type") or "function")
        kind = self.call_types[key]
        if "id" in fragment:
            call["id"] = fragment["id"]
        if first or "type" in fragment:
            call["type"] = kind
        body: dict[str, Any] = {}
        if "name" in fragment:
            body["name"] = fragment["name"]
        body["input" if kind == "custom" else "arguments"] = fragment.get("arguments", "")
        call["custom" if kind == "custom" else "function"] = body
        return call

    def error(self, error: dict[str, Any]) -> bytes:
        return self._frame(error_body(error)) + DONE_FRAME

    def _frame(self, payload: Any) -> bytes:
        return f"data: {dumps(payload)}\n\n".encode()

    def _chunk(self, choices: list[dict[str, Any]], usage: Any = None) -> bytes:
        chunk: dict[str, Any] = {
            "id": f"chatcmpl-{self.job.id}",
            "object": "chat.completion.chunk",
            "created": int(self.job.created_at),
            "model": self.job.model,
            "system_fingerprint": None,
            "choices": choices,
        }
        if self.include_usage:
            chunk["usage"] = usage
        return self._frame(chunk)

    def _choice(
        self,
        index: int,
        delta: dict[str, Any],
        finish: str | None = None,
        logprobs: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        if index not in self.role_sent:
            delta = {"role": "assistant", **delta}
            self.role_sent.add(index)
        return {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}


def completion(job: Job, transcript: Transcript) -> dict[str, Any]:
    """The non-streamed answer: one ``chat.completion`` object, as OpenAI answers:
    ``content`` is null for a turn that only calls tools or refuses."""
    choices = []
    for index in sorted(transcript.choices):
        choice = transcript.choices[index]
        calls = choice.tool_call_list()
        only_calls_or_refusal = not choice.content and bool(calls or choice.refusal)
        message: dict[str, Any] = {
            "role": "assistant",
            "content": None if only_calls_or_refusal else choice.content,
            "refusal": choice.refusal or None,
        }
        if calls:
            message["tool_calls"] = calls
        if choice.reasoning:
            message["reasoning_content"] = choice.reasoning
        choices.append(
            {
                "index": index,
                "message": message,
                "logprobs": choice.logprobs(),
                "finish_reason": choice.finish_reason or "stop",
            }
        )
    return {
        "id": f"chatcmpl-{job.id}",
        "object": "chat.completion",
        "created": int(job.created_at),
        "model": job.model,
        "system_fingerprint": None,
        "choices": choices,
        "usage": transcript.usage,
    }
