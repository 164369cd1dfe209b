"""A fake OpenAI-compatible upstream that reproduces real provider streams and their faults.

Used as the upstream LLM by the integration tests, and as a clearly-labelled local *demo
upstream* when Sluice runs without an OPENAI_API_KEY (``python -m devtools.fake_upstream``).
Standard library only, so it starts in milliseconds and cannot drift with a web framework.

Endpoints: ``POST /v1/chat/completions`` (streaming and not), ``GET /v1/models``; anything
else is a 404 in OpenAI's error shape. With an ``api_key`` every endpoint but the 404 needs
``Authorization: Bearer <api_key>``, answered otherwise with OpenAI's 401 bodies.

The reply text is deterministic (see :func:`expected_reply`) and deliberately contains
multi-byte UTF-8 (« » é 🙂 中文), a newline and a U+2028 so relays that split bytes or lines
naively break visibly. Streams go out with chunked transfer encoding, like the real API.

The request's ``model`` picks a scenario, with parameters after semicolons
(``"slow;words=40;delay=0.05"``); unknown names (``gpt-4o-mini``, ``sluice-demo``) mean
``openai``. Parameters: ``words`` (int, 12), ``delay`` (seconds between pieces, server
default), ``fail_after`` (pieces before a fault, 3), ``retry_after`` (seconds, 1), ``stall``
(seconds, 600), ``failures`` (int, 1), ``gap`` (seconds between fragments, 0.001).

Scenarios and the real behaviour each reproduces:

``openai``
    OpenAI: role chunk, one chunk per token, finish chunk (``stop``, or ``length`` when
    ``max_tokens`` cut it), a ``choices: []`` usage chunk only with
    ``stream_options.include_usage`` (then every chunk carries ``"usage": null``), ``[DONE]``.
``azure``
    Azure OpenAI: a first chunk with empty id/model and ``prompt_filter_results``, then
    ``content_filter_results`` on every choice.
``no-usage``
    vLLM without include_usage, TGI, old Ollama: never a usage chunk.
``rejects-stream-options``
    Older OpenAI-compatible servers and API versions: 400 "Unrecognized request argument
    supplied: stream_options" when the body has it; otherwise like ``no-usage``.
``llamacpp``
    llama.cpp server: usage and a ``timings`` object ride on the finish chunk.
``ollama-old``
    Old Ollama: ``"finish_reason": ""`` instead of null on intermediate chunks.
``crlf`` / ``cr``
    Servers (often behind Windows/.NET stacks) ending SSE lines with CRLF, or bare CR; both
    legal per the SSE spec.
``fragmented``
    Proxies and slow links: the ``openai`` bytes in 1-3 byte HTTP chunks with a short sleep
    between, so events, CRLF pairs and UTF-8 characters straddle network reads.
``comments``
    Proxies and other SSE servers: ``: keep-alive`` comments, ``event: message``, ``id: N``
    and ``retry: 3000`` lines among the data events.
``no-done``
    Providers that finish without ``data: [DONE]`` (the body simply ends).
``truncated``
    A dropped connection: after ``fail_after`` pieces the socket is shut down without the
    terminating HTTP chunk, ``finish_reason`` or ``[DONE]``.
``error-in-stream``
    OpenAI failing mid-generation: ``data: {"error": {...server_error...}}`` then ``[DONE]``.
``error-event``
    Anthropic-style overload: ``event: error`` with an ``overloaded_error`` body, then the end.
``stall``
    A hung generation: role chunk and ``fail_after`` pieces, then silence on an open
    connection until the client leaves (counted) or ``stall`` seconds pass (then cut).
``silent``
    A hung request: no bytes at all, not even headers, until the client leaves or ``stall``
    seconds pass (then the connection is closed).
``http-400`` ``http-401`` ``http-403`` ``http-404`` ``http-429`` ``http-500`` ``http-503``
    OpenAI's error responses for those statuses (context length, invalid key, unsupported
    region, unknown model, rate limit with Retry-After and x-ratelimit-* headers, server
    error, engine overloaded).
``http-429-then-ok`` ``http-500-then-ok`` ``http-503-then-ok``
    Transient failures: the first ``failures`` requests with that exact model string get the
    error, later ones stream normally (counted per server instance).
``reasoning``
    DeepSeek-R1 style: ``reasoning_content`` chunks (``content: null``) before the answer;
    the reasoning text is :func:`expected_reasoning`.
``slow``
    ``openai`` with ``delay`` defaulting to 0.05 s.

Non-streaming requests to the mid-stream fault scenarios get the nearest equivalent:
``truncated`` sends half a body then closes, ``error-in-stream`` is an HTTP 500,
``error-event`` an HTTP 529, ``stall`` behaves like ``silent``.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import logging
import math
import re
import secrets
import select
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger("devtools.fake_upstream")

DEFAULT_SCENARIO = "openai"
DEMO_MODEL = "sluice-demo"
DEMO_OWNER = "sluice-demo-upstream"
DEMO_DELAY = 0.03
DEFAULT_PORT = 8090
FINGERPRINT = "fp_fake"
_MODELS_CREATED = 1_700_000_000
_DEMO_MAX_RECORDED = 1000

# --------------------------------------------------------------------------- reply text

_LOREM = (
    "lorem", "ipsum", "café", "dolor", "sit", "中文", "amet", "naïve", "consectetur", "🙂",
    "adipiscing", "élan", "elit", "déjà", "vu", "sed", "über", "tempor", "señor", "incididunt",
)  # fmt: skip
_TOKEN = re.compile(r" ?\S+|\s")
_LONG_TOKEN = 5


def parse_model(model: str) -> tuple[str, dict[str, str]]:
    """Split ``"name;k=v;..."`` so a test can pick a scenario through the model field alone."""
    name, *parts = (model or "").split(";")
    params: dict[str, str] = {}
    for part in parts:
        key, _, value = part.partition("=")
        if key.strip():
            params[key.strip()] = value.strip()
    name = name.strip()
    return (name if name in SCENARIOS else DEFAULT_SCENARIO), params


def _int_param(params: dict[str, str], key: str, default: int) -> int:
    """Parse a non-negative int parameter; ValueError becomes a 400 for the client."""
    if key not in params:
        return default
    value = int(params[key])
    if value < 0:
        raise ValueError(f"{key} must be >= 0")
    return value


def _float_param(params: dict[str, str], key: str, default: float) -> float:
    """Parse a non-negative float parameter; ValueError becomes a 400 for the client."""
    if key not in params:
        return default
    value = float(params[key])
    if not value >= 0 or math.isinf(value):
        raise ValueError(f"{key} must be a finite number >= 0")
    return value


def _message_text(message: Any) -> str:
    """Text of one message: string content, or the text parts of a multi-part content list."""
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


def _last_message_text(body: dict) -> str:
    messages = body.get("messages")
    return _message_text(messages[-1]) if isinstance(messages, list) and messages else ""


def split_pieces(text: str) -> list[str]:
    """Cut text the way tokens look: a word with its leading space; long words in 2-3 chars."""
    pieces: list[str] = []
    for token in _TOKEN.findall(text):
        while len(token) > _LONG_TOKEN:
            size = 3 if len(pieces) % 2 == 0 else 2
            pieces.append(token[:size])
            token = token[size:]
        pieces.append(token)
    return pieces


def _full_reply(body: dict, index: int) -> str:
    """The untruncated reply; only the last message, `words` and the index matter."""
    _, params = parse_model(str(body.get("model", "")))
    words = _int_param(params, "words", 12)
    said = _last_message_text(body)[:200]
    tag = f"[choice {index}] " if index > 0 else ""
    lorem = " ".join(_LOREM[(i + 3 * index) % len(_LOREM)] for i in range(words))
    return (
        f"{tag}Hello from the Sluice demo upstream! You said: «{said}».\n"
        f"{lorem}\u2028Fin — déjà vu 🙂"
    )


def _max_tokens(body: dict) -> int | None:
    value = body.get("max_tokens", body.get("max_completion_tokens"))
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _reply_pieces(body: dict, index: int) -> tuple[list[str], str]:
    """Pieces actually sent for a choice, and its finish_reason (one piece = one token)."""
    pieces = split_pieces(_full_reply(body, index))
    limit = _max_tokens(body)
    if limit is not None and len(pieces) > limit:
        return pieces[:limit], "length"
    return pieces, "stop"


def expected_reply(body: dict, index: int = 0) -> str:
    """The exact text a client must reassemble for choice `index` (after max_tokens)."""
    return "".join(_reply_pieces(body, index)[0])


def expected_reasoning(body: dict) -> str:
    """The reasoning_content the ``reasoning`` scenario streams before the answer."""
    said = _last_message_text(body)[:40]
    return f"Thinking about «{said}»… this is canned demo text, no model is thinking 🤔."


def prompt_tokens(body: dict) -> int:
    """A deterministic stand-in for a tokenizer, so tests can predict usage numbers."""
    messages = body.get("messages") if isinstance(body.get("messages"), list) else []
    return sum(len(_message_text(m).split()) for m in messages) + 3 * len(messages) + 3


# --------------------------------------------------------------------------- recording


class _Headers(dict[str, str]):
    """Header names stored lower-cased with case-insensitive lookups, as HTTP intends."""

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(key.lower(), default)


@dataclass
class RecordedRequest:
    """One request as the upstream saw it, so tests can assert what the worker sent.

    `headers` has lower-cased names but looks up case-insensitively; `body` is the parsed JSON
    (None for no body or invalid JSON). A demo server keeps only the last 1000.
    """

    method: str
    path: str
    headers: dict[str, str]
    body: dict | None
    client_port: int = 0  # the client's end of the TCP connection: equal ports, reused one
    request_id: str = ""  # the x-request-id it was answered with
    # what the stream wrote to the socket, per choice (content, reasoning), and whether it
    # reached its end ([DONE], or the body's end where the scenario sends none)
    sent: dict[int, str] = field(default_factory=dict)
    reasoning_sent: dict[int, str] = field(default_factory=dict)
    pieces_sent: int = 0
    status: int = 0
    finished: bool = False

    def wrote(self, chunk: dict) -> None:
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            index = int(choice.get("index", 0))
            if delta.get("content"):
                self.sent[index] = self.sent.get(index, "") + delta["content"]
                self.pieces_sent += 1
            if delta.get("reasoning_content"):
                text = self.reasoning_sent.get(index, "") + delta["reasoning_content"]
                self.reasoning_sent[index] = text
                self.pieces_sent += 1


class _ClientGone(Exception):
    """The client closed the connection; unwinds a stream quietly."""


# --------------------------------------------------------------------------- wire format


class _SSEWriter:
    """Writes SSE events as HTTP/1.1 chunks, in the line style of the scenario."""

    def __init__(
        self,
        call: _Call,
        eol: str = "\n",
        fragment: bool = False,
        gap: float = 0.001,
        comments: bool = False,
    ) -> None:
        self.call = call
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
        """Terminate the chunked body cleanly (the stream is over, connection reusable)."""
        self.call.write(b"0\r\n\r\n")

    def _raw(self, text: str) -> None:
        data = text.encode("utf-8")
        if not self.fragment:
            self.call.write(_chunk_frame(data))
            return
        sizes = itertools.cycle((1, 2, 3, 2))
        pos = 0
        while pos < len(data):
            size = next(sizes)
            self.call.write(_chunk_frame(data[pos : pos + size]))
            pos += size
            self.call.pause(self.gap)


def _chunk_frame(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode("ascii") + data + b"\r\n"


def _compact(obj: Any) -> str:
    """OpenAI's wire style: no spaces, raw UTF-8 (so multi-byte characters hit the wire)."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def _error_body(message: str, type_: str, param: str | None = None, code: Any = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


