"""Snapshots for late joiners (``gateway/snapshots.py``): folding a log in parts, through
resets, gives what folding it whole gives; the cache folds a job once, never lets one
joiner change another's fold, and stays within its bounds."""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

import pytest
from flask import Flask
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.snapshots import SnapshotCache, snapshot_data, wanted
from sluice.errors import InvalidRequest
from sluice.events import DELTA, DONE, RESET, STARTED, Event, Transcript, fold

_token = st.fixed_dictionaries({"token": st.text(max_size=3), "logprob": st.floats(-5, 0)})
_tokens = st.lists(_token, max_size=2)
_fragment = st.one_of(
    st.fixed_dictionaries({"content": st.text(max_size=4)}),
    st.fixed_dictionaries({"content": st.text(max_size=4), "logprobs": _tokens}),
    st.fixed_dictionaries({"reasoning": st.text(max_size=4)}),
    st.fixed_dictionaries({"refusal": st.text(max_size=4), "logprobs": _tokens}),
    st.fixed_dictionaries(
        {"tool_call": st.fixed_dictionaries(
            {"index": st.integers(0, 2), "arguments": st.text(max_size=4)},
            optional={"id": st.sampled_from(["", "call_a", "call_b"]),
                      "type": st.sampled_from(["function", "custom"]),
                      "name": st.sampled_from(["f", "g"])},
        )}
    ),
)  # fmt: skip
_delta = st.builds(
    lambda index, fragment: Event(DELTA, {"index": index, **fragment}), st.integers(0, 2), _fragment
)
_reset = st.builds(
    lambda n: Event(RESET, {"reason": "worker_lost", "attempt": n}), st.integers(2, 5)
)
_started = st.builds(lambda n: Event(STARTED, {"model": "m", "attempt": n}), st.integers(1, 5))
_events = st.lists(st.one_of(_delta, _delta, _delta, _reset, _started), max_size=40)


def _log(events: list[Event]) -> list[tuple[int, str]]:
    return [(i + 1, event.entry()) for i, event in enumerate(events)]


def _view(transcript: Transcript) -> dict[str, Any]:
    return {
        **snapshot_data(transcript),
        "poll": transcript.choice_list(),
        "texts": transcript.completion_texts(),
    }


@settings(max_examples=300, deadline=None)
@given(_events, st.lists(st.integers(0, 40), max_size=4))
def test_folding_in_parts_through_resets_equals_folding_from_scratch(
    events: list[Event], cuts: list[int]
) -> None:
    log = _log(events)
    whole = fold(log)
    bounds = sorted({min(c, len(log)) for c in cuts} | {0, len(log)})
    transcript = Transcript()
    for start, end in itertools.pairwise(bounds):
        before = _view(transcript)
        extended = fold(log[start:end], transcript.copy())
        assert _view(transcript) == before  # extending the copy left the original as it was
        assert _view(extended) == _view(fold(log[:end]))
        transcript = extended
    assert _view(transcript) == _view(whole)


class Log:
    """A job's log as the store reads it (``read_events(job, after, limit)``), counting reads."""

    def __init__(self, events: list[Event]) -> None:
        self.entries = [e.entry() for e in events]
        self.reads: list[tuple[int, int]] = []

    def read(self, after: int, limit: int) -> list[tuple[int, str]]:
        self.reads.append((after, limit))
        return [(after + i + 1, e) for i, e in enumerate(self.entries[after : after + limit])]


def _deltas(*texts: str) -> list[Event]:
    return [Event(DELTA, {"index": 0, "content": t}) for t in texts]


STARTED_1 = Event(STARTED, {"model": "m", "attempt": 1})


def test_a_later_joiner_reads_only_the_entries_after_the_cached_fold() -> None:
    log = Log([STARTED_1, *_deltas(*"abcdefghij")])
    cache = SnapshotCache(page=4)
    first = cache.fold("job", log.read, attempt=1, last_event_id=11)
    assert (first.upto, first.transcript.texts(), first.complete) == (11, ["abcdefghij"], False)
    assert log.reads == [(0, 4), (4, 4), (8, 4)]  # a page at a time
    log.reads.clear()
    log.entries += [e.entry() for e in _deltas("k", "l")]
    second = cache.fold("job", log.read, attempt=1, last_event_id=13)
    assert log.reads == [(11, 4)]
    assert second.transcript.texts() == ["abcdefghijkl"] and second.upto == 13
    assert first.transcript.texts() == ["abcdefghij"]  # the first joiner's fold is as it was
    log.reads.clear()
    assert cache.fold("job", log.read, attempt=1, last_event_id=13) is second  # nothing new
    assert log.reads == [(13, 4)]


