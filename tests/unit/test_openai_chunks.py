"""The OpenAI projection of a job's log: tool calls, refusals and logprobs go back out in
OpenAI's exact chunk and message shapes (docs/events.md)."""

from __future__ import annotations

import json
from typing import Any

from gateway.wire.openai_chunks import OpenAIChunks, completion
from sluice.events import Event, fold
from sluice.store import Job

JOB = Job(id="job_x", status="succeeded", model="gpt-4o", created_at=1.0, started_at=None,
          finished_at=None, attempt=1, last_event_id=0, prompt_tokens=1,
          truncated_messages=0, request={}, owner="")  # fmt: skip
LP = [{"token": "No", "logprob": -0.2, "bytes": [78, 111], "top_logprobs": []}]
LOG = [
    Event("started", {"model": "gpt-4o", "attempt": 1}),
    Event("delta", {"index": 0, "tool_call": {"index": 0, "id": "call_a", "type": "function",
                                              "name": "get_weather", "arguments": ""}}),
    Event("delta", {"index": 0, "tool_call": {"index": 0, "arguments": '{"city":'}}),
    Event("delta", {"index": 0, "tool_call": {"index": 1, "id": "call_b",
                                              "name": "get_time", "arguments": "{}"}}),
    Event("delta", {"index": 0, "tool_call": {"index": 0, "arguments": '"Paris"}'}}),
    Event("done", {"finish_reasons": ["tool_calls"], "usage": None}),
]  # fmt: skip


def chunks(events: list[Event]) -> list[dict[str, Any]]:
    projection = OpenAIChunks(JOB, include_usage=False)
    out = b"".join(projection.render(e) for e in events).decode()
    frames = [f.removeprefix("data: ") for f in out.split("\n\n") if f]
    assert frames[-1] == "[DONE]"
    return [json.loads(f) for f in frames[:-1]]


def test_tool_call_fragments_stream_as_openai_tool_call_deltas() -> None:
    deltas = [c["choices"][0]["delta"] for c in chunks(LOG)]
    assert deltas[0] == {"role": "assistant", "tool_calls": [
        {"index": 0, "id": "call_a", "type": "function",
         "function": {"name": "get_weather", "arguments": ""}}]}  # fmt: skip
    assert deltas[1] == {"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}
    # a call whose first fragment has no type gets "function" (the AI SDK requires it)
    second = {"name": "get_time", "arguments": "{}"}
    assert deltas[2] == {
        "tool_calls": [{"index": 1, "id": "call_b", "type": "function", "function": second}]
    }
    assert deltas[3] == {"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}
    assert chunks(LOG)[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_non_streamed_tool_calls_are_message_tool_calls_with_null_content() -> None:
    body = completion(JOB, fold((i, e.entry()) for i, e in enumerate(LOG, 1)))
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"] == {
        "role": "assistant", "content": None, "refusal": None,
        "tool_calls": [
            {"id": "call_a", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
            {"id": "call_b", "type": "function",
             "function": {"name": "get_time", "arguments": "{}"}},
        ],
    }  # fmt: skip
    assert choice["logprobs"] is None


def test_refusals_and_logprobs_stream_and_assemble_as_openai_sends_them() -> None:
    log = [
        Event("delta", {"index": 0, "refusal": "No", "logprobs": LP}),
        Event("delta", {"index": 0, "refusal": "."}),
        Event("done", {"finish_reasons": ["stop"], "usage": None}),
    ]
    streamed = chunks(log)[0]["choices"][0]
    assert streamed["delta"] == {"role": "assistant", "refusal": "No"}
    assert streamed["logprobs"] == {"content": None, "refusal": LP}
    message = completion(JOB, fold((i, e.entry()) for i, e in enumerate(log, 1)))["choices"][0]
    assert message["message"]["content"] is None and message["message"]["refusal"] == "No."
    assert message["logprobs"] == {"content": None, "refusal": LP}


def test_a_custom_tool_call_goes_out_as_custom_input() -> None:
    log = [
        Event("delta", {"index": 0, "tool_call": {"index": 0, "id": "c", "type": "custom",
                                                  "name": "sql", "arguments": "SELECT"}}),
        Event("delta", {"index": 0, "tool_call": {"index": 0, "arguments": " 1"}}),
        Event("done", {"finish_reasons": ["tool_calls"], "usage": None}),
    ]  # fmt: skip
    deltas = [c["choices"][0]["delta"] for c in chunks(log)]
    assert deltas[1] == {"tool_calls": [{"index": 0, "custom": {"input": " 1"}}]}
    message = completion(JOB, fold((i, e.entry()) for i, e in enumerate(log, 1)))
    assert message["choices"][0]["message"]["tool_calls"] == [
        {"id": "c", "type": "custom", "custom": {"name": "sql", "input": "SELECT 1"}}
    ]
