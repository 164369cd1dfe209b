"""Specification tests for sluice.sse_decoder (WHATWG event-stream parsing, incremental)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.sse_decoder import (
    ServerSentEvent,
    SSEDecoder,
    SSEProtocolError,
    iter_events,
)

E = ServerSentEvent


def decode_chunks(chunks: Sequence[bytes], **kwargs: int) -> list[ServerSentEvent]:
    decoder = SSEDecoder(**kwargs)
    events: list[ServerSentEvent] = []
    for chunk in chunks:
        events.extend(decoder.feed(chunk))
    events.extend(decoder.close())
    return events


def decode(stream: bytes) -> list[ServerSentEvent]:
    return decode_chunks([stream])


def _chunk(payload: dict[str, object]) -> bytes:
    return b"data: " + json.dumps(payload, ensure_ascii=False).encode() + b"\n\n"


def _delta(content: str) -> dict[str, object]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}],
    }


OPENAI_STREAM = b"".join(
    [
        b": keep-alive\n\n",
        _chunk(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion.chunk",
                "model": "m",
                "choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}],
            }
        ),
        _chunk(_delta("Héllo")),
        _chunk(_delta(" 世界 🙂")),
        _chunk(_delta("line\u2028sep\u0085x\x0by")),
        _chunk(_delta("\n")),
        _chunk(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion.chunk",
                "model": "m",
                "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            }
        ),
        _chunk(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion.chunk",
                "model": "m",
                "choices": [],
                "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12},
            }
        ),
        b"data: [DONE]\n\n",
    ]
)


# --- a typical OpenAI stream -------------------------------------------------------------


def test_openai_stream_fed_whole_yields_every_chunk_then_done() -> None:
    events = decode(OPENAI_STREAM)

    assert [e.event for e in events] == ["message"] * 8
    assert events[-1].data == "[DONE]"
    payloads = [json.loads(e.data) for e in events[:-1]]
    assert payloads[0]["choices"][0]["delta"] == {"role": "assistant"}
    content = "".join(p["choices"][0]["delta"].get("content", "") for p in payloads[1:5])
    assert content == "Héllo 世界 🙂line\u2028sep\u0085x\x0by\n"
    assert payloads[5]["choices"][0]["finish_reason"] == "stop"
    assert payloads[6]["choices"] == []
    assert payloads[6]["usage"]["total_tokens"] == 12
    assert all(e.id is None and e.retry is None for e in events)


def test_openai_stream_split_at_every_byte_offset_gives_identical_events() -> None:
    expected = decode(OPENAI_STREAM)
    for cut in range(len(OPENAI_STREAM) + 1):
        got = decode_chunks([OPENAI_STREAM[:cut], OPENAI_STREAM[cut:]])
        assert got == expected, f"split at {cut}"


def test_openai_stream_fed_one_byte_at_a_time_gives_identical_events() -> None:
    one_byte_chunks = [OPENAI_STREAM[i : i + 1] for i in range(len(OPENAI_STREAM))]
    assert decode_chunks(one_byte_chunks) == decode(OPENAI_STREAM)


def test_iter_events_yields_each_event_before_reading_the_next_chunk() -> None:
    consumed: list[int] = []

    def source() -> Iterator[bytes]:
        for i, chunk in enumerate([b"data: a\n\n", b"data: b\n", b"\n"]):
            consumed.append(i)
            yield chunk

    it = iter_events(source())
    assert next(it) == E(data="a")
    assert consumed == [0]
    assert next(it) == E(data="b")
    assert consumed == [0, 1, 2]
    assert list(it) == []


# --- line endings --------------------------------------------------------------------------


@pytest.mark.parametrize("eol", [b"\r\n", b"\r", b"\n"], ids=["crlf", "cr", "lf"])
def test_each_line_ending_style_is_one_line_end(eol: bytes) -> None:
    stream = eol.join([b"event: e", b"data: a", b"data: b", b"", b"data: c", b"", b""])
    assert decode(stream) == [E(event="e", data="a\nb"), E(data="c")]


def test_mixed_line_endings_in_one_stream() -> None:
    stream = b"data: a\rdata: b\r\ndata: c\n\r\ndata: d\r\rdata: e\n\n"
    assert decode(stream) == [E(data="a\nb\nc"), E(data="d"), E(data="e")]


def test_cr_at_end_of_chunk_then_lf_at_start_of_next_is_one_line_end() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"\n") == []  # the \n completes \r\n: no blank line, no dispatch
    assert decoder.feed(b"data: b\r") == []
    assert decoder.feed(b"\ndata: c\r\n\r") == [E(data="a\nb\nc")]
    assert decoder.feed(b"\n") == []  # second half of the blank line's \r\n
    assert decoder.feed(b"\n") == []  # a real blank line, but nothing pending
    assert decoder.close() == []


def test_cr_at_end_of_chunk_survives_empty_chunks_before_the_lf() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"") == []
    assert decoder.feed(b"\n") == []
    assert decoder.feed(b"\n") == [E(data="a")]


def test_cr_at_end_of_chunk_followed_by_other_byte_is_a_line_end() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"data: b\r") == []
    assert decoder.feed(b"\r") == [E(data="a\nb")]  # lone \r blank line: dispatch now


def test_blank_line_ending_in_cr_dispatches_without_waiting_for_a_possible_lf() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r\n\r") == [E(data="a")]


# --- UTF-8 and line-splitting characters ----------------------------------------------------


@pytest.mark.parametrize("char", ["é", "中", "🙂"])
def test_multibyte_character_split_at_each_inner_byte_comes_out_whole(char: str) -> None:
    stream = f"data: x{char}y\n\n".encode()
    start = stream.index(char.encode())
    assert len(char.encode()) > 1
    for cut in range(start + 1, start + len(char.encode())):
        assert decode_chunks([stream[:cut], stream[cut:]]) == [E(data=f"x{char}y")], cut
    one_byte_chunks = [stream[i : i + 1] for i in range(len(stream))]
    assert decode_chunks(one_byte_chunks) == [E(data=f"x{char}y")]


@pytest.mark.parametrize(
    "char", ["\u2028", "\u2029", "\u0085", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e"]
)
def test_unicode_line_separators_inside_data_are_preserved(char: str) -> None:
    stream = f"event: t{char}t\ndata: a{char}b\n\n".encode()
    assert decode(stream) == [E(event=f"t{char}t", data=f"a{char}b")]


def test_invalid_utf8_is_replaced_not_fatal() -> None:
    stream = b"data: a\xffb\ndata: \xe4\xb8\n\n"
    assert decode(stream) == [E(data="a\ufffdb\n\ufffd")]


# --- fields -----------------------------------------------------------------------------


def test_comments_are_ignored_and_counted() -> None:
    decoder = SSEDecoder()
    events = decoder.feed(b": ping\n:\n\n:data: no\ndata: yes\n: between\n\n")
    assert events == [E(data="yes")]
    assert decoder.comments_seen == 4


def test_multiple_data_lines_are_joined_with_newline() -> None:
    assert decode(b"data: a\ndata:\ndata: c\n\n") == [E(data="a\n\nc")]


def test_event_field_sets_the_type_for_one_event_only() -> None:
    stream = b"event: delta\ndata: 1\n\ndata: 2\n\nevent:\ndata: 3\n\n"
    assert decode(stream) == [E(event="delta", data="1"), E(data="2"), E(data="3")]


def test_last_event_id_persists_across_events() -> None:
    decoder = SSEDecoder()
    assert decoder.last_event_id is None
    events = decoder.feed(b"id: 7\ndata: a\n\ndata: b\n\nid: 8\ndata: c\n\n")
    assert [e.id for e in events] == ["7", "7", "8"]
    assert decoder.last_event_id == "8"


def test_id_is_set_by_the_blank_line_even_without_data() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"id: 3\n") == []
    assert decoder.last_event_id is None  # the spec copies the buffer at the blank line
    assert decoder.feed(b"\n") == []
    assert decoder.last_event_id == "3"
    assert decoder.feed(b"data: x\n\n") == [E(data="x", id="3")]


def test_id_containing_nul_is_ignored() -> None:
    stream = b"id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n"
    assert [e.id for e in decode(stream)] == ["1", "1"]


def test_empty_id_resets_to_empty_string() -> None:
    stream = b"id: 1\ndata: a\n\nid\ndata: b\n\n"
    assert [e.id for e in decode(stream)] == ["1", ""]


def test_retry_accepts_ascii_digits_only() -> None:
    decoder = SSEDecoder()
    stream = (
        b"retry: 3000\ndata: a\n\n"
        b"data: no retry here\n\n"
        b"retry: 3s\ndata: b\n\n"
        b"retry: -1\ndata: c\n\n"
        b"retry:\ndata: d\n\n"
        b"retry: 1.5\ndata: e\n\n"
        + "retry: ３\ndata: f\n\n".encode()  # fullwidth digit
        + b"retry:250\ndata: g\n\n"
    )
    events = decoder.feed(stream)
    assert [e.retry for e in events] == [3000, None, None, None, None, None, None, 250]
    assert decoder.retry == 250


def test_retry_only_block_dispatches_nothing_but_updates_decoder_retry() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"retry: 5000\n\n") == []
    assert decoder.retry == 5000


def test_field_without_colon_has_empty_value() -> None:
    assert decode(b"data\ndata\n\n") == [E(data="\n")]
    assert decode(b"event\ndata: x\n\n") == [E(data="x")]


def test_only_one_leading_space_is_stripped_from_the_value() -> None:
    stream = b"data:  two\n\ndata:none\n\ndata: one \n\ndata:\tx\n\n"
    assert [e.data for e in decode(stream)] == [" two", "none", "one ", "\tx"]


def test_unknown_fields_are_ignored() -> None:
    assert decode(b"foo: bar\nData: no\ndata : no\ndata: yes\n\n") == [E(data="yes")]


def test_block_without_data_field_is_not_dispatched() -> None:
    stream = b"event: ping\n\nid: 4\n\n: c\n\ndata: x\n\n"
    assert decode(stream) == [E(data="x", id="4")]  # the type "ping" does not leak


def test_empty_data_field_dispatches_an_event_with_empty_data() -> None:
    # spec: the data buffer is then "\n", which is not empty
    assert decode(b"data:\n\n") == [E(data="")]


# --- BOM -------------------------------------------------------------------------------


def test_bom_at_start_of_stream_is_skipped_even_when_split() -> None:
    stream = b"\xef\xbb\xbfdata: a\n\n"
    for cut in range(len(stream) + 1):
        assert decode_chunks([stream[:cut], stream[cut:]]) == [E(data="a")], cut
    assert decode_chunks([b"\xef", b"\xbb", b"\xbf", b"data: a\n\n"]) == [E(data="a")]


def test_only_one_bom_at_the_very_start_is_skipped() -> None:
    assert decode(b"\xef\xbb\xbf\xef\xbb\xbfdata: a\n\n") == []  # field "\ufeffdata"
    assert decode(b"data: a\n\n\xef\xbb\xbfdata: b\n\n") == [E(data="a")]


def test_bytes_that_only_start_like_a_bom_are_kept() -> None:
    assert decode_chunks([b"\xef", b"\ndata: a\n\n"]) == [E(data="a")]  # "\ufffd" field


# --- timing and end of stream -------------------------------------------------------------


def test_event_is_returned_by_the_feed_that_completes_its_blank_line() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\n") == []
    assert decoder.feed(b"\n") == [E(data="a")]
    assert decoder.feed(b"data: b\n\ndata: c") == [E(data="b")]
    assert decoder.feed(b"\n\n") == [E(data="c")]


def test_close_dispatches_a_complete_pending_event_without_final_blank_line() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\n\ndata: [DONE]\n") == [E(data="a")]
    assert decoder.close() == [E(data="[DONE]")]
    assert decode(b"data: [DONE]\r") == [E(data="[DONE]")]


def test_close_drops_a_truncated_last_line_and_its_block() -> None:
    assert decode(b'data: a\n\ndata: {"choices": [{"del') == [E(data="a")]
    assert decode(b"data: [DONE]") == []
    assert decode(b'data: {"a":\ndata: 1}') == []  # never a half event


def test_close_resets_the_stream_but_keeps_last_event_id() -> None:
    decoder = SSEDecoder()
    decoder.feed(b"id: 9\ndata: a\n\ndata: partial")
    assert decoder.close() == []
    assert decoder.close() == []
    assert decoder.feed(b"\xef\xbb\xbfdata: b\n\n") == [E(data="b", id="9")]


# --- limits -------------------------------------------------------------------------------


def test_line_at_the_limit_is_accepted() -> None:
    assert decode_chunks([b"data: 1234\n\n"], max_line_bytes=10) == [E(data="1234")]


def test_over_long_line_raises_protocol_error() -> None:
    decoder = SSEDecoder(max_line_bytes=10)
    with pytest.raises(SSEProtocolError):
        decoder.feed(b"data: 12345\n\n")
    with pytest.raises(SSEProtocolError):  # the decoder stays failed
        decoder.feed(b"data: 1\n\n")
    assert issubclass(SSEProtocolError, ValueError)


def test_over_long_partial_line_raises_before_its_line_end_arrives() -> None:
    decoder = SSEDecoder(max_line_bytes=10)
    assert decoder.feed(b"data: ") == []
    assert decoder.feed(b"1234") == []
    with pytest.raises(SSEProtocolError):
        decoder.feed(b"5")


# --- property ---------------------------------------------------------------------------

_SPECIAL = ["\u2028", "\u2029", "\u0085", "\x0b", "\x0c", "\x1c", "\x00", "é", "中", "🙂", ":", " "]
_TEXT = st.text(
    alphabet=st.one_of(
        st.characters(codec="utf-8", exclude_characters="\r\n"), st.sampled_from(_SPECIAL)
    ),
    max_size=12,
)

_BLOCKS = st.lists(
    st.fixed_dictionaries(
        {
            "event": st.one_of(st.none(), _TEXT),
            "data": st.lists(_TEXT, max_size=3),
            "id": st.one_of(st.none(), _TEXT),
            "retry": st.one_of(st.none(), st.integers(0, 10**6)),
            "comment": st.one_of(st.none(), _TEXT),
        }
    ),
    max_size=6,
)


def _field(data: st.DataObject, name: str, value: str) -> str:
    if value == "" and data.draw(st.booleans()):
        return name  # no colon at all
    if value.startswith(" ") or data.draw(st.booleans()):
        return f"{name}: {value}"
    return f"{name}:{value}"


@settings(max_examples=300, deadline=None)
@given(blocks=_BLOCKS, bom=st.booleans(), final_blank=st.booleans(), data=st.data())
def test_random_events_with_random_line_endings_and_chunking_round_trip(
    blocks: list[dict[str, object]], bom: bool, final_blank: bool, data: st.DataObject
) -> None:
    lines: list[str] = []
    expected: list[ServerSentEvent] = []
    last_id: str | None = None
    for block in blocks:
        event, values, id_, retry = block["event"], block["data"], block["id"], block["retry"]
        assert isinstance(values, list)
        if block["comment"] is not None:
            lines.append(f":{block['comment']}")
        if event is not None:
            lines.append(_field(data, "event", str(event)))
        if retry is not None:
            lines.append(_field(data, "retry", str(retry)))
        for value in values:
            lines.append(_field(data, "data", value))
        if id_ is not None:
            lines.append(_field(data, "id", str(id_)))
            if "\x00" not in str(id_):
                last_id = str(id_)
        lines.append("")
        if values:
            expected.append(
                E(
                    event=str(event) if event else "message",
                    data="\n".join(values),
                    id=last_id,
                    retry=retry if isinstance(retry, int) else None,
                )
            )
    if lines and not final_blank:
        lines.pop()  # close() must still dispatch the last, fully terminated, event

    stream = bytearray(b"\xef\xbb\xbf" if bom else b"")
    previous_eol = ""
    for line in lines:
        eol = data.draw(st.sampled_from(["\n", "\r", "\r\n"]))
        if previous_eol == "\r" and line == "" and eol == "\n":
            eol = "\r\n"  # "\r" + "\n" would be a single line end, not a blank line
        stream += (line + eol).encode()
        previous_eol = eol

    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    bounds = [0, *cuts, len(stream)]
    chunks = [bytes(stream[a:b]) for a, b in pairwise(bounds)]

    assert list(iter_events(chunks)) == expected
