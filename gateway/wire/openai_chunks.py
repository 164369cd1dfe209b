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
            delta: dict[str, Any] = {}
            if data.get("content"):
                delta["content"] = data["content"]
                self.text_sent = True
            if data.get("reasoning"):
                delta["reasoning_content"] = data["reasoning"]
            return self._chunk([self._choice(data["index"], delta)])
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
        if event.type == RESET and self.text_sent:
            return self.error(StreamReset().to_dict())
        return b""

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
        self, index: int, delta: dict[str, Any], finish: str | None = None
    ) -> dict[str, Any]:
        if index not in self.role_sent:
            delta = {"role": "assistant", **delta}
            self.role_sent.add(index)
        return {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}


def completion(job: Job, transcript: Transcript) -> dict[str, Any]:
    """The non-streamed answer: one ``chat.completion`` object."""
    choices = []
    for choice in transcript.choice_list():
        message: dict[str, Any] = {
            "role": "assistant",
            "content": choice["content"],
            "refusal": None,
        }
        if choice.get("reasoning"):
            message["reasoning_content"] = choice["reasoning"]
        choices.append(
            {
                "index": choice["index"],
                "message": message,
                "logprobs": None,
                "finish_reason": choice["finish_reason"] or "stop",
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
