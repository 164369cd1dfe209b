"""The Responses projection of a job's log (gateway/wire/responses_events.py): log entries
in, OpenAI's events out. Every event is checked against the openai SDK's own types and
fed through the SDK's stream state machine (what ``client.responses.stream`` runs), so a
shape or an order the SDK refuses fails here; sequence numbers are contiguous from 0 and
a replay with ``starting_after`` gives exactly the rest."""

from __future__ import annotations

import json
from typing import Any

import pytest
from openai import omit
from openai.lib.streaming.responses._responses import ResponseStreamState
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from gateway.feed import HEARTBEAT
from gateway.wire.responses_events import ResponsesEvents, job_id_of, response_id
from sluice.events import Event
from sluice.store import Job

ECHO = {"background": True, "tools": [], "tool_choice": "auto", "parallel_tool_calls": True,
        "metadata": {}, "store": True, "temperature": 1.0, "top_p": 1.0}  # fmt: skip
JOB = Job(id="job_AbC-1_", status="running", model="gpt-4o", created_at=1.5, started_at=None,
          finished_at=None, attempt=1, last_event_id=0, prompt_tokens=1, truncated_messages=0,
          request={}, owner="", meta={"responses": {"echo": ECHO}})  # fmt: skip
EVENTS: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)
LP = [{"token": "Hi", "logprob": -0.1, "bytes": [72, 105], "top_logprobs": []}]
USAGE = {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12}


def started() -> Event:
    return Event("started", {"model": "gpt-4o", "attempt": 1})


def text(piece: str, **extra: Any) -> Event:
    return Event("delta", {"index": 0, "content": piece, **extra})


def call(index: int, arguments: str, **first: Any) -> Event:
    return Event("delta", {"index": 0, "tool_call": {"index": index, "arguments": arguments,
                                                     **first}})  # fmt: skip


def done(reason: str = "stop") -> Event:
    return Event("done", {"finish_reasons": [reason], "usage": USAGE, "usage_estimated": False})


def project(log: list[Event], after: int = -1) -> tuple[list[dict[str, Any]], ResponsesEvents]:
    """The events the stream sends for ``log`` (parsed back from its bytes)."""
    projection = ResponsesEvents(JOB, starting_after=after)
    items = [(i, e.entry()) for i, e in enumerate(log, 1)]
    raw = b"".join(projection.frames([items[0], HEARTBEAT, *items[1:]])).decode()
    events = []
    for block in raw.split("\n\n"):
        lines = [line for line in block.split("\n") if line and not line.startswith(":")]
        if lines:
            assert lines[0].startswith("event: ") and lines[1].startswith("data: ")
            event = json.loads(lines[1].removeprefix("data: "))
            assert lines[0] == f"event: {event['type']}"
            events.append(event)
    return events, projection


def sdk_final(events: list[dict[str, Any]]) -> Any:
    """What the openai SDK's stream helper makes of the events (validating each)."""
    state: ResponseStreamState[Any] = ResponseStreamState(input_tools=omit, text_format=omit)
    for event in events:
        state.handle_event(EVENTS.validate_python(event))
    return state._completed_response


def types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


def test_text_streams_as_a_message_item_and_completes() -> None:
    events, projection = project([started(), text("Hel", logprobs=LP), text("lo"), done()])
    assert types(events) == [
        "response.created", "response.in_progress", "response.output_item.added",
        "response.content_part.added", "response.output_text.delta",
        "response.output_text.delta", "response.output_text.done",
        "response.content_part.done", "response.output_item.done", "response.completed",
    ]  # fmt: skip
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert events[0]["response"]["status"] == "queued"  # a background response
    assert events[1]["response"]["status"] == "in_progress"
    delta = events[4]
    assert delta["item_id"] == "msg_AbC-1__0" and delta["output_index"] == 0
    assert delta["content_index"] == 0 and delta["logprobs"] == LP
    final = sdk_final(events)
    assert final.output_text == "Hello" and final.status == "completed"
    assert final.usage.input_tokens == 7 and final.usage.output_tokens == 5
    assert final.output[0].content[0].annotations == []
    Response.model_validate(projection.snapshot())
    assert projection.snapshot()["output"] == events[-1]["response"]["output"]


def test_parallel_tool_calls_are_function_call_items_closed_together() -> None:
    log = [started(), call(0, "", id="call_a", name="get_weather"), call(0, '{"city":'),
           call(1, "{}", id="call_b", name="get_time"), call(0, '"Paris"}'),
           done("tool_calls")]  # fmt: skip
    events, _ = project(log)
    assert types(events)[2:] == [
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done", "response.output_item.done",
        "response.function_call_arguments.done", "response.output_item.done",
        "response.completed",
    ]  # fmt: skip
    final = sdk_final(events)
    calls = [(c.call_id, c.name, c.arguments, c.id, c.status) for c in final.output]
    assert calls == [
        ("call_a", "get_weather", '{"city":"Paris"}', "fc_AbC-1__0", "completed"),
        ("call_b", "get_time", "{}", "fc_AbC-1__1", "completed"),
    ]


