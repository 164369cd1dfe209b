"""Reading provider chunk shapes into delta events."""

from __future__ import annotations

import json

import pytest

from sluice.errors import UpstreamError, UpstreamProtocolError
from sluice.sse_decoder import ServerSentEvent
from worker.upstream import ChunkReader


def test_azure_first_chunk_with_empty_choices_is_skipped() -> None:
    reader = ChunkReader()
    assert reader.consume({"id": "", "choices": [], "prompt_filter_results": []}) == []


def test_usage_only_chunk_is_recorded() -> None:
    reader = ChunkReader()
    reader.consume({"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2,
                                             "total_tokens": 7}})  # fmt: skip
    assert reader.usage == {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}


def test_usage_on_the_finish_chunk_is_recorded() -> None:
    reader = ChunkReader()
    reader.consume(
        {
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
    )
    assert reader.finished and reader.usage and reader.usage["total_tokens"] == 2


def test_empty_string_finish_reason_is_not_a_finish() -> None:
    reader = ChunkReader()
    reader.consume({"choices": [{"index": 0, "delta": {"content": "a"}, "finish_reason": ""}]})
    assert not reader.finished


def test_reasoning_content_becomes_reasoning_deltas() -> None:
    reader = ChunkReader()
    events = reader.consume(
        {"choices": [{"index": 0, "delta": {"reasoning_content": "hmm", "content": None}}]}
    )
    assert [(e.type, e.data) for e in events] == [("delta", {"index": 0, "reasoning": "hmm"})]


def test_error_object_inside_the_stream_is_a_failure() -> None:
    with pytest.raises(UpstreamError) as info:
        ChunkReader().consume({"error": {"message": "boom", "code": 400, "type": "BadRequest"}})
    assert info.value.message == "boom" and info.value.code == 400


def test_every_choice_must_finish() -> None:
    reader = ChunkReader(n=2)
    reader.consume({"choices": [{"index": 1, "delta": {}, "finish_reason": "stop"}]})
    assert not reader.finished
    assert reader.finish_reason_list() == [None, "stop"]


def _chunk(content: str) -> ServerSentEvent:
    return ServerSentEvent(
        data=f'{{"choices": [{{"index": 0, "delta": {{"content": "{content}"}}}}]}}'
    )


def test_a_read_s_events_become_its_deltas_up_to_done() -> None:
    reader = ChunkReader()
    deltas, done = reader.read([_chunk("a")])
    assert [e.data["content"] for e in deltas] == ["a"] and not done
    deltas, done = reader.read([_chunk("c"), ServerSentEvent(data="[DONE]"), _chunk("late")])
    assert [e.data["content"] for e in deltas] == ["c"] and done
    assert reader.completion_texts() == ["ac"]


def test_text_chunks_read_together_are_one_delta() -> None:
    """A worker that fell behind reads several chunks at once: their text is one event."""
    reader = ChunkReader()
    deltas, _ = reader.read([_chunk("a"), _chunk("b"), _chunk("c")])
    assert [e.data for e in deltas] == [{"index": 0, "content": "abc"}]
    assert reader.completion_texts() == ["abc"]


def test_only_plain_text_of_one_kind_and_choice_joins() -> None:
    reader = ChunkReader(n=2)
    chunks = [
        {"choices": [{"index": 0, "delta": {"reasoning": "r1"}}]},
        {"choices": [{"index": 0, "delta": {"reasoning": "r2"}}]},
        {"choices": [{"index": 0, "delta": {"content": "a"}}]},
        {"choices": [{"index": 1, "delta": {"content": "x"}}]},
        {"choices": [{"index": 0, "delta": {"content": "b"}}]},
        {"choices": [{"index": 0, "delta": {"content": "c"},
                      "logprobs": {"content": [{"token": "c", "logprob": -0.1}]}}]},
        {"choices": [{"index": 0, "delta": {"content": "d"}}]},
        tool_chunk({"index": 0, "function": {"arguments": "{"}}),
        tool_chunk({"index": 0, "function": {"arguments": "}"}}),
        {"choices": [{"index": 0, "delta": {"content": "e"}}]},
        {"choices": [{"index": 0, "delta": {"content": "f"}}]},
    ]  # fmt: skip
    events, _ = reader.read([ServerSentEvent(data=json.dumps(c)) for c in chunks])
    assert [e.data for e in events] == [
        {"index": 0, "reasoning": "r1r2"},
        {"index": 0, "content": "a"},
        {"index": 1, "content": "x"},
        {"index": 0, "content": "b"},
        {"index": 0, "content": "c", "logprobs": [{"token": "c", "logprob": -0.1}]},
        {"index": 0, "content": "d"},
        {"index": 0, "tool_call": {"index": 0, "arguments": "{"}},
        {"index": 0, "tool_call": {"index": 0, "arguments": "}"}},
        {"index": 0, "content": "ef"},
    ]


def test_a_chunk_that_is_not_json_or_an_error_event_fails_the_read() -> None:
    with pytest.raises(UpstreamProtocolError):
        ChunkReader().read([_chunk("a"), ServerSentEvent(data="{not json")])
    error = ServerSentEvent(event="error", data='{"error": {"message": "overloaded"}}')
    with pytest.raises(UpstreamError) as info:
        ChunkReader().read([error])
    assert info.value.message == "overloaded"


# --- tool calls, refusals, logprobs (docs/events.md)


def tool_chunk(*calls: dict, index: int = 0, **delta: object) -> dict:
    return {"choices": [{"index": index, "delta": {**delta, "tool_calls": list(calls)},
                         "logprobs": None, "finish_reason": None}]}  # fmt: skip


def deltas(reader: ChunkReader, *chunks: dict) -> list[dict]:
    return [e.data for chunk in chunks for e in reader.consume(chunk)]


def test_openai_tool_call_deltas_become_one_fragment_each() -> None:
    reader = ChunkReader()
    first = {"index": 0, "id": "call_a", "type": "function",
             "function": {"name": "get_weather", "arguments": ""}}  # fmt: skip
    got = deltas(
        reader,
        tool_chunk(first, role="assistant", content=None, refusal=None),
        tool_chunk({"index": 0, "function": {"arguments": '{"ci'}}),
        tool_chunk({"index": 0, "function": {"arguments": 'ty":"Paris"}'}}),
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
    )
    assert got == [
        {"index": 0, "tool_call": {"index": 0, "id": "call_a", "type": "function",
                                   "name": "get_weather", "arguments": ""}},
        {"index": 0, "tool_call": {"index": 0, "arguments": '{"ci'}},
        {"index": 0, "tool_call": {"index": 0, "arguments": 'ty":"Paris"}'}},
    ]  # fmt: skip
    assert reader.finish_reason_list() == ["tool_calls"]
    assert reader.deltas == 3  # no silent retry once a call fragment was sent
    assert reader.completion_texts() == ['get_weather{"city":"Paris"}']


def test_several_calls_in_one_chunk_and_a_missing_index_keep_their_order() -> None:
    # vLLM and Gemini's OpenAI endpoint may put parallel calls in one chunk, some without
    # an index: each becomes its own fragment, the position standing in for the index
    reader = ChunkReader()
    got = deltas(
        reader,
        tool_chunk(
            {"id": "c1", "type": "function", "function": {"name": "a", "arguments": "{}"}},
            {"id": "c2", "type": "function", "function": {"name": "b", "arguments": {"x": 1}}},
        ),
    )
    assert [d["tool_call"] for d in got] == [
        {"index": 0, "id": "c1", "type": "function", "name": "a", "arguments": "{}"},
        {"index": 1, "id": "c2", "type": "function", "name": "b", "arguments": '{"x":1}'},
    ]


def test_a_custom_tool_call_carries_its_input_as_arguments() -> None:
    reader = ChunkReader()
    got = deltas(
        reader,
        tool_chunk(
            {"index": 0, "id": "c", "type": "custom", "custom": {"name": "sql", "input": ""}}
        ),
        tool_chunk({"index": 0, "custom": {"input": "SELECT 1"}}),
    )
    assert [d["tool_call"] for d in got] == [
        {"index": 0, "id": "c", "type": "custom", "name": "sql", "arguments": ""},
        {"index": 0, "type": "custom", "arguments": "SELECT 1"},
    ]


def test_an_empty_tool_call_fragment_is_not_an_event() -> None:
    assert ChunkReader().consume(tool_chunk({"index": 0, "function": {"arguments": ""}})) == []


def test_refusal_deltas_and_logprobs_are_kept_with_their_fragment() -> None:
    token = {"token": "Hi", "logprob": -0.1, "bytes": [72, 105], "top_logprobs": []}
    empty = {"token": "", "logprob": -2.0, "bytes": [], "top_logprobs": []}
    reader = ChunkReader()
    got = deltas(
        reader,
        {"choices": [{"index": 0, "delta": {"content": "Hi"},
                      "logprobs": {"content": [token], "refusal": None}}]},
        {"choices": [{"index": 0, "delta": {"content": ""},
                      "logprobs": {"content": [empty], "refusal": None}}]},
        {"choices": [{"index": 0, "delta": {"refusal": "No."},
                      "logprobs": {"content": None, "refusal": [token]}}]},
    )  # fmt: skip
    assert got == [
        {"index": 0, "content": "Hi", "logprobs": [token]},
        {"index": 0, "content": "", "logprobs": [empty]},  # no token's logprob is lost
        {"index": 0, "refusal": "No.", "logprobs": [token]},
    ]
