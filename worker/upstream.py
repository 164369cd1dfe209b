"""The upstream's side of a job: opening a streamed chat completion on an
OpenAI-compatible upstream with ``requests``, and reading its SSE events
(``chat.completion.chunk`` payloads) into delta events (``ChunkReader``).

The reader tolerates what real providers send (anchors part b, 16-20): chunks with empty
``choices`` (Azure's first chunk, the usage-only last chunk), usage riding on the finish
chunk (llama.cpp), ``finish_reason: ""`` (old Ollama), ``reasoning_content`` deltas
(DeepSeek), and error objects inside a 200 stream (vLLM, sglang), which become failures
instead of silent empty successes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
from collections.abc import Iterator, Sequence
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3 import exceptions as urllib3_exceptions

from sluice.errors import (
    KeyVaultError,
    UpstreamConnectionError,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamTimeout,
)
from sluice.events import DELTA, Event
from sluice.keyvault import vault_for
from sluice.settings import Settings
from sluice.sse_decoder import ServerSentEvent
from sluice.upstream_errors import error_from_payload, error_from_response

log = logging.getLogger("sluice.worker")

MAX_ERROR_BODY = 64 * 1024
READ_SIZE = 64 * 1024  # bytes one read of a streamed body returns at most


def make_session(base_url: str, pool_size: int = 256) -> requests.Session:
    """One keep-alive connection pool per worker process, shared by its jobs.

    The environment's proxy and CA settings for ``base_url`` (``HTTPS_PROXY``,
    ``NO_PROXY``, ``REQUESTS_CA_BUNDLE``…) are read once, here: with ``trust_env``
    requests re-reads them on every request (a scan of ``os.environ`` and a look for
    ``~/.netrc``), about a tenth of the cost of opening a stream. ``.netrc`` credentials
    are not used: they would replace the bearer key.
    """
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=8, pool_maxsize=pool_size, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    environment = session.merge_environment_settings(base_url, {}, None, None, None)
    session.trust_env = False
    session.proxies.update(environment["proxies"])
    session.verify = environment["verify"]
    return session


def socket_of(response: Any) -> socket.socket | None:
    """The socket under a streamed ``requests`` response (None once it is gone)."""
    raw = getattr(response, "raw", None)
    conn = getattr(raw, "_connection", None) or getattr(raw, "connection", None)
    sock = getattr(conn, "sock", None)
    if sock is None:
        fp = getattr(getattr(raw, "_fp", None), "fp", None)
        sock = getattr(getattr(fp, "raw", None), "_sock", None)
    return sock


# After [DONE]: how long, and how many bytes, to wait for the end of the response body.
DRAIN_TIMEOUT = 1.0
DRAIN_LIMIT = 64 * 1024


def body_chunks(response: requests.Response, size: int = READ_SIZE) -> Iterator[bytes]:
    """The response body's bytes as they arrive, whatever its framing.

    ``iter_content(chunk_size=None)`` yields a chunked body a chunk at a time, but reads a
    close-delimited one (HTTP/1.1 ``Connection: close`` with neither chunked encoding nor a
    length, or HTTP/1.0: legal, and what Python's ``http.server``, some proxies and small
    servers send) in one piece, at its end: nothing streams, a cancel waits for the read
    timeout. ``read1`` returns what one read of the socket gave, decoded when the body is
    compressed, so deltas flow however the body is delimited. urllib3's errors become
    requests' (as ``iter_content`` raises them), for ``map_read_error``.
    """
    raw = response.raw
    try:
        while data := raw.read1(size, decode_content=True):
            yield data
    except urllib3_exceptions.ProtocolError as exc:
        raise requests.exceptions.ChunkedEncodingError(exc) from exc
    except urllib3_exceptions.DecodeError as exc:
        raise requests.exceptions.ContentDecodingError(exc) from exc
    except urllib3_exceptions.ReadTimeoutError as exc:
        raise requests.exceptions.ConnectionError(exc) from exc
    except urllib3_exceptions.SSLError as exc:
        raise requests.exceptions.SSLError(exc) from exc
    response._content_consumed = True  # (requests' flag: the connection may be reused)


def recycle(response: requests.Response, rest: Iterator[bytes]) -> bool:
    """Finish a response whose stream ended with ``[DONE]``, so its connection goes back
    to the keep-alive pool; returns whether it did.

    What follows ``[DONE]`` is normally only the end of the chunked body, already on its
    way; reading it lets the next job reuse the connection (no new TCP connection, and
    against a real provider no new TLS handshake). ``Response.close()`` on an unfinished
    body closes the connection instead, so every job would open its own. A server that
    does not end the body promptly gets its connection closed, as before.
    """
    sock = socket_of(response)
    try:
        if sock is not None:
            sock.settimeout(DRAIN_TIMEOUT)  # urllib3 sets it again for the next request
        extra = 0
        for chunk in rest:
            extra += len(chunk)
            if extra > DRAIN_LIMIT:
                break
    except Exception as exc:  # the answer is in: this is only tidying up
        # a connection error, or whatever urllib3 raises when a watcher closed the body
        # meanwhile (an AttributeError): either way the connection is not reused
        log.debug("could not finish the upstream response: %r", exc)
    reused = bool(getattr(response, "_content_consumed", False))
    with contextlib.suppress(Exception):
        response.close()  # releases a finished connection to the pool, closes any other
    return reused


def _read_error_body(response: requests.Response) -> bytes:
    body = b""
    try:
        for chunk in response.iter_content(8192):
            body += chunk
            if len(body) >= MAX_ERROR_BODY:
                break
    except requests.RequestException:
        pass
    finally:
        response.close()
    return body


class Upstream:
    """Where completions come from: base URL, key, timeouts, and what the server accepts."""

    def __init__(self, settings: Settings, session: requests.Session | None = None) -> None:
        self.settings = settings
        self.session = session or make_session(settings.openai_base_url)
        # servers that answered 400 to stream_options (older Azure, some proxies)
        self._no_stream_options: set[str] = set()

    def api_key_for(self, sealed_key: str | None) -> str | None:
        """The key to send for a job: the user's own if it brought one (``sealed_key``, as
        the job carries it, encrypted), else the server's."""
        if sealed_key is None:
            return self.settings.openai_api_key
        vault = vault_for(self.settings.secret_key, self.settings.max_job_age)
        if vault is None:
            raise KeyVaultError("the job carries a user key but SLUICE_SECRET_KEY is not set")
        return vault.open(sealed_key)

    def open_stream(self, request: dict[str, Any], api_key: str | None) -> requests.Response:
        """POST the request with ``stream: true``; returns the open 200 response.

        Asks for usage with ``stream_options.include_usage``; a server that rejects that
        option is asked again without it and remembered.
        """
        base = self.settings.openai_base_url
        body = {**request, "stream": True}
        if base not in self._no_stream_options:
            body["stream_options"] = {"include_usage": True}
        response = self._post(base, body, api_key)
        if response.status_code == 400 and "stream_options" in body:
            error_body = _read_error_body(response)
            if b"stream_options" in error_body:
                log.info("upstream %s rejects stream_options; retrying without", base)
                self._no_stream_options.add(base)
                del body["stream_options"]
                response = self._post(base, body, api_key)
            else:
                raise error_from_response(400, error_body, response.headers, keys=(api_key,))
        if response.status_code != 200:
            raise error_from_response(
                response.status_code,
                _read_error_body(response),
                response.headers,
                keys=(api_key,),
            )
        return response

    def _post(self, base: str, body: dict[str, Any], api_key: str | None) -> requests.Response:
        headers = {"Accept": "text/event-stream"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        timeout = (self.settings.upstream_connect_timeout, self.settings.upstream_read_timeout)
        try:
            return self.session.post(
                f"{base}/chat/completions", json=body, headers=headers, stream=True,
                timeout=timeout,
                # the configured upstream only: a redirect (from a proxy in front of it, or
                # a compromised one) is an error, not a second request somewhere else
                allow_redirects=False,
            )  # fmt: skip
        except requests.ConnectTimeout as exc:
            error = UpstreamTimeout(f"could not connect to the upstream in time ({_why(exc)})")
            error.retryable = True
            raise error from None
        except requests.Timeout as exc:
            raise UpstreamTimeout(f"the upstream did not answer in time ({_why(exc)})") from None
        except requests.RequestException as exc:
            raise UpstreamConnectionError(f"cannot reach the upstream: {_why(exc)}") from None


def _why(exc: BaseException) -> str:
    """A short reason without URLs' query strings or headers (no secrets in messages)."""
    return type(exc).__name__


def map_read_error(exc: requests.RequestException) -> UpstreamError:
    """An error raised while reading the body of a stream."""
    text = str(exc)
    if isinstance(exc, requests.Timeout) or "Read timed out" in text:
        return UpstreamTimeout("the upstream went silent longer than the read timeout")
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return UpstreamConnectionError("the upstream closed the connection mid-stream")
    return UpstreamConnectionError(f"the upstream connection broke mid-stream ({_why(exc)})")


# -- reading the chunks ------------------------------------------------------------------


# the fragments whose text joins when they arrive together: plain text, nothing else in it
_JOINABLE = ("content", "reasoning", "refusal")


def coalesce(events: list[Event]) -> list[Event]:
    """Join consecutive text deltas of one read that differ only in their text: the same
    choice, the same kind of text (content, reasoning or refusal), no logprobs.

    A worker that keeps up reads one upstream chunk at a time, and nothing changes. One
    that falls behind (a burst of starts, a busy machine) finds several chunks waiting in
    a read; sent as one event each, every one costs its own log entry, pub/sub line and
    SSE frame in every gateway that relays it, the cost that made it fall behind. Joined,
    the text and its order are the same (the log stays the answer, exactly), there are
    fewer events to carry, and the worker catches up. Tool-call fragments and tokens with
    logprobs stay one event each: a client may read them one by one.
    """
    if len(events) < 2:
        return events
    out: list[Event] = []
    for event in events:
        previous = out[-1] if out else None
        if previous is not None and _joins(previous, event):
            field = _text_field(event)
            assert field is not None
            data = {"index": event.data["index"], field: previous.data[field] + event.data[field]}
            out[-1] = Event(DELTA, data)
        else:
            out.append(event)
    return out


def _text_field(event: Event) -> str | None:
    """The text fragment's kind, when the delta is a plain text fragment and nothing more."""
    data = event.data
    if event.type != DELTA or len(data) != 2 or "index" not in data:
        return None
    for field in _JOINABLE:
        if isinstance(data.get(field), str):
            return field
    return None


def _joins(previous: Event, event: Event) -> bool:
    field = _text_field(event)
    return (
        field is not None
        and field == _text_field(previous)
        and previous.data["index"] == event.data["index"]
    )


class ChunkReader:
    """The delta events of one job's upstream chunks (``docs/events.md``): one event per
    fragment (reasoning, content, refusal, each tool-call fragment), with the fragment's
    logprobs, the plain text fragments of one read joined (``coalesce``); and what the
    job's ``done`` needs (finish reasons, usage, the texts)."""

    def __init__(self, n: int = 1) -> None:
        self.n = n
        # the key the request presented: redacted from in-stream error messages
        self.keys: tuple[str | None, ...] = ()
        self.finish_reasons: dict[int, str] = {}
        self.usage: dict[str, int] | None = None
        self.contents: dict[int, list[str]] = {}
        self.deltas = 0

    def read(self, sse_events: Sequence[ServerSentEvent]) -> tuple[list[Event], bool]:
        """The delta events of these upstream SSE events (``coalesce``d), and whether
        ``[DONE]`` was among them (what follows it is not read). Raises ``UpstreamError``
        for an error event and ``UpstreamProtocolError`` for a chunk that is not JSON."""
        events: list[Event] = []
        for sse in sse_events:
            if sse.data.strip() == "[DONE]":
                return coalesce(events), True
            try:
                payload = json.loads(sse.data)
            except ValueError:
                raise UpstreamProtocolError("the upstream sent a chunk that is not JSON") from None
            if sse.event == "error":
                raise error_from_payload(payload, keys=self.keys)
            events.extend(self.consume(payload))
        return coalesce(events), False

    def consume(self, payload: Any) -> list[Event]:
        """Events for one chunk; raises ``UpstreamError`` for an in-stream error object."""
        if not isinstance(payload, dict):
            return []
        if payload.get("error"):
            raise error_from_payload(payload, keys=self.keys)
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
            fragments = self._fragments(choice)
            events.extend(Event(DELTA, {"index": index, **f}) for f in fragments)
            texts = self.contents.setdefault(index, [])
            for fragment in fragments:
                texts.extend(_fragment_texts(fragment))
            reason = choice.get("finish_reason")
            if isinstance(reason, str) and reason:
                self.finish_reasons[index] = reason
        self.deltas += len(events)
        return events

    @staticmethod
    def _fragments(choice: dict[str, Any]) -> list[dict[str, Any]]:
        """One choice's delta as Sluice fragments, in the order the model wrote them."""
        delta = choice.get("delta")
        delta = delta if isinstance(delta, dict) else {}
        logprobs = choice.get("logprobs")
        logprobs = logprobs if isinstance(logprobs, dict) else {}
        out: list[dict[str, Any]] = []
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if isinstance(reasoning, str) and reasoning:
            out.append({"reasoning": reasoning})
        for field in ("content", "refusal"):
            text = delta.get(field)
            text = text if isinstance(text, str) else ""
            tokens = logprobs.get(field)
            if text or (isinstance(tokens, list) and tokens):
                # a token may carry logprobs with an empty text: kept, so none is lost
                fragment: dict[str, Any] = {field: text}
                if isinstance(tokens, list) and tokens:
                    fragment["logprobs"] = tokens
                out.append(fragment)
        calls = delta.get("tool_calls")
        for position, call in enumerate(calls if isinstance(calls, list) else ()):
            call_fragment = _tool_call_fragment(call, position)
            if call_fragment is not None:
                out.append({"tool_call": call_fragment})
        return out

    @property
    def finished(self) -> bool:
        """Every choice has a finish reason."""
        return len(self.finish_reasons) >= self.n

    def finish_reason_list(self) -> list[str | None]:
        return [self.finish_reasons.get(i) for i in range(self.n)]

    def completion_texts(self) -> list[str]:
        return ["".join(parts) for _, parts in sorted(self.contents.items())]


def _tool_call_fragment(call: Any, position: int) -> dict[str, Any] | None:
    """A tool-call delta as a ``tool_call`` fragment, or None when it carries nothing.

    OpenAI sends ``{"index", "id", "type", "function": {"name", "arguments"}}`` first and
    ``{"index", "function": {"arguments"}}`` after; a custom tool's ``custom: {name,
    input}`` carries its input as the fragment's ``arguments``. Servers that omit the
    index (one call per chunk position) get the call's position in the chunk."""
    if not isinstance(call, dict):
        return None
    index = call.get("index")
    if not (isinstance(index, int) and index >= 0):
        index = position
    fragment: dict[str, Any] = {"index": index}
    kind = call.get("type")
    body = call.get("custom") if kind == "custom" or "custom" in call else call.get("function")
    body = body if isinstance(body, dict) else {}
    if isinstance(call.get("id"), str) and call["id"]:
        fragment["id"] = call["id"]
    if isinstance(kind, str) and kind:
        fragment["type"] = kind
    elif "custom" in call:
        fragment["type"] = "custom"
    if isinstance(body.get("name"), str) and body["name"]:
        fragment["name"] = body["name"]
    text = body.get("input") if fragment.get("type") == "custom" else body.get("arguments")
    if isinstance(text, dict):  # a few servers send the arguments as an object
        text = json.dumps(text, ensure_ascii=False, separators=(",", ":"))
    fragment["arguments"] = text if isinstance(text, str) else ""
    if len(fragment) == 2 and not fragment["arguments"]:
        return None  # neither id, type, name nor text: nothing to keep
    return fragment


def _fragment_texts(fragment: dict[str, Any]) -> list[str]:
    """What a fragment adds to the texts the completion tokens are counted from."""
    call = fragment.get("tool_call")
    if isinstance(call, dict):
        return [call.get("name", ""), call["arguments"]]
    return [v for k, v in fragment.items() if k in ("content", "reasoning", "refusal")]