def test_reasoning_then_text_then_a_call_are_three_items_in_order() -> None:
    log = [started(), Event("delta", {"index": 0, "reasoning": "Think"}),
           Event("delta", {"index": 0, "reasoning": "ing."}), text("Let me check."),
           call(0, "{}", id="call_z", name="lookup"), done("tool_calls")]  # fmt: skip
    events, projection = project(log)
    assert "response.reasoning_text.delta" in types(events)
    done_text = next(e for e in events if e["type"] == "response.reasoning_text.done")
    assert done_text["text"] == "Thinking." and done_text["item_id"] == "rs_AbC-1__0"
    final = sdk_final(events)
    assert [o.type for o in final.output] == ["reasoning", "message", "function_call"]
    assert final.output[0].content[0].text == "Thinking."
    assert final.output_text == "Let me check."
    # the message closed before the call opened, as OpenAI orders them
    closed = types(events).index("response.output_item.done", types(events).index(
        "response.output_text.done"))  # fmt: skip
    assert closed < types(events).index("response.function_call_arguments.delta")
    assert projection.snapshot()["status"] == "completed"


def test_a_refusal_is_a_refusal_part() -> None:
    events, _ = project([started(), Event("delta", {"index": 0, "refusal": "I can't"}),
                         Event("delta", {"index": 0, "refusal": " help."}), done()])  # fmt: skip
    assert "response.refusal.delta" in types(events)
    final = sdk_final(events)
    assert final.output[0].content[0].refusal == "I can't help."


@pytest.mark.parametrize(("reason", "why"), [("length", "max_output_tokens"),
                                             ("content_filter", "content_filter")])  # fmt: skip
def test_a_cut_answer_is_incomplete(reason: str, why: str) -> None:
    events, projection = project([started(), text("Hel"), done(reason)])
    assert events[-1]["type"] == "response.incomplete"
    assert events[-1]["response"]["incomplete_details"] == {"reason": why}
    assert events[-1]["response"]["output"][0]["status"] == "incomplete"
    for event in events:
        EVENTS.validate_python(event)
    assert projection.snapshot()["status"] == "incomplete"


def test_an_error_fails_the_response_with_openai_s_codes() -> None:
    error = {"type": "upstream_rate_limited", "message": "slow down", "status": 429}
    events, projection = project([started(), text("Hel"), Event("error", {"error": error})])
    assert types(events)[-1] == "response.failed"
    failed = events[-1]["response"]
    assert failed["status"] == "failed"
    assert failed["error"] == {"code": "rate_limit_exceeded", "message": "slow down"}
    assert failed["output"][0]["status"] == "incomplete"
    EVENTS.validate_python(events[-1])
    assert projection.failure == error


def test_a_cancel_ends_with_response_failed_whose_status_is_cancelled() -> None:
    log = [started(), text("Hel"), Event("cancelled", {"usage": USAGE, "usage_estimated": True})]
    events, projection = project(log)
    assert events[-1]["type"] == "response.failed"
    assert events[-1]["response"]["status"] == "cancelled"
    assert events[-1]["response"]["error"] is None
    assert projection.snapshot()["usage"]["total_tokens"] == 12
    sdk_final(events)  # the SDK's state machine takes it


def test_a_reset_before_output_is_silent_and_after_output_fails() -> None:
    reset = Event("reset", {"reason": "worker_lost", "attempt": 2})
    quiet, _ = project([started(), reset, started(), text("Hi"), done()])
    assert "error" not in types(quiet) and sdk_final(quiet).output_text == "Hi"
    assert types(quiet).count("response.in_progress") == 1

    events, projection = project([started(), text("Hel"), reset, started(), text("Hi"), done()])
    assert types(events)[-2:] == ["error", "response.failed"]
    assert events[-2]["code"] == "stream_reset"
    EVENTS.validate_python(events[-2])
    assert projection.snapshot()["status"] == "failed"  # whatever the job then did


def test_a_replay_after_n_is_exactly_the_rest_with_the_same_numbers() -> None:
    log = [started(), Event("delta", {"index": 0, "reasoning": "Hm"}), text("Hel"), text("lo"),
           call(0, "{}", id="call_a", name="f"), done("tool_calls")]  # fmt: skip
    whole, _ = project(log)
    assert [e["sequence_number"] for e in whole] == list(range(len(whole)))
    for n in range(len(whole)):
        rest, _ = project(log, after=n)
        assert rest == whole[n + 1 :]


def test_the_snapshot_before_the_log_and_the_ids() -> None:
    projection = ResponsesEvents(JOB)
    snapshot = projection.snapshot()
    assert snapshot["id"] == "resp_AbC-1_" and snapshot["status"] == "queued"
    assert snapshot["created_at"] == 1 and snapshot["output"] == []
    Response.model_validate(snapshot)
    assert job_id_of(response_id(JOB.id)) == JOB.id
    assert job_id_of("job_AbC") is None and job_id_of("resp_") is None
