"""OpenAI's Responses API through the queue, with the real openai SDK (the venv's 3.x)
against the real stack: background mode streamed, cut and resumed with
``starting_after`` (exact text, nothing repeated), cancel, plain and streamed requests,
function tools and the ``function_call_output`` round trip, ``previous_response_id``
chaining (checked on what the fake upstream received), OpenAI's error shapes, and the
OpenAI Agents SDK running an agent with a function tool on its Responses model."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from devtools.fake_upstream import FakeUpstream, expected_reasoning, expected_reply
from tests.helpers.support import upstream_body, wait_until

pytestmark = pytest.mark.integration

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The current weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}


@pytest.fixture
def sdk(gateway_url: str) -> Iterator[openai.OpenAI]:
    client = openai.OpenAI(base_url=f"{gateway_url}/v1", api_key="not-used", max_retries=0)
    yield client
    client.close()


def prompt(tag: str) -> str:
    return f"responses {tag} {secrets.token_hex(4)}"


def test_a_background_stream_cut_mid_answer_resumes_exactly(
    sdk: openai.OpenAI, upstream: FakeUpstream
) -> None:
    said = prompt("resume")
    stream = sdk.responses.create(
        model="slow;words=30;delay=0.02", input=said, background=True, stream=True
    )
    seen: list[Any] = []
    for event in stream:
        seen.append(event)
        if sum(e.type == "response.output_text.delta" for e in seen) == 3:
            break
    stream.close()  # the client goes away mid-answer; the job goes on
    assert seen[0].type == "response.created" and seen[0].response.status == "queued"
    response_id = seen[0].response.id
    assert response_id.startswith("resp_")
    last = seen[-1].sequence_number

    rest = list(sdk.responses.retrieve(response_id, stream=True, starting_after=last))
    numbers = [e.sequence_number for e in seen + rest]
    assert numbers == list(range(len(numbers)))  # nothing lost, nothing repeated
    text = "".join(e.delta for e in seen + rest if e.type == "response.output_text.delta")
    expected = expected_reply(upstream_body(upstream, said))
    assert text == expected
    assert rest[-1].type == "response.completed"
    assert rest[-1].response.output_text == expected

    # the SDK's own resume helper (it replays from the start and skips what was seen)
    with sdk.responses.stream(response_id=response_id, starting_after=last) as resumed:
        numbers = [e.sequence_number for e in resumed]
        assert numbers[0] == last + 1
        assert resumed.get_final_response().output_text == expected
    numbers = [e.sequence_number for e in seen + rest]
    polled = sdk.responses.retrieve(response_id)
    assert polled.status == "completed" and polled.output_text == expected
    assert polled.usage is not None and polled.usage.output_tokens > 0
    # a cursor past the end is refused at once; at the end the stream is empty
    with pytest.raises(openai.BadRequestError) as info:
        list(sdk.responses.retrieve(response_id, stream=True, starting_after=numbers[-1] + 1))
    assert info.value.body["param"] == "starting_after"  # type: ignore[index]
    assert list(sdk.responses.retrieve(response_id, stream=True, starting_after=numbers[-1])) == []


def test_cancel_a_background_response(sdk: openai.OpenAI, gateway_url: str) -> None:
    queued = sdk.responses.create(
        model="slow;words=400;delay=0.05", input=prompt("cancel"), background=True
    )
    assert queued.status == "queued" and queued.background is True
    wait_until(lambda: bool(sdk.responses.retrieve(queued.id).output), timeout=15)
    cancelled = sdk.responses.cancel(queued.id)
    assert cancelled.status == "cancelled"
    assert sdk.responses.cancel(queued.id).status == "cancelled"  # idempotent
    events = list(sdk.responses.retrieve(queued.id, stream=True))
    assert events[-1].type == "response.failed" and events[-1].response.status == "cancelled"

    plain = sdk.responses.create(model="openai", input=prompt("sync"))
    with pytest.raises(openai.BadRequestError):
        sdk.responses.cancel(plain.id)  # only background responses, as OpenAI

    deleted = httpx.delete(f"{gateway_url}/v1/responses/{plain.id}").json()
    assert deleted == {"id": plain.id, "object": "response.deleted", "deleted": True}
    with pytest.raises(openai.NotFoundError):
        sdk.responses.retrieve(plain.id)


def test_plain_and_streamed_requests_and_what_the_upstream_got(
    sdk: openai.OpenAI, upstream: FakeUpstream
) -> None:
    said = prompt("plain")
    response = sdk.responses.create(
        model="gpt-4o-mini",
        input=said,
        instructions="Answer briefly.",
        max_output_tokens=500,
        temperature=0.3,
        metadata={"ticket": "42"},
    )
    body = upstream_body(upstream, said)
    assert body["messages"] == [
        {"role": "system", "content": "Answer briefly."},  # developer, as gpt-4o takes it
        {"role": "user", "content": said},
    ]
    assert body["max_tokens"] == 500 and body["temperature"] == 0.3
    assert response.status == "completed" and response.output_text == expected_reply(body)
    assert response.metadata == {"ticket": "42"} and response.instructions == "Answer briefly."
    assert response.id.startswith("resp_") and response.output[0].id.startswith("msg_")

    said = prompt("stream")
    events = list(sdk.responses.create(model="reasoning", input=said, stream=True))
    assert events[0].type == "response.created" and events[0].response.status == "in_progress"
    assert events[-1].type == "response.completed"
    final = events[-1].response
    assert [item.type for item in final.output] == ["reasoning", "message"]
    body = upstream_body(upstream, said)
    assert final.output[0].content[0].text == expected_reasoning(body)  # type: ignore[union-attr,index]
    assert final.output_text == expected_reply(body)

    items = sdk.responses.input_items.list(response.id)
    assert [(i.type, i.role) for i in items.data] == [("message", "user")]  # type: ignore[union-attr]


def test_function_tools_round_trip_and_chaining(sdk: openai.OpenAI, upstream: FakeUpstream) -> None:
    said = prompt("tools")
    first = sdk.responses.create(model="openai", input=said, tools=[WEATHER])  # type: ignore[list-item]
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather"
    assert json.loads(calls[0].arguments) == {"city": "Paris"}
    assert upstream_body(upstream, said)["tools"][0]["function"]["name"] == "get_weather"

    # the SDK-managed history: the output sent back with the tool's result
    result = f"sunny {secrets.token_hex(3)}"
    second = sdk.responses.create(
        model="openai",
        input=[
            {"role": "user", "content": said},
            *[item.model_dump(exclude_none=True) for item in first.output],  # type: ignore[misc]
            {"type": "function_call_output", "call_id": calls[0].call_id, "output": result},
        ],
        tools=[WEATHER],  # type: ignore[list-item]
    )
    assert f"The tool said: «{result}»." in second.output_text
    messages = upstream_body(upstream, result)["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool"]
    assert messages[1]["tool_calls"][0]["id"] == calls[0].call_id

    # the server-managed history: previous_response_id carries input and output over
    result = f"rain {secrets.token_hex(3)}"
    chained = sdk.responses.create(
        model="openai",
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": calls[0].call_id, "output": result}],
        tools=[WEATHER],  # type: ignore[list-item]
    )
    assert f"The tool said: «{result}»." in chained.output_text
    messages = upstream_body(upstream, result)["messages"]
    assert messages[0] == {"role": "user", "content": said}
    assert messages[1]["tool_calls"][0]["function"]["arguments"] == calls[0].arguments
    assert messages[2] == {"role": "tool", "tool_call_id": calls[0].call_id, "content": result}

    again = prompt("again")
    text = sdk.responses.create(
        model="openai", previous_response_id=chained.id, input=again, instructions="New."
    )
    messages = upstream_body(upstream, again)["messages"]
    assert messages[0] == {"role": "system", "content": "New."}  # instructions: not carried
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool", "assistant",
                                             "user"]  # fmt: skip
    assert messages[4]["content"] == chained.output_text
    assert text.previous_response_id == chained.id


def test_bad_requests_are_openai_s_errors(sdk: openai.OpenAI, gateway_url: str) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        sdk.responses.create(model="openai", input="x", extra_body={"bogus": 1})
    assert info.value.body["param"] == "bogus"  # type: ignore[index]
    assert info.value.body["type"] == "invalid_request_error"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as info:
        sdk.responses.create(model="openai", input="x", previous_response_id="resp_nope")
    assert info.value.code == "previous_response_not_found"
    with pytest.raises(openai.BadRequestError) as info:
        sdk.responses.create(model="openai", input="x", background=True, store=False)
    assert info.value.body["param"] == "store"  # type: ignore[index]
    with pytest.raises(openai.NotFoundError):
        sdk.responses.retrieve("resp_nope")
    unstored = sdk.responses.create(model="openai", input=prompt("unstored"), store=False)
    assert unstored.status == "completed"
    with pytest.raises(openai.NotFoundError):
        sdk.responses.retrieve(unstored.id)
    shape = httpx.get(f"{gateway_url}/v1/responses/resp_nope").json()
    assert set(shape["error"]) == {"message", "type", "param", "code"}


def test_an_agents_sdk_agent_runs_a_tool_to_a_final_answer(
    gateway_url: str, upstream: FakeUpstream
) -> None:
    from agents import Agent, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled

    set_tracing_disabled(True)  # no trace export to OpenAI
    said = prompt("agent")
    asked: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """The current weather in a city."""
        asked.append(city)
        return f"18 C in {city}"

    async def run() -> Any:
        client = openai.AsyncOpenAI(base_url=f"{gateway_url}/v1", api_key="x", max_retries=0)
        model = OpenAIResponsesModel(model="gpt-4o-mini", openai_client=client)
        agent = Agent(name="Weather", instructions="Use the tool.", model=model,
                      tools=[get_weather])  # fmt: skip
        try:
            return await Runner.run(agent, said)
        finally:
            await client.close()

    result = asyncio.run(run())
    assert asked == ["Paris"]
    assert "The tool said: «18 C in Paris»." in result.final_output
    messages = upstream_body(upstream, "18 C in Paris")["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool"]