# --------------------------------------------------------------------------- one request


@dataclass
class _Choice:
    index: int
    pieces: list[str]
    finish_reason: str


class _Call:
    """One chat completion request: parsed parameters plus the ways to answer it."""

    def __init__(self, handler: _Handler, body: dict) -> None:
        self.handler = handler
        self.upstream: FakeUpstream = handler.server.upstream
        self.record: RecordedRequest | None = handler.recorded
        self.body = body
        self.model = str(body.get("model", ""))
        self.scenario, self.params = parse_model(self.model)
        self.stream = bool(body.get("stream"))
        options = body.get("stream_options")
        self.include_usage = isinstance(options, dict) and options.get("include_usage") is True
        self.id = "chatcmpl-" + secrets.token_hex(14)
        self.created = int(time.time())
        n = body.get("n") if body.get("n") is not None else 1
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 128:
            raise ValueError("n must be an integer between 1 and 128")
        self.n = n
        p = self.params
        slow = 0.05 if self.scenario == "slow" else self.upstream.default_delay
        self.delay = _float_param(p, "delay", slow)
        self.words = _int_param(p, "words", 12)  # checked here so a bad value is a 400
        self.fail_after = _int_param(p, "fail_after", 3)
        self.retry_after = _float_param(p, "retry_after", 1.0)
        self.stall = _float_param(p, "stall", 600.0)
        self.failures = _int_param(p, "failures", 1)
        self.gap = _float_param(p, "gap", 0.001)

    # --- content

    def plan(self) -> list[_Choice]:
        return [_Choice(i, *_reply_pieces(self.body, i)) for i in range(self.n)]

    def usage(self, plan: list[_Choice], extra_pieces: int = 0) -> dict:
        completion = sum(len(c.pieces) for c in plan) + extra_pieces
        prompt = prompt_tokens(self.body)
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }

    # --- plain responses

    def send_json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        """A complete JSON response; errors are indented like OpenAI's own error bodies."""
        text = json.dumps(obj, indent=4) + "\n" if status >= 400 else _compact(obj)
        self.handler.send_body(status, text.encode("utf-8"), "application/json", headers)

    def error(self, status: int, body: dict, headers: dict[str, str] | None = None) -> None:
        self.send_json(status, body, headers)

    # --- streams

    @contextlib.contextmanager
    def track_stream(self, counted: bool = True) -> Iterator[None]:
        """Count the stream in open_streams; a vanished client ends it quietly and is counted."""
        if counted:
            self.upstream._stream_opened()
        try:
            yield
        except _ClientGone:
            self.handler.close_connection = True
            if counted and not self.upstream._stopping.is_set():
                self.upstream._client_closed()
        finally:
            if counted:
                self.upstream._stream_closed()

    @contextlib.contextmanager
    def open_stream(self) -> Iterator[None]:
        """While a stream is in progress: counted, and among those ``cut_streams`` cuts; a
        client that vanishes (even before the headers went out) ends it quietly."""
        with self.track_stream(), self.upstream._streaming_call(self):
            yield

    def start_stream(self, close: bool = False, **wire: Any) -> _SSEWriter:
        """Send event-stream headers (chunked, like OpenAI); returns the SSE writer."""
        headers = {"Transfer-Encoding": "chunked", "Cache-Control": "no-cache, must-revalidate"}
        if close:
            headers["Connection"] = "close"
            self.handler.close_connection = True
        self.handler.send_head(200, "text/event-stream; charset=utf-8", headers)
        return _SSEWriter(self, **wire)

    def write(self, data: bytes) -> None:
        """Write straight to the socket; a vanished client becomes _ClientGone."""
        try:
            self.handler.wfile.write(data)
            self.handler.wfile.flush()
        except OSError as exc:  # BrokenPipe, ConnectionReset, or a socket shut down by stop()
            raise _ClientGone from exc

    def pause(self, seconds: float) -> None:
        if seconds > 0:
            self.upstream._stopping.wait(seconds)

    def abort(self) -> None:
        """Drop the connection without finishing the response, as a crashed peer would."""
        self.handler.close_connection = True
        with contextlib.suppress(OSError):
            self.handler.connection.shutdown(socket.SHUT_RDWR)

    def peer_closed(self) -> bool:
        """The client has closed its end (it sends nothing after its request, so a
        readable socket means EOF or a reset)."""
        sock = self.handler.connection
        try:
            readable, _, _ = select.select([sock], [], [], 0)
            return bool(readable) and not sock.recv(1, socket.MSG_PEEK)
        except (OSError, ValueError):
            return True

    def client_closed_within(self, seconds: float) -> bool:
        """Poll the socket for EOF every 50 ms; True once the client has gone away."""
        sock = self.handler.connection
        deadline = time.monotonic() + seconds
        while not self.upstream._stopping.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                readable, _, _ = select.select([sock], [], [], min(0.05, remaining))
                if readable and not sock.recv(1, socket.MSG_PEEK):
                    return True
            except (OSError, ValueError):
                return True
            if readable:  # pipelined bytes, not EOF: keep waiting without spinning
                time.sleep(0.05)
        return False


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


