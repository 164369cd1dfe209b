"""Reading an upstream's SSE events (``chat.completion.chunk`` payloads) into delta events.

Tolerates what real providers send (anchors part b, 16-20): chunks with empty
``choices`` (Azure's first chunk, the usage-only last chunk), usage riding on the finish
chunk (llama.cpp), ``finish_reason: ""`` (old Ollama), ``reasoning_content`` deltas
(DeepSeek), and error objects inside a 200 stream (vLLM, sglang), which become failures
instead of silent empty successes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sluice.errors import UpstreamProtocolError
from sluice.events import DELTA, Event
from sluice.sse_decoder import ServerSentEvent
from sluice.upstream_errors import error_from_payload


class ChunkReader:
    def __init__(self, n: int = 1) -> None:
        self.n = n
        self.finish_reasons: dict[int, str] = {}
        self.usage: dict[str, int] | None = None
        self.contents: dict[int, list[str]] = {}
        self.deltas = 0

    def read(self, sse_events: Sequence[ServerSentEvent]) -> tuple[list[Event], bool]:
        """The delta events of these upstream SSE events, and whether ``[DONE]`` was among
        them (what follows it is not read). Raises ``UpstreamError`` for an error event
        and ``UpstreamProtocolError`` for a chunk that is not JSON."""
        events: list[Event] = []
        for sse in sse_events:
            if sse.data.strip() == "[DONE]":
                return events, True
            try:
                payload = json.loads(sse.data)
            except ValueError:
                raise UpstreamProtocolError("the upstream sent a chunk that is not JSON") from None
            if sse.event == "error":
                raise error_from_payload(payload)
            events.extend(self.consume(payload))
        return events, False

    def consume(self, payload: Any) -> list[Event]:
        """Events for one chunk; raises ``UpstreamError`` for an in-stream error object."""
        if not isinstance(payload, dict):
            return []
        if payload.get("error"):
            raise error_from_payload(payload)
        usage = payload.get("usage")
        if isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int):
            self.usage = {
                "prompt_tokens": int(usage.get("prompt_tokens") or 0),
                "completion_tokens": int(usage["completion_tokens"]),
                "total_tokens": int(usage.get("total_tokens") or 0),
            }
        events: list[Event] = []
        for choice in payload.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            index = choice.get("index", 0)
            index = index if isinstance(index, int) and index >= 0 else 0
            delta = choice.get("delta") or {}
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if isinstance(reasoning, str) and reasoning:
                events.append(Event(DELTA, {"index": index, "reasoning": reasoning}))
                self.contents.setdefault(index, []).append(reasoning)
            content = delta.get("content")
            if isinstance(content, str) and content:
                events.append(Event(DELTA, {"index": index, "content": content}))
                self.contents.setdefault(index, []).append(content)
            reason = choice.get("finish_reason")
            if isinstance(reason, str) and reason:
                self.finish_reasons[index] = reason
        self.deltas += len(events)
        return events

    @property
    def finished(self) -> bool:
        """Every choice has a finish reason."""
        return len(self.finish_reasons) >= self.n

    def finish_reason_list(self) -> list[str | None]:
        return [self.finish_reasons.get(i) for i in range(self.n)]

    def completion_texts(self) -> list[str]:
        return ["".join(parts) for _, parts in sorted(self.contents.items())]
