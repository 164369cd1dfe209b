"""How the fake upstream's answers look on the wire, byte for byte.

SSE events written as HTTP/1.1 chunks in a scenario's line style (LF, CRLF, CR, fragments,
comments), the standard OpenAI chunk sequence and the ways providers dress it (``_Style``),
the non-streaming ``chat.completion`` body, and OpenAI's error bodies (the 401s included, as
the server's key check sends them too). The tests compare stream bytes exactly, so all that
decides a byte lives here and the scenarios only choose among its options.

It answers through a request, ``server._Call`` (its write, pause and stream methods), which
is imported for type checking only: this module needs just ``replies`` at import time.
"""

from __future__ import annotations

import itertools
import json
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from devtools.fake_upstream.replies import (
    _call_message,
    _logprobs_for,
    _ToolCall,
    expected_reasoning,
    split_pieces,
)

if TYPE_CHECKING:
    from devtools.fake_upstream.server import _Call, _Choice, _Handler

FINGERPRINT = "fp_fake"
# how a stream's body is delimited: HTTP/1.1 chunks (OpenAI), or the connection's close
# (HTTP/1.1 ``Connection: close`` with no length, as Python's http.server and small
# servers or proxies send)
FRAMINGS = ("chunked", "close")

# --------------------------------------------------------------------------- SSE framing


class _ClientGone(Exception):
    """The client closed the connection; unwinds a stream quietly."""


class _SSEWriter:
    """Writes SSE events as HTTP/1.1 chunks (or, unchunked, as the bytes of a body that the
    connection's close ends), in the line style of the scenario."""

    def __init__(
        self,
        call: _Call,
        chunked: bool = True,
        gzip: bool = False,
        eol: str = "\n",
        fragment: bool = False,
        gap: float = 0.001,
        comments: bool = False,
    ) -> None:
        self.call = call
        self.chunked = chunked
        # gzip, flushed after every write so each event can be decoded as it arrives
        self.gzip = zlib.compressobj(wbits=31) if gzip else None
        self.eol = eol
        self.fragment = fragment
        self.gap = gap
        self.comments = comments
        self.events = 0

    def send(self, payload: dict | str, event: str | None = None) -> None:
        """One event: ``data: <json>`` plus the decorations the scenario asks for."""
        data = payload if isinstance(payload, str) else _compact(payload)
        lines: list[str] = []
        if self.comments:
            if self.events == 0:
                self._raw(f": keep-alive{self.eol}{self.eol}retry: 3000{self.eol}{self.eol}")
            elif self.events % 4 == 0:
                self._raw(f": keep-alive{self.eol}{self.eol}")
            if self.events % 2 == 0 and event is None:
                lines.append("event: message")
            lines.append(f"id: {self.events + 1}")
            if self.events % 3 == 1:
                lines.append(": keep-alive")
        if event is not None:
            lines.append(f"event: {event}")
        lines.append(f"data: {data}")
        self.events += 1
        self._raw(self.eol.join(lines) + self.eol + self.eol)

    def end(self) -> None:
        """Terminate the chunked body cleanly (the stream is over, connection reusable); a
        close-delimited body ends when the server closes the connection, after this."""
        if self.gzip is not None:
            self._frame(self.gzip.flush())  # the end of the compressed stream
        if self.chunked:
            self.call.write(b"0\r\n\r\n")

    def _raw(self, text: str) -> None:
        data = text.encode("utf-8")
        if not self.fragment:
            self._write(data)
            return
        sizes = itertools.cycle((1, 2, 3, 2))
        pos = 0
        while pos < len(data):
            size = next(sizes)
            self._write(data[pos : pos + size])
            pos += size
            self.call.pause(self.gap)

    def _write(self, data: bytes) -> None:
        if self.gzip is not None:
            data = self.gzip.compress(data) + self.gzip.flush(zlib.Z_SYNC_FLUSH)
        self._frame(data)

    def _frame(self, data: bytes) -> None:
        self.call.write(_chunk_frame(data) if self.chunked else data)