def _chunks(call: _Call, style: _Style) -> Iterator[tuple[str, dict]]:
    """Yield (kind, chunk) in wire order: prelude, role, reasoning, piece, finish, usage."""
    plan = call.plan()
    reasoning = split_pieces(expected_reasoning(call.body)) if style.reasoning else []
    usage = call.usage(plan, len(reasoning) * len(plan))
    null_usage = style.usage == "chunk" and call.include_usage

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

    def choice(index: int, delta: dict, finish: str | None = None, filtered: bool = True) -> dict:
        if finish is None and style.blank_finish_reason:
            finish = ""
        out = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
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
        yield "role", chunk([choice(c.index, {"role": "assistant", "content": ""}, None, False)])
    for piece in reasoning:
        for c in plan:
            delta = {"content": None, "reasoning_content": piece}
            yield "reasoning", chunk([choice(c.index, delta)])
    for row in itertools.zip_longest(*(c.pieces for c in plan)):
        for c, piece in zip(plan, row, strict=True):
            if piece is not None:
                delta: dict[str, Any] = {"content": piece}
                if reasoning:
                    delta["reasoning_content"] = None
                yield "piece", chunk([choice(c.index, delta)])
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


Fault = Callable[[_Call, "_SSEWriter | None"], None]


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
            if kind in ("piece", "reasoning"):
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
        sse.end()
        if call.record is not None:
            call.record.finished = True


