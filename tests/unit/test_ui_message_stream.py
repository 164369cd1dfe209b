"""The AI SDK UI message stream projection of a job's log (gateway/wire/ui_message_stream.py):
the parts ai 7's useChat reads, in order, and the message a reloaded page is given."""

from __future__ import annotations

import json
from typing import Any

from gateway.feed import HEARTBEAT
from gateway.wire.ui_message_stream import UIMessageStream, message_id, message_parts
from sluice.events import Event

MID = message_id("job_abc")
STARTED = Event("started", {"model": "m", "attempt": 1})
DONE = Event("done", {"finish_reasons": ["stop"], "usage": None})


def text(*pieces: str) -> list[Event]:
    return [Event("delta", {"index": 0, "content": p}) for p in pieces]


def call(index: int, arguments: str, **head: str) -> Event:
    return Event(
        "delta", {"index": 0, "tool_call": {"index": index, **head, "arguments": arguments}}
    )


def log(*events: Event) -> list[tuple[int, str]]:
    return [(i, e.entry()) for i, e in enumerate(events, 1)]


def parts(*events: Event, items: list[Any] | None = None) -> list[dict[str, Any]]:
    """The stream's parts; asserts the SSE framing and the [DONE] at the end."""
    raw = b"".join(UIMessageStream(MID).frames(items if items is not None else log(*events)))
    frames = [f for f in raw.decode().split("\n\n") if f]
    assert frames[-1] == "data: [DONE]"
    return [json.loads(f.removeprefix("data: ")) for f in frames[:-1] if f.startswith("data: ")]


def test_text_streams_as_one_text_part_between_start_and_finish() -> None:
    assert parts(STARTED, *text("Hel", "lo"), DONE) == [
        {"type": "start", "messageId": "msg_abc"},
        {"type": "start-step"},
        {"type": "text-start", "id": "text-1"},
        {"type": "text-delta", "id": "text-1", "delta": "Hel"},
        {"type": "text-delta", "id": "text-1", "delta": "lo"},
        {"type": "text-end", "id": "text-1"},
        {"type": "finish-step"},
        {"type": "finish", "finishReason": "stop"},
    ]


def test_the_first_frame_goes_out_before_any_event() -> None:
    first = next(iter(UIMessageStream(MID).frames(iter(()))))
    assert first.startswith(b'data: {"type":"start","messageId":"msg_abc"}\n\n')


def test_reasoning_then_text_are_two_parts() -> None:
    reasoning = Event("delta", {"index": 0, "reasoning": "Hmm"})
    got = parts(STARTED, reasoning, *text("Yes"), DONE)
    assert [p["type"] for p in got[2:-2]] == [
        "reasoning-start", "reasoning-delta", "reasoning-end",
        "text-start", "text-delta", "text-end",
    ]  # fmt: skip
    assert got[3] == {"type": "reasoning-delta", "id": "reasoning-1", "delta": "Hmm"}
    assert got[5]["id"] == "text-2"


def test_tool_calls_stream_their_input_and_end_parsed_even_interleaved() -> None:
    got = parts(
        STARTED,
        call(0, "", id="call_a", type="function", name="get_weather"),
        call(0, '{"city":'),
        call(1, "{}", id="call_b", name="get_time"),
        call(0, '"Paris"}'),
        Event("done", {"finish_reasons": ["tool_calls"], "usage": None}),
    )
    assert got[2:] == [
        {"type": "tool-input-start", "toolCallId": "call_a", "toolName": "get_weather"},
        {"type": "tool-input-delta", "toolCallId": "call_a", "inputTextDelta": '{"city":'},
        {"type": "tool-input-start", "toolCallId": "call_b", "toolName": "get_time"},
        {"type": "tool-input-delta", "toolCallId": "call_b", "inputTextDelta": "{}"},
        {"type": "tool-input-delta", "toolCallId": "call_a", "inputTextDelta": '"Paris"}'},
        {"type": "tool-input-available", "toolCallId": "call_a", "toolName": "get_weather",
         "input": {"city": "Paris"}},
        {"type": "tool-input-available", "toolCallId": "call_b", "toolName": "get_time",
         "input": {}},
        {"type": "finish-step"},
        {"type": "finish", "finishReason": "tool-calls"},
    ]  # fmt: skip