def _chunk_frame(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode("ascii") + data + b"\r\n"


def _compact(obj: Any) -> str:
    """OpenAI's wire style: no spaces, raw UTF-8 (so multi-byte characters hit the wire)."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


# --------------------------------------------------------------------------- chunk sequence

_FILTER_OK = {
    name: {"filtered": False, "severity": "safe"}
    for name in ("hate", "self_harm", "sexual", "violence")
}


@dataclass(frozen=True)
class _Style:
    """How one provider dresses the standard chunk sequence."""

    usage: str = "chunk"  # "chunk" (OpenAI), "none" (TGI, vLLM), "finish" (llama.cpp)
    blank_finish_reason: bool = False  # old Ollama: "" instead of null
    content_filter: bool = False  # Azure
    reasoning: bool = False  # DeepSeek


OPENAI_STYLE = _Style()


def _input_field(call: _ToolCall) -> str:
    """Where a call's streamed text goes: a function's arguments, a custom tool's input."""
    return "input" if call.type == "custom" else "arguments"


def _call_header(c: _Choice, k: int) -> dict:
    """A call's first fragment: index, id, type and name, with empty arguments (input)."""
    call, _ = c.answer.calls[k]
    body = {"name": call.name, _input_field(call): ""}
    return {"index": k, "id": c.call_ids[k], "type": call.type, call.type: body}


def _role_delta(c: _Choice, reasoning: bool) -> dict:
    """A choice's first delta, the only one with role (and content/refusal for a refusal or
    tool calls, which OpenAI opens with ``content: null``); with no reasoning to come first,
    a tool call answer's first call rides on it, as OpenAI sends it."""
    if c.answer.kind == "refusal":
        return {"role": "assistant", "content": None, "refusal": ""}
    if c.answer.kind == "tool_calls" and c.answer.calls:
        if reasoning:
            return {"role": "assistant", "content": None, "refusal": None}
        return {
            "role": "assistant",
            "content": None,
            "tool_calls": [_call_header(c, 0)],
            "refusal": None,
        }
    return {"role": "assistant", "content": ""}


def _steps(c: _Choice, reasoning: bool, top: int | None) -> Iterator[tuple[str, dict, dict | None]]:
    """A choice's chunks after its role (and reasoning) chunks, as (kind, delta, logprobs):
    "piece" for a content, refusal or argument token (paused before, counted by usage and
    ``fail_after``), "call" for each further call's header. `top` None: no logprobs."""
    answer = c.answer
    if answer.kind == "tool_calls":
        for k, (call, pieces) in enumerate(answer.calls):
            if k > 0 or reasoning:
                yield "call", {"tool_calls": [_call_header(c, k)]}, None
            for piece in pieces:
                fragment = {"index": k, call.type: {_input_field(call): piece}}
                yield "piece", {"tool_calls": [fragment]}, None
        return
    field = "refusal" if answer.kind == "refusal" else "content"
    entries = _logprobs_for(answer.pieces, top) if top is not None else None
    for i, piece in enumerate(answer.pieces):
        delta: dict[str, Any] = {field: piece}
        if reasoning:
            delta["reasoning_content"] = None
        logprobs = None
        if entries is not None:
            logprobs = {"content": None, "refusal": None, field: [entries[i]]}
        yield "piece", delta, logprobs


def _chunks(call: _Call, style: _Style) -> Iterator[tuple[str, dict]]:
    """Yield (kind, chunk) in wire order: prelude, role, reasoning, then each choice's
    pieces (and tool call headers) interleaved across choices, finish, usage."""
    plan = call.plan()
    reasoning = split_pieces(expected_reasoning(call.body)) if style.reasoning else []
    usage = call.usage(plan, len(reasoning) * len(plan))
    null_usage = style.usage == "chunk" and call.include_usage
    top = call.top_logprobs if call.logprobs else None

    def chunk(choices: list[dict], **extra: Any) -> dict:
        out = {
            "id": call.id,
            "object": "chat.completion.chunk",
            "created": call.created,
            "model": call.model,
            "system_fingerprint": FINGERPRINT,
            "choices": choices,
        }
        if null_usage:
            out["usage"] = None
        out.update(extra)
        return out

    def choice(
        index: int,
        delta: dict,
        finish: str | None = None,
        filtered: bool = True,
        logprobs: dict | None = None,
    ) -> dict:
        if finish is None and style.blank_finish_reason:
            finish = ""
        out = {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
        if style.content_filter:
            out["content_filter_results"] = _FILTER_OK if filtered else {}
        return out

    if style.content_filter:
        yield (
            "prelude",
            {
                "id": "",
                "choices": [],
                "created": 0,
                "model": "",
                "object": "",
                "prompt_filter_results": [
                    {"prompt_index": 0, "content_filter_results": _FILTER_OK}
                ],
            },
        )
    for c in plan:
        yield "role", chunk([choice(c.index, _role_delta(c, bool(reasoning)), None, False)])
    for piece in reasoning:
        for c in plan:
            delta = {"content": None, "reasoning_content": piece}
            yield "reasoning", chunk([choice(c.index, delta)])
    steps = [list(_steps(c, bool(reasoning), top)) for c in plan]
    for row in itertools.zip_longest(*steps):
        for c, step in zip(plan, row, strict=True):
            if step is not None:
                kind, delta, logprobs = step
                yield kind, chunk([choice(c.index, delta, logprobs=logprobs)])
    for c in plan:
        extra: dict[str, Any] = {}
        if style.usage == "finish" and c is plan[-1]:
            extra = {"usage": usage, "timings": _timings(usage)}
        yield "finish", chunk([choice(c.index, {}, c.finish_reason, False)], **extra)
    if null_usage:
        yield "usage", chunk([], usage=usage)


def _timings(usage: dict) -> dict:
    """llama.cpp's per-request timing block (numbers are made up but consistent)."""
    prompt_n, predicted_n = usage["prompt_tokens"], usage["completion_tokens"]
    return {
        "prompt_n": prompt_n,
        "prompt_ms": prompt_n * 0.5,
        "prompt_per_token_ms": 0.5,
        "prompt_per_second": 2000.0,
        "predicted_n": predicted_n,
        "predicted_ms": predicted_n * 10.0,
        "predicted_per_token_ms": 10.0,
        "predicted_per_second": 100.0,
    }


Fault = Callable[["_Call", "_SSEWriter | None"], None]


def _respond(
    call: _Call,
    style: _Style = OPENAI_STYLE,
    *,
    done: bool = True,
    fault: Fault | None = None,
    **wire: Any,
) -> None:
    """Answer with the standard sequence; `fault` replaces the rest after fail_after pieces."""
    if not call.stream:
        if fault is not None:
            fault(call, None)
        else:
            _respond_json(call, style)
        return
    with call.open_stream():
        sse = call.start_stream(close=fault is not None or not done, **wire)
        pieces = 0
        for kind, chunk in _chunks(call, style):
            at_fault = kind == "finish" or (kind == "piece" and pieces >= call.fail_after)
            if fault is not None and at_fault:
                fault(call, sse)
                return
            if kind in ("piece", "reasoning", "call"):
                call.pause(call.delay)
                call.upstream.disruptions.hold(call.upstream._stopping)
                if call.record is not None and call.peer_closed():
                    # a write to a peer that has gone may still succeed once: it must not
                    # be recorded as sent (a client that timed out during a stall)
                    raise _ClientGone
            if kind == "piece":
                pieces += 1
            sse.send(chunk)
            if call.record is not None:
                call.record.wrote(chunk)
        if done and not call.upstream.disruptions.omitting_done():
            sse.send("[DONE]")
            # the answer is whole once [DONE] is out (a client ends the job on it): what
            # follows only ends the body, and a client that has hung up by then (its
            # connection closed while this thread waited its turn) leaves it unwritten
            if call.record is not None:
                call.record.finished = True
        sse.end()
        if call.record is not None:
            call.record.finished = True


def _respond_json(call: _Call, style: _Style) -> None:
    """A ``chat.completion`` object; waits as long as the stream would have taken."""
    plan = call.plan()
    reasoning = expected_reasoning(call.body) if style.reasoning else ""
    n_reasoning = len(split_pieces(reasoning)) * len(plan)
    call.pause(call.delay * (sum(c.answer.tokens for c in plan) + n_reasoning))
    usage = call.usage(plan, n_reasoning)
    choices = []
    for c in plan:
        answer = c.answer
        text = "".join(answer.pieces)
        message: dict[str, Any] = {"role": "assistant", "content": None}
        if answer.kind == "content":
            message["content"] = text
        if answer.kind == "tool_calls":
            message["tool_calls"] = [
                _call_message(_ToolCall(t.type, t.name, "".join(p)), call_id)
                for (t, p), call_id in zip(answer.calls, c.call_ids, strict=True)
            ]
        if style.reasoning:
            message["reasoning_content"] = reasoning
        if answer.kind == "refusal":
            message["refusal"] = text
        elif not style.reasoning:
            message["refusal"] = None
        logprobs = None
        if call.logprobs and answer.kind != "tool_calls":
            field = "refusal" if answer.kind == "refusal" else "content"
            entries = _logprobs_for(answer.pieces, call.top_logprobs)
            logprobs = {"content": None, "refusal": None, field: entries}
        choice: dict[str, Any] = {
            "index": c.index,
            "message": message,
            "logprobs": logprobs,
            "finish_reason": c.finish_reason,
        }
        if style.content_filter:
            choice["content_filter_results"] = _FILTER_OK
        choices.append(choice)
    out: dict[str, Any] = {
        "id": call.id,
        "object": "chat.completion",
        "created": call.created,
        "model": call.model,
        "choices": choices,
        "usage": usage,
        "system_fingerprint": FINGERPRINT,
    }
    if style.content_filter:
        out["prompt_filter_results"] = [{"prompt_index": 0, "content_filter_results": _FILTER_OK}]
    if style.usage == "finish":
        out["timings"] = _timings(usage)
    call.send_json(200, out)


# --------------------------------------------------------------------------- error bodies


def _error_body(message: str, type_: str, param: str | None = None, code: Any = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _mask_key(key: str) -> str:
    """OpenAI echoes a wrong key as its first 5 and last 2 characters (``sk-ab***yz``)."""
    return key if len(key) <= 8 else f"{key[:5]}***{key[-2:]}"


KEY_ECHOES = ("masked", "full")
"""How a 401 quotes the key it was sent: ``masked`` as OpenAI does (``_mask_key``), ``full``
as some OpenAI-compatible servers and proxies do, the whole key in the error message (so
tests can prove a client of such a server does not pass the key on)."""


def _echoed_key(handler: _Handler, key: str) -> str:
    """The key as this server's 401 quotes it (``FakeUpstream.key_echo``)."""
    return key if handler.server.upstream.key_echo == "full" else _mask_key(key)


def _unauthorized(handler: _Handler) -> None:
    """OpenAI's 401: a missing key and a wrong key get different messages and codes."""
    key = handler.bearer_key()
    if not key:
        message = (
            "You didn't provide an API key. You need to provide your API key in an "
            "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or "
            "as the password field (with blank username) if you're accessing the API from your "
            "browser and are prompted for a username and password. You can obtain an API key "
            "from https://platform.openai.com/account/api-keys."
        )
        body = _error_body(message, "invalid_request_error")
    else:
        message = (
            f"Incorrect API key provided: {_echoed_key(handler, key)}. You can find your API "
            "key at https://platform.openai.com/account/api-keys."
        )
        body = _error_body(message, "invalid_request_error", None, "invalid_api_key")
    handler.send_json_error(401, body)
