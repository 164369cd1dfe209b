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


def test_fold_rebuilds_tool_calls_refusals_and_logprobs_per_choice() -> None:
    lp = [{"token": "a", "logprob": -0.5, "bytes": [97], "top_logprobs": []}]
    events = [
        Event("delta", {"index": 0, "tool_call": {"index": 1, "id": "c2", "type": "function",
                                                  "name": "b", "arguments": ""}}),
        Event("delta", {"index": 0, "tool_call": {"index": 0, "id": "c1", "type": "function",
                                                  "name": "a", "arguments": '{"x"'}}),
        Event("delta", {"index": 0, "tool_call": {"index": 0, "id": "c1", "arguments": ":1}"}}),
        Event("delta", {"index": 0, "tool_call": {"index": 1, "arguments": "{}"}}),
        Event("delta", {"index": 1, "refusal": "No", "logprobs": lp}),
        Event("delta", {"index": 1, "refusal": "."}),
        Event("delta", {"index": 2, "content": "a", "logprobs": lp}),
        Event("delta", {"index": 2, "content": "a", "logprobs": lp}),
        Event("done", {"finish_reasons": ["tool_calls", "stop", "stop"], "usage": None}),
    ]  # fmt: skip
    choices = fold((i, e.entry()) for i, e in enumerate(events, 1)).choice_list()
    assert choices[0] == {
        "index": 0, "content": "", "finish_reason": "tool_calls",
        "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "a", "arguments": '{"x":1}'}},
            {"id": "c2", "type": "function", "function": {"name": "b", "arguments": "{}"}},
        ],
    }  # fmt: skip
    assert choices[1] == {"index": 1, "content": "", "finish_reason": "stop", "refusal": "No.",
                          "logprobs": {"content": None, "refusal": lp}}  # fmt: skip
    assert choices[2]["logprobs"] == {"content": lp + lp, "refusal": None}


def test_a_reset_discards_tool_calls_too() -> None:
    events = [
        Event("delta", {"index": 0, "tool_call": {"index": 0, "id": "c", "name": "a",
                                                  "arguments": '{"x"'}}),
        Event("reset", {"reason": "worker_lost", "attempt": 2}),
        Event("delta", {"index": 0, "tool_call": {"index": 0, "id": "d", "name": "a",
                                                  "arguments": "{}"}}),
    ]  # fmt: skip
    choice = fold((i, e.entry()) for i, e in enumerate(events, 1)).choice_list()[0]
    assert choice["tool_calls"] == [
        {"id": "d", "type": "function", "function": {"name": "a", "arguments": "{}"}}
    ]