def _respond_json(call: _Call, style: _Style) -> None:
    """A ``chat.completion`` object; waits as long as the stream would have taken."""
    plan = call.plan()
    reasoning = expected_reasoning(call.body) if style.reasoning else ""
    n_reasoning = len(split_pieces(reasoning)) * len(plan)
    call.pause(call.delay * (sum(len(c.pieces) for c in plan) + n_reasoning))
    usage = call.usage(plan, n_reasoning)
    choices = []
    for c in plan:
        message: dict[str, Any] = {"role": "assistant", "content": "".join(c.pieces)}
        if style.reasoning:
            message["reasoning_content"] = reasoning
        else:
            message["refusal"] = None
        choice: dict[str, Any] = {
            "index": c.index,
            "message": message,
            "logprobs": None,
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


# --------------------------------------------------------------------------- faults


def _fault_truncate(call: _Call, sse: _SSEWriter | None) -> None:
    """Connection dropped mid-body: no terminating chunk, no finish_reason, no [DONE]."""
    if sse is None:
        data = _compact({"id": call.id, "object": "chat.completion", "choices": []}).encode()
        call.handler.send_head(200, "application/json", {"Content-Length": str(len(data) * 2)})
        call.write(data)
    call.abort()


def _fault_error_in_stream(call: _Call, sse: _SSEWriter | None) -> None:
    """OpenAI's mid-stream server_error event, followed by [DONE] as OpenAI does."""
    message = "The server had an error while processing your request."
    if sse is None:
        call.error(500, _error_body(message, "server_error", None, "internal_error"))
        return
    sse.send(json.dumps(_error_body(message, "server_error", None, "internal_error")))
    sse.send("[DONE]")
    sse.end()


def _fault_error_event(call: _Call, sse: _SSEWriter | None) -> None:
    """An ``event: error`` overload notice, then the body ends without [DONE]."""
    body = {"error": {"message": "Overloaded", "type": "overloaded_error", "code": 529}}
    if sse is None:
        call.error(529, body)
        return
    sse.send(json.dumps(body), event="error")
    sse.end()


def _fault_stall(call: _Call, sse: _SSEWriter | None) -> None:
    """Go quiet on an open connection until the client leaves or `stall` seconds pass."""
    if sse is None:
        _silent(call)
        return
    if call.client_closed_within(call.stall):
        raise _ClientGone
    call.abort()


# --------------------------------------------------------------------------- scenarios


def _openai(call: _Call) -> None:
    """OpenAI's own stream: the reference every other scenario deviates from."""
    _respond(call)


def _azure(call: _Call) -> None:
    """Azure OpenAI: a filter-results prelude chunk with empty id/model, filters per choice."""
    _respond(call, _Style(content_filter=True))


def _no_usage(call: _Call) -> None:
    """vLLM without include_usage, TGI, old Ollama: token counts never arrive."""
    _respond(call, _Style(usage="none"))


def _rejects_stream_options(call: _Call) -> None:
    """Servers and API versions that reject stream_options with a 400."""
    if "stream_options" in call.body:
        message = "Unrecognized request argument supplied: stream_options"
        call.error(400, _error_body(message, "invalid_request_error"))
        return
    _no_usage(call)


def _llamacpp(call: _Call) -> None:
    """llama.cpp server: usage and timings ride on the finish chunk, no usage chunk."""
    _respond(call, _Style(usage="finish"))


def _ollama_old(call: _Call) -> None:
    """Old Ollama: finish_reason is "" (not null) until the last chunk."""
    _respond(call, _Style(blank_finish_reason=True))


def _crlf(call: _Call) -> None:
    """CRLF line ends (legal SSE; common behind .NET/IIS and some proxies)."""
    _respond(call, eol="\r\n")


def _cr(call: _Call) -> None:
    """Bare CR line ends: legal SSE that line-splitting on \n alone never sees."""
    _respond(call, eol="\r")


def _fragmented(call: _Call) -> None:
    """Slow links and proxies: tiny network reads split events and UTF-8 characters."""
    _respond(call, fragment=True, gap=call.gap)


def _comments(call: _Call) -> None:
    """Keep-alive comments, event/id/retry fields: all must be ignored, not parsed as data."""
    _respond(call, comments=True)


def _no_done(call: _Call) -> None:
    """Providers that end the body after the finish chunk without [DONE]."""
    _respond(call, done=False)


def _truncated(call: _Call) -> None:
    """A dropped connection mid-stream: incomplete chunked body."""
    _respond(call, fault=_fault_truncate)


def _error_in_stream(call: _Call) -> None:
    """OpenAI failing mid-generation after a 200 has already been sent."""
    _respond(call, fault=_fault_error_in_stream)


def _error_event(call: _Call) -> None:
    """Anthropic-style `event: error` overload notice mid-stream."""
    _respond(call, fault=_fault_error_event)


def _stall(call: _Call) -> None:
    """A hung generation: the connection stays open but nothing more comes."""
    _respond(call, fault=_fault_stall)


def _silent(call: _Call) -> None:
    """No status line, no headers: only a read timeout can get the client out."""
    with call.track_stream(counted=call.stream):
        if call.client_closed_within(call.stall):
            raise _ClientGone
        call.abort()


def _reasoning(call: _Call) -> None:
    """DeepSeek-R1 style reasoning_content chunks before the answer."""
    _respond(call, _Style(reasoning=True))


def _mask_key(key: str) -> str:
    """OpenAI echoes a wrong key as its first 5 and last 2 characters (``sk-ab***yz``)."""
    return key if len(key) <= 8 else f"{key[:5]}***{key[-2:]}"


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
            f"Incorrect API key provided: {_mask_key(key)}. You can find your API key at "
            "https://platform.openai.com/account/api-keys."
        )
        body = _error_body(message, "invalid_request_error", None, "invalid_api_key")
    handler.send_json_error(401, body)