def test_arguments_cut_short_are_a_tool_input_error_and_custom_input_is_text() -> None:
    got = parts(
        STARTED,
        call(0, '{"ci', id="call_a", name="f"),
        call(1, "free text", id="call_b", type="custom", name="g"),
        Event("done", {"finish_reasons": ["length"], "usage": None}),
    )
    assert got[4]["type"] == "tool-input-start" and got[4]["inputEncoding"] == "text"
    error, custom = got[-4], got[-3]
    assert error["type"] == "tool-input-error" and error["input"] == '{"ci'
    assert custom == {"type": "tool-input-available", "toolCallId": "call_b", "toolName": "g",
                      "input": "free text"}  # fmt: skip
    assert got[-1] == {"type": "finish", "finishReason": "length"}


def test_a_reset_after_output_takes_the_step_back_and_before_output_is_nothing() -> None:
    reset = Event("reset", {"reason": "worker_lost", "attempt": 2})
    got = parts(STARTED, reset, STARTED, *text("Hel"), reset, STARTED, *text("Hello"), DONE)
    types = [p["type"] for p in got]
    assert types.count("reset-step") == 1
    after = got[types.index("reset-step") + 1 :]
    assert after[0] == {"type": "text-start", "id": "text-2"}  # a new part, a new id
    assert "".join(p["delta"] for p in after if p["type"] == "text-delta") == "Hello"
    # what useChat's message holds: the log's text, once
    assert message_parts(MID, log(STARTED, *text("Hel"), reset, *text("Hello"), DONE)) == [
        {"type": "step-start"},
        {"type": "text", "text": "Hello", "state": "done"},
    ]


def test_errors_cancels_and_interruptions_end_the_stream() -> None:
    failed = Event("error", {"error": {"type": "upstream_error", "message": "boom"}})
    assert parts(STARTED, *text("a"), failed)[-2:] == [
        {"type": "text-end", "id": "text-1"},
        {"type": "error", "errorText": "boom"},
    ]
    cancelled = Event("cancelled", {"usage": None, "usage_estimated": True})
    assert parts(STARTED, cancelled)[-1] == {"type": "abort", "reason": "cancelled"}
    mid_call = parts(STARTED, call(0, '{"ci', id="c", name="f"), cancelled)
    assert mid_call[-2] == {"type": "tool-input-error", "toolCallId": "c", "toolName": "f",
                            "input": '{"ci', "errorText": "the job was cancelled before the "
                            "call was complete"}  # fmt: skip
    cut = parts(items=[*log(STARTED, *text("a")), HEARTBEAT])  # the feed ended early
    assert cut[-1]["type"] == "error" and "reload" in cut[-1]["errorText"]


def test_heartbeats_are_comments_and_other_choices_are_not_shown() -> None:
    other = Event("delta", {"index": 1, "content": "second choice"})
    items = [*log(STARTED, other), HEARTBEAT, *log(DONE)]
    raw = b"".join(UIMessageStream(MID).frames(items))
    assert b": keep-alive\n" in raw and b"second choice" not in raw


def test_message_parts_are_what_the_stream_builds_with_tools() -> None:
    events = (
        STARTED,
        Event("delta", {"index": 0, "reasoning": "think"}),
        *text("Let me check."),
        call(0, '{"city":"Paris"}', id="call_a", name="get_weather"),
        Event("done", {"finish_reasons": ["tool_calls"], "usage": None}),
    )
    assert message_parts(MID, log(*events)) == [
        {"type": "step-start"},
        {"type": "reasoning", "id": "reasoning-1", "text": "think", "state": "done"},
        {"type": "text", "text": "Let me check.", "state": "done"},
        {"type": "tool-get_weather", "toolCallId": "call_a", "state": "input-available",
         "input": {"city": "Paris"}},
    ]  # fmt: skip


def test_a_replay_gives_the_same_parts_and_ids() -> None:
    events = log(STARTED, *text("a", "b"), call(0, "{}", id="c", name="f"), DONE)
    assert parts(items=events) == parts(items=list(events))
    assert UIMessageStream.event_id("") == 0 and UIMessageStream.event_id("5") is None
