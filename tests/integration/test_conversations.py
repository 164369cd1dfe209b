"""Conversations: a job may be a turn of one; one job runs at a time per conversation,
and ``GET /v1/conversations/<id>/events`` follows its latest job (a second tab, a page
reloaded mid-answer). And honest cursors: a cursor the log cannot serve is a 410 at once.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from typing import Any

import httpx
import pytest
from httpx_sse import connect_sse

from devtools.fake_upstream import expected_reply
from sluice.redis_client import make_redis
from sluice.settings import Settings
from sluice.store import JobStore
from tests.helpers.support import (
    Received,
    create_job,
    text_of,
    upstream_body,
    wait_for_text,
    wait_until,
)


@pytest.fixture
def stack_store(settings: Settings) -> JobStore:
    """The store the stack's gateways and worker use."""
    return JobStore(make_redis(settings), settings)


def conversation_events(
    client: httpx.Client, conversation: str, cursor: str | None = None, limit: int | None = None
) -> tuple[int, str, list[tuple[str, str, dict[str, Any]]]]:
    """(status, X-Sluice-Job-Id, [(id, event, data)…]) of the conversation's stream."""
    headers = {"Last-Event-ID": cursor} if cursor else {}
    out: list[tuple[str, str, dict[str, Any]]] = []
    url = f"/v1/conversations/{conversation}/events"
    with connect_sse(client, "GET", url, headers=headers) as source:
        response = source.response
        if response.status_code != 200:
            return response.status_code, "", out
        for sse in source.iter_sse():
            out.append((sse.id, sse.event, json.loads(sse.data)))
            if limit is not None and len(out) >= limit:
                break
    return 200, response.headers["X-Sluice-Job-Id"], out


def as_received(events: list[tuple[str, str, dict[str, Any]]]) -> list[Received]:
    return [Received(int(i.rpartition("/")[2]), e, d) for i, e, d in events]


def turn(client: httpx.Client, conversation: str, prompt: str, model: str = "openai") -> Any:
    return client.post(
        "/v1/jobs",
        json={
            "model": model,
            "messages": [{"role": "user", "content": prompt}],
            "conversation_id": conversation,
        },
    )


def test_one_job_at_a_time_and_a_second_tab_follows_the_running_one(
    client: httpx.Client, gateway_url: str, upstream: Any
) -> None:
    conversation = "chat-" + secrets.token_hex(4)
    prompt = "conversation turn one " + secrets.token_hex(4)
    first = turn(client, conversation, prompt, model="slow;delay=0.03;words=30")
    assert first.status_code == 202, first.text
    job = first.json()
    assert job["conversation_id"] == conversation
    assert job["conversation_events_url"] == f"/v1/conversations/{conversation}/events"

    busy = turn(client, conversation, "too soon")
    assert busy.status_code == 409
    error = busy.json()["error"]
    assert (error["type"], error["job_id"], error["param"]) == (
        "conversation_busy",
        job["id"],
        "conversation_id",
    )

    # a second tab joins mid-answer, cuts its stream, and resumes with the stream's own ids
    wait_for_text(client, job["url"], 10)
    with httpx.Client(base_url=gateway_url, timeout=30) as tab:
        status, job_id, head = conversation_events(tab, conversation, limit=4)
        assert (status, job_id) == (200, job["id"])
        assert [i for i, _, _ in head] == [f"{job['id']}/{n}" for n in (1, 2, 3, 4)]
        _, _, rest = conversation_events(tab, conversation, cursor=head[-1][0])
    events = as_received(head + rest)
    assert [e.id for e in events] == list(range(1, len(events) + 1))  # nothing lost, no repeat
    assert events[-1].event == "done"
    assert text_of(events) == expected_reply(upstream_body(upstream, prompt))

    # the job ended: its last id is 204 (EventSource stops); a new turn is accepted
    last = f"{job['id']}/{events[-1].id}"
    assert conversation_events(client, conversation, cursor=last)[0] == 204
    second = turn(client, conversation, "turn two " + secrets.token_hex(4))
    assert second.status_code == 202, second.text

    # a client still holding the first job's cursor gets the new turn from its first event
    status, job_id, replay = conversation_events(client, conversation, cursor=last)
    assert (status, job_id) == (200, second.json()["id"])
    assert replay[0][0] == f"{second.json()['id']}/1" and replay[-1][1] == "done"