def test_a_fold_stops_before_the_terminal_event_and_an_ended_job_is_read_once() -> None:
    log = Log([STARTED_1, *_deltas("Hel", "lo"), Event(DONE, {"finish_reasons": ["stop"]})])
    cache = SnapshotCache()
    folded = cache.fold("job", log.read, attempt=1, last_event_id=4)
    assert (folded.upto, folded.complete) == (3, True)
    assert snapshot_data(folded.transcript) == {
        "object": "sluice.snapshot",
        "last_event_id": 3,
        "model": "m",
        "attempt": 1,
        "choices": [{"index": 0, "content": "Hello", "finish_reason": None}],
    }
    log.reads.clear()
    assert cache.fold("job", log.read, attempt=1, last_event_id=4) is folded
    assert log.reads == []


def test_a_reset_after_the_cached_fold_is_applied_as_a_fold_from_scratch_would() -> None:
    log = Log([STARTED_1, *_deltas("old")])
    cache = SnapshotCache()
    cache.fold("job", log.read, attempt=1, last_event_id=2)
    log.entries += [
        e.entry()
        for e in [Event(RESET, {"reason": "worker_lost", "attempt": 2}), STARTED_1, *_deltas("new")]
    ]
    again = cache.fold("job", log.read, attempt=1, last_event_id=5)
    assert again.transcript.texts() == ["new"] == fold(log.read(0, 99)).texts()


def test_a_fold_the_job_contradicts_is_dropped_and_the_log_folded_again() -> None:
    log = Log([STARTED_1, *_deltas("a", "b", "c")])
    cache = SnapshotCache()
    cache.fold("job", log.read, attempt=1, last_event_id=4)
    log.entries = [e.entry() for e in [STARTED_1, *_deltas("x")]]  # Redis lost writes
    log.reads.clear()
    shorter = cache.fold("job", log.read, attempt=1, last_event_id=2)
    assert shorter.transcript.texts() == ["x"] and log.reads[0][0] == 0
    log.reads.clear()
    other_attempt = cache.fold("job", log.read, attempt=2, last_event_id=2)
    assert other_attempt.upto == 2 and log.reads[0][0] == 0


def test_tool_calls_in_a_snapshot_carry_their_index() -> None:
    calls = [
        Event(DELTA, {"index": 0, "tool_call": {"index": 1, "id": "c1", "type": "function",
                                                "name": "f", "arguments": '{"a"'}}),
        Event(DELTA, {"index": 0, "tool_call": {"index": 1, "arguments": ":1}"}}),
    ]  # fmt: skip
    [choice] = snapshot_data(fold(_log(calls)))["choices"]
    assert choice["tool_calls"] == [
        {
            "index": 1,
            "id": "c1",
            "type": "function",
            "function": {"name": "f", "arguments": '{"a":1}'},
        }
    ]


def test_the_cache_is_bounded_by_entries_and_by_characters() -> None:
    cache = SnapshotCache(entries=3, chars=25)
    for n in range(5):
        cache.fold(f"job{n}", Log(_deltas("12345")).read, attempt=0, last_event_id=1)
    assert len(cache) == 3 and cache.chars == 15
    cache.fold("big", Log(_deltas("x" * 20)).read, attempt=0, last_event_id=1)
    assert len(cache) == 2 and cache.chars == 25  # the least recently joined went first
    huge = cache.fold("huge", Log(_deltas("y" * 26)).read, attempt=0, last_event_id=1)
    assert huge.transcript.texts() == ["y" * 26]  # served, but not kept
    assert len(cache) == 2 and cache.chars == 25


def test_joiners_that_arrive_together_fold_the_log_once() -> None:
    log = Log([STARTED_1, *_deltas(*"abcdefgh")])
    slow_read = log.read

    def read(after: int, limit: int) -> list[tuple[int, str]]:
        time.sleep(0.01)  # a Redis round trip: other joiners run meanwhile
        return slow_read(after, limit)

    cache = SnapshotCache(page=2)
    results: list[list[str]] = []
    threads = [
        threading.Thread(
            target=lambda: results.append(cache.fold("job", read, 1, 9).transcript.texts())
        )
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [["abcdefgh"]] * 8
    from_start = [r for r in log.reads if r[0] == 0]
    assert len(from_start) == 1  # one fold; the others each read only after it
    assert cache._locks == {}


@pytest.mark.parametrize(
    ("query", "expected"),
    [("", False), ("?snapshot=1", True), ("?snapshot=true", True), ("?snapshot=True", True),
     ("?snapshot=0", False), ("?snapshot=false", False)],
)  # fmt: skip
def test_the_snapshot_parameter(query: str, expected: bool) -> None:
    with Flask(__name__).test_request_context(f"/events{query}"):
        assert wanted() is expected


@pytest.mark.parametrize("value", ["", "yes", "2", "on", "1.0"])
def test_any_other_snapshot_value_is_an_invalid_request(value: str) -> None:
    context = Flask(__name__).test_request_context("/events", query_string={"snapshot": value})
    with context, pytest.raises(InvalidRequest) as raised:
        wanted()
    assert raised.value.to_dict()["param"] == "snapshot"
