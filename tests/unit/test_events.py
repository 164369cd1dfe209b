"""Event encoding: log entries, pub/sub messages, SSE frames and folding."""

from __future__ import annotations

import json

from httpx_sse._decoders import SSEDecoder as ReferenceDecoder

from gateway.wire.sluice_sse import sse_frame
from sluice.events import DELTA, DONE, RESET, Event, fold, parse_message


def test_frame_is_one_json_data_line_even_for_text_with_line_breaks() -> None:
    text = "line one\nline two\r\n\u2028\u0085 end"
    frame = sse_frame(7, Event(DELTA, {"index": 0, "content": text}).entry())
    assert frame.endswith("\n\n") and frame.count("\n") == 4
    decoder = ReferenceDecoder()
    events = [decoder.decode(line) for line in frame.split("\n")]
    sse = next(e for e in events if e is not None)
    assert (sse.id, sse.event) == ("7", "delta")
    assert json.loads(sse.data)["content"] == text


def test_pubsub_message_carries_several_events_in_order() -> None:
    entries = [Event(DELTA, {"index": 0, "content": f"x\n{i}"}).entry() for i in range(3)]
    message = "\n".join(f"{5 + i} {e}" for i, e in enumerate(entries))
    assert list(parse_message(message)) == [(5, entries[0]), (6, entries[1]), (7, entries[2])]


def test_fold_discards_text_before_a_reset_and_records_usage() -> None:
    entries = [
        Event(DELTA, {"index": 0, "content": "old"}),
        Event(RESET, {"reason": "worker_lost", "attempt": 2}),
        Event(DELTA, {"index": 0, "content": "new"}),
        Event(DELTA, {"index": 1, "content": "two"}),
        Event(DONE, {"finish_reasons": ["stop", "length"], "usage": {"total_tokens": 3}}),
    ]
    transcript = fold((i + 1, e.entry()) for i, e in enumerate(entries))
    assert transcript.texts() == ["new", "two"]
    assert [c["finish_reason"] for c in transcript.choice_list()] == ["stop", "length"]
    assert transcript.usage == {"total_tokens": 3}
    assert transcript.last_event_id == 5