def _http_400(call: _Call) -> None:
    """OpenAI's context_length_exceeded 400."""
    message = (
        "This model's maximum context length is 128000 tokens. However, your messages "
        "resulted in 131072 tokens. Please reduce the length of the messages."
    )
    call.error(
        400, _error_body(message, "invalid_request_error", "messages", "context_length_exceeded")
    )


def _http_401(call: _Call) -> None:
    """OpenAI's 401 for an invalid (or missing) key, whatever key was sent."""
    _unauthorized(call.handler)


def _http_403(call: _Call) -> None:
    """OpenAI's 403 for an unsupported country, region or territory."""
    body = _error_body(
        "Country, region, or territory not supported",
        "request_forbidden",
        None,
        "unsupported_country_region_territory",
    )
    call.error(403, body)


def _http_404(call: _Call) -> None:
    """OpenAI's 404 model_not_found for the requested model."""
    message = f"The model `{call.model}` does not exist or you do not have access to it."
    call.error(404, _error_body(message, "invalid_request_error", None, "model_not_found"))


def _http_429(call: _Call) -> None:
    """OpenAI's 429 with Retry-After, retry-after-ms and x-ratelimit-* headers."""
    wait = call.retry_after
    message = (
        f"Rate limit reached for {call.model} in organization org-fake on requests per min "
        f"(RPM): Limit 3, Used 3, Requested 1. Please try again in {wait:g}s. Visit "
        "https://platform.openai.com/account/rate-limits to learn more."
    )
    headers = {
        "Retry-After": str(math.ceil(wait)),
        "retry-after-ms": str(round(wait * 1000)),
        "x-ratelimit-limit-requests": "3",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": f"{wait:g}s",
        "x-ratelimit-limit-tokens": "40000",
        "x-ratelimit-remaining-tokens": "39950",
        "x-ratelimit-reset-tokens": "75ms",
    }
    call.error(429, _error_body(message, "requests", None, "rate_limit_exceeded"), headers)


