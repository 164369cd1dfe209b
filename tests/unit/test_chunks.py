"""Reading provider chunk shapes into delta events."""

from __future__ import annotations

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
    deltas, done = reader.read([_chunk("a"), _chunk("b")])
    assert [e.data["content"] for e in deltas] == ["a", "b"] and not done
    deltas, done = reader.read([_chunk("c"), ServerSentEvent(data="[DONE]"), _chunk("late")])
    assert [e.data["content"] for e in deltas] == ["c"] and done
    assert reader.completion_texts() == ["abc"]


def test_a_chunk_that_is_not_json_or_an_error_event_fails_the_read() -> None:
    with pytest.raises(UpstreamProtocolError):
        ChunkReader().read([_chunk("a"), ServerSentEvent(data="{not json")])
    error = ServerSentEvent(event="error", data='{"error": {"message": "overloaded"}}')
    with pytest.raises(UpstreamError) as info:
        ChunkReader().read([error])
    assert info.value.message == "overloaded"
