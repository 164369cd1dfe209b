"""Incremental parser for the Server-Sent Events stream of an OpenAI-compatible upstream.

The worker feeds it the raw bytes of ``response.iter_content(chunk_size=None)`` (network
reads of any size, cut anywhere) and gets each event back from the very ``feed`` call that
delivers the blank line ending it. Parsing follows the WHATWG rules ("Parsing an event
stream", html.spec.whatwg.org/multipage/server-sent-events.html) except where noted.

Deliberate choices (read before changing):

* Lines are split on BYTES, never with ``str.splitlines()``: that also splits on U+2028,
  U+0085, ``\\x0b``, ``\\x0c`` and ``\\x1c``-``\\x1e``, which JSON payloads carry unescaped.
  ``\\r\\n``, a lone ``\\r`` and a lone ``\\n`` are each one line end.
* A ``\\r`` that is the last byte of a chunk ends its line at once (so a ``\\r``-terminated
  blank line dispatches without waiting for the next read); the decoder then remembers to
  drop one ``\\n`` if it is the first byte of the next non-empty chunk, so a ``\\r\\n``
  split across reads is still ONE line end (``requests.iter_lines`` and openai-python's
  ``_iter_chunks`` get this wrong and see an extra blank line or wait for more bytes).
* Each complete line is decoded as UTF-8 only after splitting, so a multi-byte character
  cut by a read comes out whole; invalid bytes become U+FFFD (``errors="replace"``, as the
  spec's "UTF-8 decode" does). Field names are compared as bytes and only values are
  decoded: ``:`` is ASCII and never part of a multi-byte sequence, so this is the same as
  decoding the whole line, and comments are never decoded at all.
* One UTF-8 BOM at the very start of the stream is skipped, even if it arrives split over
  several reads; a BOM anywhere else is data (spec).
* Comments (lines starting with ``:``) are ignored but counted in ``comments_seen`` so the
  caller can account for keep-alives.
* Dispatch follows the spec exactly: an event is dispatched iff its block had at least one
  ``data`` field. So ``event: x`` / ``id: 1`` / ``retry: 5`` alone dispatch nothing, but a
  bare ``data:`` (or ``data``) line dispatches an event whose data is ``""`` (the spec's
  data buffer is then ``"\\n"``, which is non-empty). The type defaults to ``"message"``.
* ``id`` containing NUL is ignored; ``id:`` with an empty value resets the id to ``""``
  (spec), it does not restore ``None``. ``last_event_id`` is updated at every blank line
  (the spec's dispatch step), whether or not an event is dispatched, and persists.
* ``retry`` is honoured only if its value is one or more ASCII digits. The event carries
  the retry seen in its own block; the decoder's ``retry`` attribute keeps the last valid
  value for the whole stream (a ``retry:``-only block still updates it).
* End of stream (``close()``) is lenient where the spec is strict: the spec discards an
  unterminated pending event, we dispatch it if every one of its lines was terminated
  (some upstreams end with ``data: [DONE]\\n`` and no blank line). If the stream ends
  mid-line, that partial line AND the pending block it belongs to are dropped: the line
  may be truncated JSON and the event would be incomplete. (openai-python's SSEDecoder
  does not dispatch an unterminated event at all.)
* ``close()`` resets the per-stream state (buffer, BOM detection, pending block) but keeps
  ``last_event_id``, ``retry`` and ``comments_seen``, so one decoder can be reused for a
  reconnection, as an EventSource keeps its last event id.
* Memory is bounded per line: a line longer than ``max_line_bytes`` (terminator excluded)
  raises ``SSEProtocolError``, checked as soon as the buffered partial line exceeds it, not
  only when its line end arrives. After that error the decoder refuses further use (its
  buffer is freed) and events completed earlier in the same chunk are lost: the stream is
  broken and must be abandoned. The number of data lines in one block is not limited.
* Speed: the buffer is a ``bytearray`` holding only the current partial line, scanned with
  ``bytearray.find`` from where the previous scan stopped (never rescanned), with the next
  ``\\r`` and next ``\\n`` positions cached so a chunk of many lines costs O(len) in C;
  consumed bytes are deleted once per ``feed``, not once per line.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

__all__ = ["SSEDecoder", "SSEProtocolError", "ServerSentEvent", "iter_events"]

DEFAULT_MAX_LINE_BYTES = 16 * 1024 * 1024

_BOM = b"\xef\xbb\xbf"
_CR = 0x0D
_LF = 0x0A
_COLON = 0x3A
_SPACE = 0x20


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    event: str = "message"
    data: str = ""
    id: str | None = None  # the last_event_id in effect when dispatched (None if never set)
    retry: int | None = None  # retry value seen in this event block, if any


class SSEProtocolError(ValueError):
    """The byte stream cannot be parsed safely (for now: a line over the size limit)."""


class SSEDecoder:
    """Feed raw bytes, get complete events back as soon as they are complete."""

    comments_seen: int
    last_event_id: str | None
    retry: int | None

    def __init__(self, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> None:
        if max_line_bytes < 1:
            raise ValueError("max_line_bytes must be positive")
        self.max_line_bytes = max_line_bytes
        self.comments_seen = 0
        self.last_event_id = None
        self.retry = None
        self._broken = False
        self._reset_stream()

    def _reset_stream(self) -> None:
        self._buf = bytearray()  # the current partial line, nothing else
        self._bom_pending = True  # still at the start of the stream
        self._skip_lf = False  # the previous chunk ended with a \r line end
        self._reset_block()
        self._id_buffer = self.last_event_id

    def _reset_block(self) -> None:
        self._data: list[str] = []
        self._event = ""
        self._block_retry: int | None = None

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        """Add bytes; return the events completed by them, in order."""
        if self._broken:
            raise SSEProtocolError("decoder already failed; abandon the stream")
        if not chunk:
            return []  # keep _skip_lf: the \n may still come in the next chunk
        buf = self._buf
        pos = len(buf)  # no line end before here: buf only ever holds a partial line
        buf += chunk
        if self._skip_lf:
            self._skip_lf = False
            if buf[pos] == _LF:
                del buf[pos]  # pos == 0 here: the \r ended the buffered line
                if not buf:
                    return []
        if self._bom_pending:
            if len(buf) < 3 and _BOM.startswith(buf):
                return []  # could still be a BOM (no line end in these bytes)
            self._bom_pending = False
            if buf.startswith(_BOM):
                del buf[:3]
                pos = 0
            if not buf:
                return []

        events: list[ServerSentEvent] = []
        end_buf = len(buf)
        limit = self.max_line_bytes
        start = 0
        cr = buf.find(b"\r", pos)
        lf = buf.find(b"\n", pos)
        while cr >= 0 or lf >= 0:
            if lf < 0 or 0 <= cr < lf:
                end = cr
                nxt = cr + 1
                if nxt == end_buf:
                    self._skip_lf = True
                elif buf[nxt] == _LF:
                    nxt += 1
                    lf = buf.find(b"\n", nxt)
                cr = buf.find(b"\r", nxt)
            else:
                end = lf
                nxt = lf + 1
                lf = buf.find(b"\n", nxt)
            if end - start > limit:
                self._fail(end - start)
            self._line(buf, start, end, events)
            start = nxt
        if end_buf - start > limit:
            self._fail(end_buf - start)
        if start:
            del buf[:start]
        return events

    def close(self) -> list[ServerSentEvent]:
        """End of stream: dispatch a pending event if all its lines were terminated."""
        if self._broken:
            raise SSEProtocolError("decoder already failed; abandon the stream")
        events: list[ServerSentEvent] = []
        if not self._buf:  # else a partial line: drop it and the block it belongs to
            self._dispatch(events)
        self._reset_stream()
        return events

    def _fail(self, size: int) -> None:
        self._broken = True
        self._buf = bytearray()
        self._data = []
        raise SSEProtocolError(
            f"SSE line of at least {size} bytes exceeds the {self.max_line_bytes}-byte limit"
        )

    def _line(self, buf: bytearray, start: int, end: int, events: list[ServerSentEvent]) -> None:
        """Process the line ``buf[start:end]`` (terminator excluded)."""
        if start == end:
            self._dispatch(events)
            return
        if buf[start] == _COLON:
            self.comments_seen += 1
            return
        colon = buf.find(b":", start, end)
        if colon < 0:
            name = buf[start:end]
            value_start = end
        else:
            name = buf[start:colon]
            value_start = colon + 1
            if value_start < end and buf[value_start] == _SPACE:
                value_start += 1
        if name == b"data":
            self._data.append(buf[value_start:end].decode("utf-8", "replace"))
        elif name == b"event":
            self._event = buf[value_start:end].decode("utf-8", "replace")
        elif name == b"id":
            value = buf[value_start:end]
            if 0 not in value:
                self._id_buffer = value.decode("utf-8", "replace")
        elif name == b"retry":
            value = buf[value_start:end]
            if value.isdigit():  # bytes.isdigit: ASCII digits only, False when empty
                self._block_retry = self.retry = int(value)
        # any other field is ignored (spec)

    def _dispatch(self, events: list[ServerSentEvent]) -> None:
        """The spec's blank-line step: update the last event id, emit if there is data."""
        self.last_event_id = self._id_buffer
        if self._data:
            events.append(
                ServerSentEvent(
                    event=self._event or "message",
                    data="\n".join(self._data),
                    id=self.last_event_id,
                    retry=self._block_retry,
                )
            )
        self._reset_block()


def iter_events(
    chunks: Iterable[bytes], *, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
) -> Iterator[ServerSentEvent]:
    """Feed every chunk, yield each event as soon as it is complete, then close()."""
    decoder = SSEDecoder(max_line_bytes)
    for chunk in chunks:
        yield from decoder.feed(chunk)
    yield from decoder.close()
