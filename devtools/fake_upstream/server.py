"""The fake upstream's HTTP side: server, handler, one request, ``FakeUpstream``, the CLI.

A threading HTTP/1.1 server on the standard library (keep-alive, chunked bodies, no reverse
DNS), its handler routing ``/v1/chat/completions`` and ``/v1/models``, and ``_Call``: one
chat request's parameters plus the socket operations a scenario answers through (write,
pause, abort, noticing that the client left). ``FakeUpstream`` starts and stops it, records
requests and keeps the counters tests wait on, cuts streams and holds the ``Disruptions``.
The only module that touches sockets and threads; ``main`` runs the demo upstream.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import secrets
import select
import socket
import socketserver
import string
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from devtools.fake_upstream.replies import (
    _Answer,
    _answer,
    _float_param,
    _int_param,
    prompt_tokens,
    top_logprobs,
)
from devtools.fake_upstream.scenarios import REFUSALS, SCENARIOS, Disruptions, parse_model
from devtools.fake_upstream.wire import (
    FRAMINGS,
    KEY_ECHOES,
    _ClientGone,
    _compact,
    _error_body,
    _SSEWriter,
    _unauthorized,
)

log = logging.getLogger("devtools.fake_upstream")

DEMO_MODEL = "sluice-demo"
DEMO_OWNER = "sluice-demo-upstream"
DEMO_DELAY = 0.03
DEFAULT_PORT = 8090
_MODELS_CREATED = 1_700_000_000
_DEMO_MAX_RECORDED = 1000

# --------------------------------------------------------------------------- recording


class _Headers(dict[str, str]):
    """Header names stored lower-cased with case-insensitive lookups, as HTTP intends."""

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())

    def get(self, key: object, default: Any = None) -> Any:
        return super().get(key.lower() if isinstance(key, str) else key, default)


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
    # what the stream wrote to the socket, per choice (content, reasoning, refusal, tool
    # calls assembled from their fragments, in the message's shape), and whether it
    # reached its end ([DONE], or the body's end where the scenario sends none);
    # pieces_sent counts what usage counts (content, reasoning, refusal, argument pieces)
    sent: dict[int, str] = field(default_factory=dict)
    reasoning_sent: dict[int, str] = field(default_factory=dict)
    refusal_sent: dict[int, str] = field(default_factory=dict)
    tool_calls_sent: dict[int, list[dict]] = field(default_factory=dict)
    pieces_sent: int = 0
    status: int = 0
    finished: bool = False  # the whole answer went out: its [DONE], or the body's end without

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
            if delta.get("refusal"):
                self.refusal_sent[index] = self.refusal_sent.get(index, "") + delta["refusal"]
                self.pieces_sent += 1
            for fragment in delta.get("tool_calls") or ():
                self._wrote_call(index, fragment)

    def _wrote_call(self, index: int, fragment: dict) -> None:
        calls = self.tool_calls_sent.setdefault(index, [])
        if "id" in fragment:  # a call's first fragment: its id, type and name
            kind = fragment["type"]
            field_ = "input" if kind == "custom" else "arguments"
            calls.append({"id": fragment["id"], "type": kind, kind: {**fragment[kind], field_: ""}})
            return
        call = calls[fragment["index"]]
        kind = call["type"]
        field_ = "input" if kind == "custom" else "arguments"
        call[kind][field_] += fragment[kind][field_]
        self.pieces_sent += 1


# --------------------------------------------------------------------------- one request


_ID_ALPHABET = string.ascii_letters + string.digits


def _call_id() -> str:
    """OpenAI's tool call ids: ``call_`` and 24 random letters and digits."""
    return "call_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(24))


@dataclass
class _Choice:
    """One choice of a response: what it says, and the ids of its tool calls (random per
    response, so they are drawn here and not in the pure ``replies``)."""

    index: int
    answer: _Answer
    call_ids: list[str] = field(default_factory=list)

    @property
    def pieces(self) -> list[str]:
        """The content or refusal pieces (one per token)."""
        return self.answer.pieces

    @property
    def finish_reason(self) -> str:
        return self.answer.finish_reason


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
        self.framing = p.get("framing", "chunked")
        if self.framing not in FRAMINGS:
            raise ValueError(f"framing must be one of {', '.join(FRAMINGS)}")
        self.calls = _int_param(p, "calls", 1)
        self.logprobs = body.get("logprobs") is True
        self.top_logprobs = top_logprobs(body)  # out of 0..20: a 400 naming top_logprobs
        self.gzip = p.get("encoding", "identity") == "gzip"
        if p.get("encoding", "identity") not in ("identity", "gzip"):
            raise ValueError("encoding must be identity or gzip")

    # --- content

    def plan(self) -> list[_Choice]:
        """What each choice answers, its tool calls given fresh ids."""
        choices = []
        for i in range(self.n):
            answer = _answer(self.body, i)
            choices.append(_Choice(i, answer, [_call_id() for _ in answer.calls]))
        return choices

    def usage(self, plan: list[_Choice], extra_pieces: int = 0) -> dict:
        completion = sum(c.answer.tokens for c in plan) + extra_pieces
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
        """Send event-stream headers (chunked, like OpenAI, or with ``framing=close`` a
        body that only the connection's close ends); returns the SSE writer."""
        chunked = self.framing == "chunked"
        headers = {"Cache-Control": "no-cache, must-revalidate"}
        if chunked:
            headers = {"Transfer-Encoding": "chunked", **headers}
        if close or not chunked:
            headers["Connection"] = "close"
            self.handler.close_connection = True
        if self.gzip:
            headers["Content-Encoding"] = "gzip"
        self.handler.send_head(200, "text/event-stream; charset=utf-8", headers)
        return _SSEWriter(self, chunked=chunked, gzip=self.gzip, **wire)

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
        upstream = self.server.upstream
        key = self.bearer_key()
        if upstream.api_key is None or key == upstream.api_key or key in upstream.extra_keys:
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
        except ValueError as exc:  # replies.BadParameter names its param, as OpenAI does
            param = getattr(exc, "param", None)
            self.send_json_error(400, _error_body(str(exc), "invalid_request_error", param))
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
        extra_keys: Iterable[str] = (),
        key_echo: str = "masked",
    ) -> None:
        """`default_delay` None means 0, or DEMO_DELAY in demo mode so humans see typing.

        `extra_keys`: keys accepted besides `api_key` (a user's own key beside the
        server's, as a real provider accepts every valid key of its accounts). `key_echo`:
        how a 401 quotes the key it was sent (``wire.KEY_ECHOES``: ``masked`` as OpenAI,
        ``full`` as servers that echo the whole key)."""
        if key_echo not in KEY_ECHOES:
            raise ValueError(f"key_echo must be one of {', '.join(KEY_ECHOES)}")
        self.host = host
        self.port = port
        self.api_key = api_key
        self.extra_keys = frozenset(extra_keys)
        self.key_echo = key_echo
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
