"""A fast fake OpenAI-compatible upstream for the benchmark: one asyncio event loop.

``POST /v1/chat/completions`` with ``stream: true`` answers in OpenAI's streaming format
(role chunk, N content chunks, finish chunk, a usage chunk when
``stream_options.include_usage``, ``data: [DONE]``), one HTTP chunk per SSE event. The
``model`` string sets the stream: ``bench;deltas=50;interval=0.02`` (interval 0: all at
once). The first delta goes out at once, then one every ``interval`` seconds, so a stream
lasts ``(deltas - 1) * interval``. Each delta's content is ``"<seq>:<emit time>|"``
(``time.time()``, 6 decimals), so clients measure each delta's latency end to end.

Built for many streams at little CPU: ``asyncio.Protocol`` (no stream/task per
connection), and deltas due within the same millisecond share one timer callback.
``GET /v1/models`` lists ``bench``; ``GET /bench/stats`` reports the streams served and
the peak number open at once (the benchmark's evidence of a worker's concurrency), and
``POST /bench/reset`` zeroes them.

Run on its own: ``python -m bench.upstream --port 8091``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import uvloop

log = logging.getLogger("bench.upstream")

DEFAULT_DELTAS = 40
DEFAULT_INTERVAL = 0.02
MAX_HEADER_BYTES = 64 * 1024


def parse_model(model: str) -> tuple[int, float]:
    """``"bench;deltas=50;interval=0.02"`` -> (50, 0.02); missing parameters get defaults."""
    params: dict[str, str] = {}
    for part in (model or "").split(";")[1:]:
        key, _, value = part.partition("=")
        params[key.strip()] = value.strip()
    deltas = int(params.get("deltas", DEFAULT_DELTAS))
    interval = float(params.get("interval", DEFAULT_INTERVAL))
    if deltas < 0 or interval < 0 or not math.isfinite(interval):
        raise ValueError("deltas and interval must be >= 0")
    return deltas, interval


def chunk(payload: bytes) -> bytes:
    """One HTTP/1.1 chunk of a chunked body."""
    return b"%x\r\n%s\r\n" % (len(payload), payload)


def sse_data(data: str) -> bytes:
    return chunk(f"data: {data}\n\n".encode())


@dataclass
class Stats:
    open: int = 0
    peak_open: int = 0
    streams: int = 0
    deltas: int = 0

    def opened(self) -> None:
        self.open += 1
        self.streams += 1
        self.peak_open = max(self.peak_open, self.open)


@dataclass
class Scheduler:
    """Calls callbacks at loop times, rounded up to the millisecond, one timer per ms."""

    loop: asyncio.AbstractEventLoop
    buckets: dict[int, list[Callable[[], None]]] = field(default_factory=dict)

    def at(self, when: float, callback: Callable[[], None]) -> None:
        key = math.ceil(when * 1000)
        bucket = self.buckets.get(key)
        if bucket is None:
            self.buckets[key] = [callback]
            self.loop.call_at(key / 1000, self._fire, key)
        else:
            bucket.append(callback)

    def _fire(self, key: int) -> None:
        for callback in self.buckets.pop(key, ()):
            callback()


class Emitter:
    """One streamed completion on one connection."""

    def __init__(
        self,
        proto: HTTPProtocol,
        model: str,
        deltas: int,
        interval: float,
        include_usage: bool,
    ) -> None:
        self.proto = proto
        self.deltas = deltas
        self.interval = interval
        self.include_usage = include_usage
        self.seq = 0
        self.cancelled = False
        server = proto.server
        server.counter += 1
        usage = ',"usage":null' if include_usage else ""
        self.head = (
            f'{{"id":"chatcmpl-bench{server.counter}","object":"chat.completion.chunk",'
            f'"created":{int(time.time())},"model":{json.dumps(model)},'
            f'"system_fingerprint":"fp_bench","choices":[{{"index":0,"delta":'
        )
        self.tail = '"logprobs":null,"finish_reason":%s}]' + usage + "}"

    def _event(self, delta: str, finish: str = "null") -> bytes:
        return sse_data(self.head + delta + "," + self.tail % finish)

    def begin(self) -> None:
        self.proto.server.stats.opened()
        self.start = self.proto.server.loop.time()
        self.proto.write(self._event('{"role":"assistant","content":""}'))
        if self.interval == 0:
            out = [self._delta() for _ in range(self.deltas)]
            self.proto.write(b"".join(out))
            self.finish()
        else:
            self.step()

    def _delta(self) -> bytes:
        content = f"{self.seq}:{time.time():.6f}|"
        self.seq += 1
        self.proto.server.stats.deltas += 1
        return self._event('{"content":"' + content + '"}')

    def step(self) -> None:
        if self.cancelled:
            return
        if self.seq >= self.deltas:
            self.finish()
            return
        self.proto.write(self._delta())
        if self.seq >= self.deltas:
            self.finish()
        else:
            self.proto.server.scheduler.at(self.start + self.seq * self.interval, self.step)

    def finish(self) -> None:
        out = [self._event("{}", '"stop"')]
        if self.include_usage:
            usage = {"prompt_tokens": 1, "completion_tokens": self.deltas}
            usage["total_tokens"] = usage["prompt_tokens"] + self.deltas
            done = self.head.split('"choices"')[0] + f'"choices":[],"usage":{json.dumps(usage)}}}'
            out.append(sse_data(done))
        out.append(sse_data("[DONE]"))
        out.append(b"0\r\n\r\n")
        self.proto.write(b"".join(out))
        self.cancelled = True
        self.proto.server.stats.open -= 1
        self.proto.stream_ended()

    def cancel(self) -> None:
        if not self.cancelled:
            self.cancelled = True
            self.proto.server.stats.open -= 1


class HTTPProtocol(asyncio.Protocol):
    """HTTP/1.1 with keep-alive; one request at a time per connection."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.emitter: Emitter | None = None
        self.close_after = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # a TCP one (uvloop's)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.emitter is not None:
            self.emitter.cancel()
            self.emitter = None
        self.transport = None

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._process()

    def _process(self) -> None:
        while self.emitter is None and self.transport is not None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_HEADER_BYTES:
                    self.transport.close()
                return
            lines = self.buffer[:end].decode("latin-1").split("\r\n")
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length") or 0)
            if len(self.buffer) < end + 4 + length:
                return
            body = bytes(self.buffer[end + 4 : end + 4 + length])
            del self.buffer[: end + 4 + length]
            method, path, *_ = lines[0].split(" ")
            self.close_after = headers.get("connection", "").lower() == "close"
            self._dispatch(method, path.split("?")[0], body)

    def _respond(self, status: str, body: Any) -> None:
        payload = json.dumps(body).encode()
        conn = "close" if self.close_after else "keep-alive"
        self.write(
            f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\nConnection: {conn}\r\n\r\n".encode()
            + payload
        )
        if self.close_after and self.transport is not None:
            self.transport.close()

    def _dispatch(self, method: str, path: str, body: bytes) -> None:
        if method == "GET" and path == "/v1/models":
            models = [{"id": "bench", "object": "model", "created": 0, "owned_by": "bench"}]
            self._respond("200 OK", {"object": "list", "data": models})
        elif method == "GET" and path == "/bench/stats":
            self._respond("200 OK", vars(self.server.stats))
        elif method == "POST" and path == "/bench/reset":
            self.server.stats = Stats(open=self.server.stats.open)
            self._respond("200 OK", vars(self.server.stats))
        elif method == "POST" and path == "/v1/chat/completions":
            self._completion(body)
        else:
            self._respond("404 Not Found", {"error": {"type": "not_found", "message": path}})

    def _completion(self, body: bytes) -> None:
        try:
            request = json.loads(body)
            model = str(request.get("model") or "bench")
            deltas, interval = parse_model(model)
        except (ValueError, AttributeError) as exc:
            error = {"type": "invalid_request_error", "message": str(exc)}
            self._respond("400 Bad Request", {"error": error})
            return
        if not request.get("stream"):
            text = "".join(f"{i}:{time.time():.6f}|" for i in range(deltas))
            message = {"role": "assistant", "content": text}
            choice = {"index": 0, "message": message, "finish_reason": "stop"}
            self._respond("200 OK", {"object": "chat.completion", "choices": [choice]})
            return
        include_usage = bool((request.get("stream_options") or {}).get("include_usage"))
        conn = "close" if self.close_after else "keep-alive"
        self.write(
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            f"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\nConnection: {conn}\r\n\r\n"
            .encode()
        )  # fmt: skip
        self.emitter = Emitter(self, model, deltas, interval, include_usage)
        self.emitter.begin()

    def stream_ended(self) -> None:
        self.emitter = None
        if self.close_after and self.transport is not None:
            self.transport.close()
        else:
            self.server.loop.call_soon(self._process)


class Server:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.scheduler = Scheduler(loop)
        self.stats = Stats()
        self.counter = 0


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    state = Server(loop)
    server = await loop.create_server(lambda: HTTPProtocol(state), host, port, backlog=4096)
    log.info("bench upstream listening on http://%s:%d/v1", host, port)
    print(f"listening on {host}:{port}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8091)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
