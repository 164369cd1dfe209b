"""Tool calls, refusals, logprobs and structured output through the durable log: a real
worker reads them from the fake upstream over HTTP and the gateway relays them; a stream
cut in the middle of a call's arguments and resumed with ``Last-Event-ID`` gives the
exact arguments, and the poll gives the same as the stream (docs/events.md)."""

from __future__ import annotations

import json
import secrets
from typing import Any

import httpx
import pytest

from devtools.fake_upstream import (
    FakeUpstream,
    expected_logprobs,
    expected_refusal,
    expected_reply,
    expected_tool_calls,
)
from sluice.events import Event, fold
from tests.helpers.support import (
    Received,
    create_job,
    read_in_slices,
    read_stream,
    upstream_body,
)

pytestmark = pytest.mark.integration

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city", "days"],
        },
    },
}
TIME = {"type": "function", "function": {"name": "get_time",
        "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}}}}  # fmt: skip


def prompt() -> str:
    return f"tools {secrets.token_hex(6)}"


def rebuilt(events: list[Received]) -> list[dict[str, Any]]:
    """The choices a client rebuilds from the events (sluice.events.fold)."""
    return fold((e.id, Event(e.event, e.data).entry()) for e in events).choice_list()


def without_ids(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in call.items() if k != "id"} for call in calls]


def test_a_tool_call_cut_mid_arguments_resumes_exactly_and_the_poll_agrees(
    client: httpx.Client, upstream: FakeUpstream
) -> None:
    said = prompt()
    job = create_job(
        client,
        model="slow;delay=0.01;calls=2",
        messages=[{"role": "user", "content": said}],
        tools=[WEATHER, TIME],
    )
    # three events per connection: the cuts fall between fragments of one call's arguments
    events = read_in_slices(client, job["events_url"], [], 3)
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    fragments = [e.data["tool_call"] for e in events if e.event == "delta"]
    cuts = {events[i].id for i in range(2, len(events), 3)}
    mid_arguments = [
        e for e in events if e.id in cuts and e.event == "delta" and e.data["tool_call"].get(
            "arguments") and "id" not in e.data["tool_call"]
    ]  # fmt: skip
    assert mid_arguments, "no cut fell inside a call's arguments"
    assert {f["index"] for f in fragments} == {0, 1}  # two calls in parallel

    body = upstream_body(upstream, said)
    expected = expected_tool_calls(body)
    assert len(expected) == 2
    streamed = rebuilt(events)[0]
    assert without_ids(streamed["tool_calls"]) == without_ids(expected)
    assert all(json.loads(c["function"]["arguments"]) for c in streamed["tool_calls"])
    assert events[-1].event == "done"
    assert events[-1].data["finish_reasons"] == ["tool_calls"]

    poll = client.get(job["url"]).json()
    assert poll["choices"] == [streamed]
    # ids as the upstream made them, the same in the stream and the poll
    assert all(c["id"].startswith("call_") for c in poll["choices"][0]["tool_calls"])


def test_the_tool_result_round_trip_answers_with_text(
    client: httpx.Client, upstream: FakeUpstream
) -> None:
    said = prompt()
    first = create_job(client, model="openai", messages=[{"role": "user", "content": said}],
                       tools=[WEATHER])  # fmt: skip
    read_stream(client, first["events_url"])
    call = client.get(first["url"]).json()["choices"][0]["tool_calls"][0]
    messages = [
        {"role": "user", "content": said},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": "22 C and sunny"},
    ]
    second = create_job(client, model="openai", messages=messages, tools=[WEATHER])
    events = read_stream(client, second["events_url"])
    answer = rebuilt(events)[0]
    assert "tool_calls" not in answer and "22 C and sunny" in answer["content"]
    assert upstream_body(upstream, "22 C and sunny")["messages"][1]["tool_calls"] == [call]


def test_refusals_and_logprobs_reach_the_stream_and_the_poll(
    client: httpx.Client, upstream: FakeUpstream
) -> None:
    refused = create_job(client, model="refusal", messages=[{"role": "user", "content": prompt()}])
    events = read_stream(client, refused["events_url"])
    assert rebuilt(events)[0]["refusal"] == expected_refusal()
    assert client.get(refused["url"]).json()["choices"][0]["refusal"] == expected_refusal()

    said = prompt()
    job = create_job(client, model="openai", messages=[{"role": "user", "content": said}],
                     logprobs=True, top_logprobs=2)  # fmt: skip
    events = read_stream(client, job["events_url"])
    body = upstream_body(upstream, said)
    assert body["logprobs"] is True and body["top_logprobs"] == 2
    poll = client.get(job["url"]).json()["choices"][0]
    assert poll["content"] == expected_reply(body)
    assert poll["logprobs"] == {"content": expected_logprobs(body), "refusal": None}
    assert rebuilt(events)[0] == poll


def test_structured_output_streams_the_schema_s_json(
    client: httpx.Client, upstream: FakeUpstream
) -> None:
    said = prompt()
    schema = {"type": "object", "properties": {"city": {"type": "string"},
              "score": {"type": "number"}}, "required": ["city", "score"],
              "additionalProperties": False}  # fmt: skip
    job = create_job(
        client, model="openai", messages=[{"role": "user", "content": said}],
        response_format={"type": "json_schema",
                         "json_schema": {"name": "rating", "schema": schema, "strict": True}},
    )  # fmt: skip
    events = read_stream(client, job["events_url"])
    text = rebuilt(events)[0]["content"]
    assert text == expected_reply(upstream_body(upstream, said))
    assert set(json.loads(text)) == {"city", "score"}