def _http_500(call: _Call) -> None:
    """OpenAI's generic 500 server_error."""
    message = "The server had an error while processing your request. Sorry about that!"
    call.error(500, _error_body(message, "server_error"))


def _http_503(call: _Call) -> None:
    """OpenAI's 503 when the engine is overloaded."""
    message = "The engine is currently overloaded, please try again later."
    call.error(503, _error_body(message, "server_error"))


def _then_ok(fail: Callable[[_Call], None]) -> Callable[[_Call], None]:
    """First `failures` requests with this exact model string fail, later ones stream."""

    def scenario(call: _Call) -> None:
        if call.upstream._take_failure(call.model, call.failures):
            fail(call)
        else:
            _openai(call)

    scenario.__doc__ = f"{fail.__name__} until `failures` requests have failed, then openai."
    return scenario


SCENARIOS: dict[str, Callable[[_Call], None]] = {
    "openai": _openai,
    "azure": _azure,
    "no-usage": _no_usage,
    "rejects-stream-options": _rejects_stream_options,
    "llamacpp": _llamacpp,
    "ollama-old": _ollama_old,
    "crlf": _crlf,
    "cr": _cr,
    "fragmented": _fragmented,
    "comments": _comments,
    "no-done": _no_done,
    "truncated": _truncated,
    "error-in-stream": _error_in_stream,
    "error-event": _error_event,
    "stall": _stall,
    "silent": _silent,
    "http-400": _http_400,
    "http-401": _http_401,
    "http-403": _http_403,
    "http-404": _http_404,
    "http-429": _http_429,
    "http-500": _http_500,
    "http-503": _http_503,
    "http-429-then-ok": _then_ok(_http_429),
    "http-500-then-ok": _then_ok(_http_500),
    "http-503-then-ok": _then_ok(_http_503),
    "reasoning": _reasoning,
    "slow": _openai,  # _Call gives "slow" its 0.05 s default delay
}
"""Scenario name -> handler; the request's model field picks one (see parse_model)."""
REFUSALS = {name: SCENARIOS[name] for name in ("http-429", "http-500", "http-503")}
"""The errors a disrupted upstream answers every request with (``Disruptions.refuse``)."""


# --------------------------------------------------------------------------- disruptions


class Disruptions:
    """Provider trouble for a while, across every request (the chaos soak schedules it):
    streams that go quiet, requests refused with 429 or 500, streams that end without
    ``[DONE]``. ``FakeUpstream.cut_streams`` drops the streams in progress."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._quiet_until = 0.0
        self._refuse_until = 0.0
        self._refusal = "http-429"
        self._no_done_until = 0.0

    def stall(self, seconds: float) -> None:
        """Every stream holds its next piece for ``seconds`` (new ones too)."""
        with self._lock:
            self._quiet_until = max(self._quiet_until, time.monotonic() + seconds)

    def refuse(self, scenario: str, seconds: float) -> None:
        """New requests get ``scenario``'s error (``http-429``, ``http-500``…)."""
        if scenario not in REFUSALS:
            raise ValueError(f"not a refusal: {scenario}")
        with self._lock:
            self._refusal = scenario
            self._refuse_until = time.monotonic() + seconds

    def omit_done(self, seconds: float) -> None:
        """Streams that finish meanwhile end their body without ``data: [DONE]``."""
        with self._lock:
            self._no_done_until = time.monotonic() + seconds

    def hold(self, stopping: threading.Event) -> None:
        while (left := self._quiet_until - time.monotonic()) > 0:
            if stopping.wait(min(left, 0.05)):
                return

    def refusing(self) -> str | None:
        with self._lock:
            return self._refusal if time.monotonic() < self._refuse_until else None

    def omitting_done(self) -> bool:
        return time.monotonic() < self._no_done_until