def test_cancelling_frees_the_conversation(client: httpx.Client) -> None:
    conversation = "chat-" + secrets.token_hex(4)
    job = turn(client, conversation, "long", model="slow;delay=0.2;words=50").json()
    assert turn(client, conversation, "again").status_code == 409
    assert client.post(f"{job['url']}/cancel").json()["status"] == "cancelled"
    assert turn(client, conversation, "again").status_code == 202


def test_of_two_submits_at_once_exactly_one_becomes_the_turn(
    client: httpx.Client, gateway_url: str, stack_store: JobStore
) -> None:
    conversation = "race-" + secrets.token_hex(4)
    statuses: list[int] = []
    start = threading.Barrier(6)

    def submit() -> None:
        with httpx.Client(base_url=gateway_url, timeout=30) as own:
            start.wait()
            statuses.append(turn(own, conversation, "race", model="slow;delay=0.1").status_code)

    threads = [threading.Thread(target=submit) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [202] + [409] * 5
    latest = stack_store.conversation_job("", conversation)
    assert latest is not None and latest.conversation == conversation
    client.post(f"/v1/jobs/{latest.id}/cancel")


def test_bad_conversation_requests_get_clear_answers(client: httpx.Client) -> None:
    assert conversation_events(client, "never-" + secrets.token_hex(4))[0] == 404
    bad = turn(client, "has space", "x")
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "conversation_id"
    assert turn(client, "x" * 129, "x").status_code == 400
    conversation = "chat-" + secrets.token_hex(4)
    job = turn(client, conversation, "short").json()
    assert conversation_events(client, conversation, cursor="not-a-cursor")[0] == 400
    past = f"{job['id']}/999"
    response = client.get(f"/v1/conversations/{conversation}/events?after={past}")
    assert response.status_code == 410
    assert response.json()["error"]["type"] == "cursor_gone"


def test_a_cursor_into_a_log_that_lost_events_is_gone_not_a_hang(
    client: httpx.Client, stack_store: JobStore
) -> None:
    """Redis lost the log's tail (a failover, an eviction): the job says it wrote more
    events than its log holds. Resuming there must not wait for events that never come
    nor skip them silently."""
    store = stack_store
    job = create_job(client)
    events_key = store.keys.events(job["id"])
    wait_until(lambda: client.get(job["url"]).json()["status"] == "succeeded", 20)
    ended = store.get(job["id"])
    assert ended is not None and ended.last_event_id > 3
    store.redis.ltrim(events_key, 0, 1)  # two events left of many
    started = time.monotonic()
    for cursor in ("1", "2", "3"):
        response = client.get(job["events_url"], headers={"Last-Event-ID": cursor})
        assert response.status_code == 410, (cursor, response.text)
        assert response.json()["error"]["type"] == "cursor_gone"
        assert response.json()["error"]["param"] == "Last-Event-ID"
    assert time.monotonic() - started < 5
    store.redis.delete(events_key)  # the whole log gone, the job's hash not yet
    assert client.get(job["events_url"]).status_code == 410


def test_a_conversation_stream_opens_with_a_snapshot_when_asked(
    client: httpx.Client, upstream: Any
) -> None:
    conversation = "chat-" + secrets.token_hex(4)
    prompt = "a snapshot of a turn " + secrets.token_hex(4)
    job = turn(client, conversation, prompt).json()
    url = f"/v1/conversations/{conversation}/events"
    full = as_received(conversation_events(client, conversation)[2])
    assert full[-1].event == "done"
    with connect_sse(client, "GET", f"{url}?snapshot=1") as source:
        events = [(sse.id, sse.event, json.loads(sse.data)) for sse in source.iter_sse()]
    assert [(i, e) for i, e, _ in events] == [
        (f"{job['id']}/{full[-2].id}", "snapshot"),
        (f"{job['id']}/{full[-1].id}", "done"),
    ]
    text = events[0][2]["choices"][0]["content"]
    assert text == text_of(full) == expected_reply(upstream_body(upstream, prompt))
    assert client.get(f"{url}?snapshot=maybe").json()["error"]["param"] == "snapshot"