# --------------------------------------------------------------------------- HTTP plumbing


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # stop() unblocks handlers itself; never hang on a stuck one
    request_queue_size = 128
    upstream: FakeUpstream

    def server_bind(self) -> None:
        """Bind without HTTPServer's reverse DNS lookup, which can stall for seconds."""
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients vanishing is normal here; anything else is a bug worth one log line."""
        if isinstance(sys.exc_info()[1], OSError):
            return
        log.exception("fake upstream: error while handling %s", client_address)


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive and chunked bodies, like the real API
    server_version = "sluice-fake-upstream/1.0"
    sys_version = ""
    disable_nagle_algorithm = True  # each write leaves at once, so streams really stream
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.upstream._track_connection(self.connection, True)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        self.server.upstream._track_connection(self.connection, False)

    def handle(self) -> None:
        with contextlib.suppress(OSError, _ClientGone):
            super().handle()

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        """Silent in tests; one line per request in demo mode."""
        if self.server.upstream.demo:
            log.info("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    # --- helpers used by _Call

    recorded: RecordedRequest | None = None  # the request being answered

    def send_head(self, status: int, content_type: str, headers: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        request_id = self.recorded.request_id if self.recorded else "req_" + secrets.token_hex(16)
        self.send_header("x-request-id", request_id)
        if self.recorded is not None:
            self.recorded.status = status
        self.send_header("openai-processing-ms", "1")
        self.send_header("x-sluice-upstream", "demo" if self.server.upstream.demo else "fake")
        for name, value in headers.items():
            self.send_header(name, value)
        try:
            self.end_headers()
        except OSError as exc:
            raise _ClientGone from exc

    def send_body(
        self, status: int, data: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_head(status, content_type, {"Content-Length": str(len(data)), **(headers or {})})
        try:
            self.wfile.write(data)
        except OSError as exc:
            raise _ClientGone from exc

    def send_json_error(self, status: int, body: dict) -> None:
        self.send_body(status, (json.dumps(body, indent=4) + "\n").encode(), "application/json")

    def bearer_key(self) -> str:
        scheme, _, key = (self.headers.get("Authorization") or "").partition(" ")
        return key.strip() if scheme.lower() == "bearer" else ""

    # --- request handling

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            data = b""
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                data += self.rfile.read(size)
                self.rfile.readline()
            while self.rfile.readline().strip():  # trailers
                pass
            return data
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _dispatch(self) -> None:
        upstream = self.server.upstream
        raw = self._read_body()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        headers = _Headers()
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        port = self.client_address[1] if len(self.client_address) > 1 else 0
        request_id = "req_" + secrets.token_hex(16)
        self.recorded = RecordedRequest(self.command, self.path, headers, body, port, request_id)
        upstream._record(self.recorded)
        route = (self.command, urlsplit(self.path).path.rstrip("/"))
        try:
            if route == ("POST", "/v1/chat/completions"):
                self._chat(raw, body)
            elif route == ("GET", "/v1/models"):
                if self._authorized():
                    self._send_ok(upstream.models())
            else:
                message = f"Invalid URL ({self.command} {urlsplit(self.path).path})"
                self.send_json_error(404, _error_body(message, "invalid_request_error"))
        except _ClientGone:
            self.close_connection = True

    def _send_ok(self, obj: Any) -> None:
        self.send_body(200, _compact(obj).encode("utf-8"), "application/json")

    def _authorized(self) -> bool:
        expected = self.server.upstream.api_key
        if expected is None or self.bearer_key() == expected:
            return True
        _unauthorized(self)
        return False

    def _chat(self, raw: bytes, body: Any) -> None:
        if not self._authorized():
            return
        if not isinstance(body, dict):
            message = (
                "We could not parse the JSON body of your request. (HINT: This likely means you "
                "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, "
                "but what was sent was not valid JSON."
            )
            self.send_json_error(400, _error_body(message, "invalid_request_error"))
            return
        if not isinstance(body.get("messages"), list):
            self.send_json_error(
                400,
                _error_body(
                    "Missing required parameter: 'messages'.",
                    "invalid_request_error",
                    "messages",
                    "missing_required_parameter",
                ),
            )
            return
        try:
            call = _Call(self, body)
        except ValueError as exc:
            self.send_json_error(400, _error_body(str(exc), "invalid_request_error"))
            return
        refusal = self.server.upstream.disruptions.refusing()
        if refusal is not None:  # a provider having a bad minute: every request refused
            REFUSALS[refusal](call)
            return
        SCENARIOS[call.scenario](call)


# --------------------------------------------------------------------------- the server


class FakeUpstream:
    """The fake upstream server; ``with FakeUpstream() as up: ... up.base_url``."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        default_delay: float | None = None,
        demo: bool = False,
    ) -> None:
        """`default_delay` None means 0, or DEMO_DELAY in demo mode so humans see typing."""
        self.host = host
        self.port = port
        self.api_key = api_key
        self.demo = demo
        if default_delay is None:
            default_delay = DEMO_DELAY if demo else 0.0
        self.default_delay = default_delay
        self.base_url = ""
        self.requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._open_streams = 0
        self._closed_by_client = 0
        self._failures: dict[str, int] = {}
        self._connections: set[socket.socket] = set()
        self._streaming: set[_Call] = set()
        self.disruptions = Disruptions()
        self._stopping = threading.Event()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle

    def _bind(self) -> _Server:
        server_cls = _Server6 if ":" in self.host else _Server
        httpd = server_cls((self.host, self.port), _Handler, bind_and_activate=False)
        httpd.upstream = self
        try:
            httpd.server_bind()
            httpd.server_activate()
        except BaseException:
            httpd.server_close()
            raise
        self.port = int(httpd.server_address[1])
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self.host, self.host)
        self.base_url = f"http://{f'[{host}]' if ':' in host else host}:{self.port}/v1"
        self._stopping.clear()
        self._httpd = httpd
        return httpd

    def start(self) -> FakeUpstream:
        """Serve in a daemon thread; returns self so ``FakeUpstream().start()`` chains."""
        httpd = self._bind()
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"fake-upstream-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, cut every open connection (stalled streams too) and wait briefly."""
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            self._shutdown(httpd, in_serving_thread=False)
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _shutdown(self, httpd: _Server, in_serving_thread: bool) -> None:
        self._stopping.set()
        if not in_serving_thread:
            httpd.shutdown()
        httpd.server_close()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- observations for tests

    @property
    def open_streams(self) -> int:
        """Streaming responses in progress (counted before headers, released in a finally)."""
        with self._lock:
            return self._open_streams

    @property
    def streams_closed_by_client(self) -> int:
        """Streams that ended because the client went away (how cancellation shows upstream)."""
        with self._lock:
            return self._closed_by_client

    def wait_for_no_open_streams(self, timeout: float) -> bool:
        """True once no stream is in progress; False if `timeout` seconds pass first."""
        with self._changed:
            return self._changed.wait_for(lambda: self._open_streams == 0, timeout)

    def models(self) -> dict:
        """The /v1/models listing; demo ids are owned by DEMO_OWNER so a UI can label them."""
        if self.demo:
            ids = [(DEMO_MODEL, DEMO_OWNER)] + [(name, DEMO_OWNER) for name in SCENARIOS]
        else:
            ids = [("gpt-4o-mini", "system"), ("gpt-4o", "system"), ("o3-mini", "system")]
            ids.append((DEMO_MODEL, DEMO_OWNER))
        data = [
            {"id": i, "object": "model", "created": _MODELS_CREATED, "owned_by": o} for i, o in ids
        ]
        return {"object": "list", "data": data}

    # --- bookkeeping used by the handlers

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)
            if self.demo and len(self.requests) > _DEMO_MAX_RECORDED:  # long-running demo
                del self.requests[: len(self.requests) - _DEMO_MAX_RECORDED]

    def cut_streams(self) -> int:
        """Drop every stream in progress at once, as a provider's load balancer restarting
        does (no terminating chunk, no [DONE]); returns how many were cut."""
        with self._lock:
            calls = list(self._streaming)
        for call in calls:
            call.abort()
        return len(calls)

    @contextlib.contextmanager
    def _streaming_call(self, call: _Call) -> Iterator[None]:
        with self._lock:
            self._streaming.add(call)
        try:
            yield
        finally:
            with self._lock:
                self._streaming.discard(call)

    def _track_connection(self, conn: socket.socket, alive: bool) -> None:
        with self._lock:
            if alive:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    def _stream_opened(self) -> None:
        with self._changed:
            self._open_streams += 1
            self._changed.notify_all()

    def _stream_closed(self) -> None:
        with self._changed:
            self._open_streams -= 1
            self._changed.notify_all()

    def _client_closed(self) -> None:
        with self._lock:
            self._closed_by_client += 1

    def _take_failure(self, model: str, limit: int) -> bool:
        """Count one failure for this exact model string while under `limit`."""
        with self._lock:
            used = self._failures.get(model, 0)
            if used >= limit:
                return False
            self._failures[model] = used + 1
            return True


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> None:
    """Run the DEMO upstream in the foreground (what Sluice uses without OPENAI_API_KEY)."""
    parser = argparse.ArgumentParser(
        prog="python -m devtools.fake_upstream",
        description="Sluice DEMO upstream: a fake OpenAI-compatible server that streams canned "
        "text. It is not a real LLM.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="0 picks a free port")
    parser.add_argument("--api-key", default=None, help="require this bearer key")
    parser.add_argument(
        "--delay", type=float, default=None, help=f"seconds between pieces (default {DEMO_DELAY})"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    upstream = FakeUpstream(args.host, args.port, args.api_key, args.delay, demo=True)
    httpd = upstream._bind()
    log.warning(
        "DEMO upstream (NOT a real LLM: canned text only) listening on %s - "
        "fake OpenAI-compatible server, delay %.3fs, %s",
        upstream.base_url,
        upstream.default_delay,
        "API key required" if args.api_key else "no API key required",
    )
    try:
        httpd.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        upstream._httpd = None
        upstream._shutdown(httpd, in_serving_thread=True)


if __name__ == "__main__":
    main()
