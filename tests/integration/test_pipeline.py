"""End to end: gateway (gunicorn) → Celery worker → Redis → SSE, against the fake upstream."""

from __future__ import annotations

import secrets
import socket
import time

import httpx
import pytest

from devtools.fake_upstream import FakeUpstream, expected_reasoning, expected_reply
from sluice.tokens import count_text
from tests.helpers.support import (
    Received,
    create_job,
    last_prompt,
    read_in_slices,
    read_stream,
    text_of,
    upstream_body,
    wait_for_text,
)

pytestmark = pytest.mark.integration


def unique_prompt() -> str:
    return f"Tell me something ({secrets.token_hex(6)})"


def run_job(client: httpx.Client, model: str = "openai", **body) -> tuple[dict, list[Received]]:
    prompt = body.pop("prompt", None) or unique_prompt()
    job = create_job(client, model=model, messages=[{"role": "user", "content": prompt}], **body)
    job["prompt"] = prompt
    return job, read_stream(client, job["events_url"])


def assert_well_formed(events: list[Received], terminal: str) -> None:
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    assert events[0].event == "started"
    assert events[-1].event == terminal
    assert all(e.event in ("delta", "reset") for e in events[1:-1])


def test_job_streams_started_deltas_and_done_with_contiguous_ids(
    client: httpx.Client, upstream: FakeUpstream
) -> None:
    job, events = run_job(client)
    assert job["status"] == "queued"
    assert job["url"] == f"/v1/jobs/{job['id']}"
    assert_well_formed(events, "done")
    assert events[0].data == {"model": "openai", "attempt": 1}
    body = upstream_body(upstream, job["prompt"])
    assert text_of(events) == expected_reply(body)
    assert len([e for e in events if e.event == "delta"]) > 5
    assert events[-1].data["finish_reasons"] == ["stop"]


def test_consecutive_jobs_reuse_the_upstream_connection(
    client: httpx.Client, upstream: FakeUpstream
) -> None:
    """After [DONE] the worker reads the end of the body, so the connection goes back to
    the keep-alive pool (no TCP, and against a provider no TLS, handshake per job)."""
    first, _ = run_job(client)
    second, _ = run_job(client)
    requests = [r for r in upstream.requests if r.path.endswith("/chat/completions")]
    prompts = [last_prompt(r) for r in requests]
    at = prompts.index(second["prompt"])
    assert prompts.index(first["prompt"]) < at
    earlier_ports = {r.client_port for r in requests[:at]}
    assert requests[at].client_port in earlier_ports  # a pooled connection, not a new one


def test_accepted_answer_has_the_contract_fields(client: httpx.Client) -> None:
    prompt = unique_prompt()
    response = client.post(
        "/v1/jobs", json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": prompt}]}
    )
    assert response.status_code == 202
    body = response.json()
    assert response.headers["location"] == body["url"] == f"/v1/jobs/{body['id']}"
    assert body["events_url"].startswith(f"/v1/jobs/{body['id']}/events")
    assert body["model"] == "gpt-4o-mini"
    assert body["truncated_messages"] == 0
    expected_prompt = 3 + 3 + count_text("user", "o200k_base") + count_text(prompt, "o200k_base")
    assert body["prompt_tokens"] == expected_prompt
    read_stream(client, body["events_url"])


def test_all_parameters_are_forwarded_to_the_upstream(
    client: httpx.Client, upstream: FakeUpstream
) -> None:
    params = {
        "temperature": 0.5, "top_p": 0.9, "n": 1, "stop": ["\n\n"], "max_tokens": 50,
        "presence_penalty": 0.1, "frequency_penalty": -0.1, "logit_bias": {"50256": -100},
        "user": "user-42",
    }  # fmt: skip
    job, events = run_job(client, **params)
    body = upstream_body(upstream, job["prompt"])
    assert {k: body[k] for k in params} == params
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert events[-1].event == "done"


def test_done_carries_the_upstreams_own_usage(client: httpx.Client, upstream: FakeUpstream) -> None:
    _job, events = run_job(client)
    done = events[-1].data
    assert done["usage_estimated"] is False
    pieces = len([e for e in events if e.event == "delta"])
    assert done["usage"]["completion_tokens"] == pieces
    assert done["usage"]["total_tokens"] == (
        done["usage"]["prompt_tokens"] + done["usage"]["completion_tokens"]
    )


def test_usage_is_counted_with_tiktoken_when_the_upstream_sends_none(
    client: httpx.Client,
) -> None:
    job, events = run_job(client, model="no-usage")
    done = events[-1].data
    assert done["usage_estimated"] is True
    assert done["usage"]["prompt_tokens"] == job["prompt_tokens"]
    assert done["usage"]["completion_tokens"] == count_text(text_of(events), "o200k_base")


def test_upstream_that_rejects_stream_options_is_asked_again_without(
    client: httpx.Client, upstream: FakeUpstream
) -> None:
    job, events = run_job(client, model="rejects-stream-options")
    assert_well_formed(events, "done")
    assert text_of(events) == expected_reply(upstream_body(upstream, job["prompt"]))
    assert events[-1].data["usage_estimated"] is True


@pytest.mark.parametrize(
    "scenario",
    ["azure", "llamacpp", "ollama-old", "crlf", "cr", "fragmented;gap=0", "comments", "no-done"],
)
def test_provider_stream_shapes_reassemble_to_the_exact_text(
    client: httpx.Client, upstream: FakeUpstream, scenario: str
) -> None:
    job, events = run_job(client, model=scenario)
    assert_well_formed(events, "done")
    assert text_of(events) == expected_reply(upstream_body(upstream, job["prompt"]))


def test_reasoning_deltas_are_relayed_apart_from_the_content(
    client: httpx.Client, upstream: FakeUpstream
) -> None:
    job, events = run_job(client, model="reasoning")
    body = upstream_body(upstream, job["prompt"])
    reasoning = "".join(e.data.get("reasoning", "") for e in events if e.event == "delta")
    assert reasoning == expected_reasoning(body)
    assert text_of(events) == expected_reply(body)
    poll = client.get(job["url"]).json()
    assert poll["choices"][0]["reasoning"] == reasoning


def test_several_choices_stream_side_by_side(client: httpx.Client, upstream: FakeUpstream) -> None:
    job, events = run_job(client, n=2)
    body = upstream_body(upstream, job["prompt"])
    assert text_of(events, 0) == expected_reply(body, 0)
    assert text_of(events, 1) == expected_reply(body, 1)
    assert events[-1].data["finish_reasons"] == ["stop", "stop"]


def test_max_tokens_cut_reports_length(client: httpx.Client) -> None:
    _job, events = run_job(client, max_tokens=4)
    assert events[-1].data["finish_reasons"] == ["length"]
    assert len([e for e in events if e.event == "delta"]) == 4


def test_resume_with_last_event_id_gets_exactly_the_later_events(client: httpx.Client) -> None:
    job, full = run_job(client)
    for k in (0, 1, 3, len(full) - 1):
        rest = read_stream(client, job["events_url"], headers={"Last-Event-ID": str(k)})
        assert rest == full[k:]
        assert read_stream(client, f"{job['events_url']}?after={k}") == full[k:]


def test_header_wins_over_the_after_parameter(client: httpx.Client) -> None:
    job, full = run_job(client)
    rest = read_stream(client, f"{job['events_url']}?after=0", headers={"Last-Event-ID": "2"})
    assert rest == full[2:]


def test_dropped_connection_resumes_mid_stream_without_loss_or_repeat(
    client: httpx.Client, upstream: FakeUpstream
) -> None:
    prompt = unique_prompt()
    job = create_job(
        client, model="slow;delay=0.02;words=60", messages=[{"role": "user", "content": prompt}]
    )
    received = read_in_slices(client, job["events_url"], [], 7)
    assert [e.id for e in received] == list(range(1, len(received) + 1))
    assert text_of(received) == expected_reply(upstream_body(upstream, prompt))


def test_post_with_stream_true_answers_with_the_jobs_event_stream(
    client: httpx.Client, upstream: FakeUpstream
) -> None:
    prompt = unique_prompt()
    body = {"model": "openai", "messages": [{"role": "user", "content": prompt}], "stream": True}
    headers: dict[str, str] = {}
    events = read_stream(client, "/v1/jobs", body=body, seen=headers)
    assert_well_formed(events, "done")
    assert text_of(events) == expected_reply(upstream_body(upstream, prompt))
    job_id = headers["x-sluice-job-id"]
    assert headers["location"] == f"/v1/jobs/{job_id}"
    assert read_stream(client, headers["x-sluice-events-url"]) == events  # the same stream
    poll = client.get(headers["location"]).json()
    assert poll["status"] == "succeeded" and poll["choices"][0]["content"] == text_of(events)


def test_a_dropped_post_stream_resumes_from_its_events_url(
    client: httpx.Client, upstream: FakeUpstream
) -> None:
    prompt = unique_prompt()
    body = {
        "model": "slow;delay=0.02;words=40",
        "messages": [{"role": "user", "content": prompt}],
        "stream": True,
    }
    headers: dict[str, str] = {}
    first = read_stream(client, "/v1/jobs", body=body, seen=headers, limit=5)
    received = read_in_slices(client, headers["x-sluice-events-url"], first, 9)
    assert [e.id for e in received] == list(range(1, len(received) + 1))
    assert text_of(received) == expected_reply(upstream_body(upstream, prompt))


def test_late_client_gets_the_whole_replay_then_204(client: httpx.Client) -> None:
    job, live = run_job(client)
    assert client.get(job["url"]).json()["status"] == "succeeded"
    assert read_stream(client, job["events_url"]) == live
    last = str(live[-1].id)
    assert client.get(job["events_url"], headers={"Last-Event-ID": last}).status_code == 204


def test_poll_returns_the_same_text_and_usage_as_the_stream(client: httpx.Client) -> None:
    job, events = run_job(client, n=2)
    poll = client.get(job["url"]).json()
    assert poll["status"] == "succeeded"
    assert [c["content"] for c in poll["choices"]] == [text_of(events, 0), text_of(events, 1)]
    assert [c["finish_reason"] for c in poll["choices"]] == ["stop", "stop"]
    assert poll["usage"] == events[-1].data["usage"]
    assert poll["last_event_id"] == events[-1].id
    assert poll["error"] is None
    assert poll["created_at"] <= poll["started_at"] <= poll["finished_at"]


def test_poll_while_running_shows_a_prefix_of_the_answer(
    client: httpx.Client, upstream: FakeUpstream
) -> None:
    prompt = unique_prompt()
    job = create_job(
        client, model="slow;delay=0.05;words=40", messages=[{"role": "user", "content": prompt}]
    )
    deadline = time.monotonic() + 10
    poll = client.get(job["url"]).json()
    while time.monotonic() < deadline and not (poll["choices"] and poll["choices"][0]["content"]):
        time.sleep(0.05)
        poll = client.get(job["url"]).json()
    assert poll["status"] == "running"
    partial = poll["choices"][0]["content"]
    events = read_stream(client, job["events_url"])
    assert text_of(events).startswith(partial) and len(text_of(events)) > len(partial)


def test_idle_stream_gets_an_immediate_first_byte_and_keepalive_comments(
    client: httpx.Client,
) -> None:
    job = create_job(client, model="slow;delay=1.5", max_tokens=3)
    started = time.monotonic()
    with client.stream("GET", job["events_url"]) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        assert "no-cache" in response.headers["cache-control"]
        assert response.headers["x-accel-buffering"] == "no"
        chunks = response.iter_text()
        first = next(chunks)
        assert first.startswith(":") and time.monotonic() - started < 1.0
        raw = first + "".join(chunks)
    assert "retry: " in raw
    assert raw.count(": keep-alive") >= 2  # heartbeat is 1 s in the tests; deltas 1.5 s apart
    assert raw.rstrip().endswith("}") and "event: done" in raw


def test_cancel_ends_the_stream_and_closes_a_silent_upstream(
    client: httpx.Client, upstream: FakeUpstream
) -> None:
    closed_before = upstream.streams_closed_by_client
    job = create_job(client, model="stall;fail_after=2;stall=60")
    # started and the 2 deltas (one event when the worker read them together), then silence
    events = read_stream(client, job["events_url"], limit=2)
    assert [e.event for e in events] == ["started", "delta"]
    started = time.monotonic()
    response = client.post(f"{job['url']}/cancel")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    rest = read_stream(client, job["events_url"], headers={"Last-Event-ID": "3"})
    assert [e.event for e in rest] == ["cancelled"]
    assert rest[0].data["usage"]["completion_tokens"] > 0
    assert upstream.wait_for_no_open_streams(5)
    assert upstream.streams_closed_by_client > closed_before
    assert time.monotonic() - started < 3
    again = client.post(f"{job['url']}/cancel")
    assert again.status_code == 200 and again.json()["status"] == "cancelled"
    assert again.json()["last_event_id"] == 4


@pytest.mark.parametrize("body", ["framing=close", "framing=close;encoding=gzip", "encoding=gzip"])
def test_a_close_delimited_upstream_streams_its_deltas_as_they_come(
    client: httpx.Client, upstream: FakeUpstream, body: str
) -> None:
    """A body that only the connection's close ends (no chunked encoding, no length), or a
    compressed one, still streams: the first delta reaches the client while the upstream
    is still writing (with ``iter_content`` a close-delimited body came only at its end)."""
    prompt = unique_prompt()
    job = create_job(
        client,
        model=f"slow;delay=0.1;words=4;{body}",
        messages=[{"role": "user", "content": prompt}],
    )
    head = read_stream(client, job["events_url"], limit=2)
    assert [e.event for e in head] == ["started", "delta"]
    [recorded] = [r for r in upstream.requests if last_prompt(r) == prompt]
    assert not recorded.finished  # the upstream has more to write
    rest = read_stream(client, job["events_url"], headers={"Last-Event-ID": str(head[-1].id)})
    assert rest[-1].event == "done"
    assert text_of(head + rest) == expected_reply(upstream_body(upstream, prompt))


def test_cancel_closes_a_silent_close_delimited_upstream_within_2s(
    client: httpx.Client, upstream: FakeUpstream
) -> None:
    job = create_job(client, model="stall;fail_after=2;stall=60;framing=close")
    # started and the 2 deltas (one event when the worker read them together), then silence
    events = read_stream(client, job["events_url"], limit=2)
    assert [e.event for e in events] == ["started", "delta"]
    started = time.monotonic()
    assert client.post(f"{job['url']}/cancel").json()["status"] == "cancelled"
    assert upstream.wait_for_no_open_streams(2)
    assert time.monotonic() - started < 2


def test_cancelling_a_finished_job_returns_its_final_state(client: httpx.Client) -> None:
    job, events = run_job(client)
    response = client.post(f"{job['url']}/cancel")
    assert response.status_code == 200
    assert response.json()["status"] == "succeeded"
    assert response.json()["last_event_id"] == events[-1].id


def test_a_job_cancelled_while_queued_never_starts(client: httpx.Client) -> None:
    # the worker may pick it up first; either way the stream ends with exactly one terminal
    job = create_job(client, model="slow;delay=0.05")
    client.post(f"{job['url']}/cancel")
    events = read_stream(client, job["events_url"])
    assert events[-1].event == "cancelled"
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    time.sleep(0.5)
    assert client.get(job["url"]).json()["last_event_id"] == events[-1].id


@pytest.mark.parametrize(
    ("scenario", "error_type", "status", "words"),
    [
        ("http-401", "upstream_auth_error", 401, "Incorrect API key"),
        ("http-403", "upstream_auth_error", 403, ""),
        ("http-404", "upstream_error", 404, "does not exist"),
        ("http-400", "upstream_error", 400, ""),
        ("http-429", "upstream_rate_limited", 429, ""),
        ("http-500", "upstream_error", 500, ""),
        ("http-503", "upstream_error", 503, ""),
    ],
)
def test_upstream_http_errors_end_in_an_error_event_with_status_and_message(
    client: httpx.Client, scenario: str, error_type: str, status: int, words: str
) -> None:
    _job, events = run_job(client, model=scenario)
    assert_well_formed(events, "error")
    error = events[-1].data["error"]
    assert (error["type"], error["status"]) == (error_type, status)
    assert words in error["message"]


@pytest.mark.parametrize(
    ("scenario", "error_type"),
    [
        ("error-in-stream", "upstream_error"),
        ("error-event", "upstream_error"),
        ("truncated", "upstream_connection_error"),
        ("stall;stall=30", "upstream_timeout"),
        ("silent;stall=30", "upstream_timeout"),
    ],
)
def test_upstream_faults_mid_stream_end_in_an_error_event(
    client: httpx.Client, scenario: str, error_type: str
) -> None:
    _job, events = run_job(client, model=scenario)
    assert_well_formed(events, "error")
    assert events[-1].data["error"]["type"] == error_type
    assert events[-1].data["error"]["message"]


def test_error_inside_the_stream_keeps_the_upstream_message(client: httpx.Client) -> None:
    job, events = run_job(client, model="error-in-stream")
    error = events[-1].data["error"]
    assert error["message"] == "The server had an error while processing your request."
    assert error["code"] == "internal_error"
    poll = client.get(job["url"]).json()
    assert poll["status"] == "failed" and poll["error"] == error


def test_long_history_is_trimmed_to_the_context_window(
    client: httpx.Client, upstream: FakeUpstream
) -> None:
    prompt = unique_prompt()
    filler = "lorem ipsum " * 1500  # ~3000 tokens per message
    history = [{"role": "system", "content": "Be brief."}]
    for i in range(4):
        history += [
            {"role": "user", "content": f"{i} {filler}"},
            {"role": "assistant", "content": f"{i} ok"},
        ]
    history.append({"role": "user", "content": prompt})
    job = create_job(client, model="gpt-4", messages=history, max_tokens=500)
    assert job["truncated_messages"] > 0
    assert job["prompt_tokens"] + 500 <= 8192
    read_stream(client, job["events_url"])
    body = upstream_body(upstream, prompt)
    assert len(body["messages"]) == len(history) - job["truncated_messages"]
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}


def test_idempotency_key_returns_the_same_job(client: httpx.Client) -> None:
    body = {"model": "openai", "messages": [{"role": "user", "content": unique_prompt()}]}
    headers = {"Idempotency-Key": secrets.token_hex(8)}
    first = client.post("/v1/jobs", json=body, headers=headers)
    second = client.post("/v1/jobs", json=body, headers=headers)
    assert first.status_code == second.status_code == 202
    assert first.json()["id"] == second.json()["id"]
    read_stream(client, first.json()["events_url"])


def test_finished_job_keys_expire(client: httpx.Client, settings) -> None:
    from sluice.keys import Keys
    from sluice.redis_client import make_redis

    job, _events = run_job(client)
    keys, r = Keys(settings.key_prefix), make_redis(settings)
    for key in (keys.job(job["id"]), keys.events(job["id"])):
        assert 0 < r.ttl(key) <= settings.job_ttl


def test_unknown_job_is_404_on_every_route(client: httpx.Client) -> None:
    for method, path in [
        ("GET", "/v1/jobs/job_nope"),
        ("GET", "/v1/jobs/job_nope/events"),
        ("POST", "/v1/jobs/job_nope/cancel"),
    ]:
        response = client.request(method, path)
        assert response.status_code == 404
        assert response.json()["error"]["type"] == "not_found"


def test_models_lists_the_upstream_models_with_context_windows(client: httpx.Client) -> None:
    body = client.get("/v1/models").json()
    assert body["object"] == "list"
    by_id = {m["id"]: m for m in body["data"]}
    assert by_id["gpt-4o-mini"]["context_window"] == 128_000


@pytest.mark.parametrize("raw", ["²", "١٢", "𝟙", "+1", "-1", "1e3", " 0x1", "1_0"])
def test_a_cursor_that_is_not_ascii_digits_is_a_400(client: httpx.Client, raw: str) -> None:
    """``str.isdigit()`` accepts "²" and "١٢", which ``int()`` refuses: a 400, not a 500."""
    job, _ = run_job(client)
    by_param = client.get(job["events_url"], params={"after": raw})
    assert by_param.status_code == 400, by_param.text
    assert by_param.json()["error"]["param"] == "after"


def test_a_last_event_id_byte_outside_ascii_is_a_400(gateway_url: str) -> None:
    """A header byte 0xB2 reaches the WSGI app as "²" (headers are latin-1)."""
    with httpx.Client(base_url=gateway_url, timeout=30) as client:
        job, _ = run_job(client)
    request = (
        f"GET {job['events_url']} HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 1\xb2\r\n"
        "Connection: close\r\n\r\n"
    ).encode("latin-1")
    host, port = gateway_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.split()[1] == b"400", answer[:500]
    assert b'"param":"Last-Event-ID"' in rest.replace(b" ", b"")


def test_a_cursor_past_the_end_of_a_running_job_is_gone_at_once(
    client: httpx.Client,
) -> None:
    job = create_job(client, model="slow;delay=0.2;words=40")
    started = time.monotonic()
    response = client.get(job["events_url"], headers={"Last-Event-ID": "1000000000000000"})
    assert response.status_code == 410
    assert response.json()["error"]["type"] == "cursor_gone"
    assert response.json()["error"]["param"] == "Last-Event-ID"
    assert "does not exist" in response.json()["error"]["message"]
    assert time.monotonic() - started < 5
    client.post(f"{job['url']}/cancel")


def with_snapshot(url: str, value: str = "1") -> str:
    return f"{url}{'&' if '?' in url else '?'}snapshot={value}"


def test_a_late_joiner_of_a_finished_job_gets_one_snapshot_then_done(
    client: httpx.Client, upstream: FakeUpstream
) -> None:
    job, full = run_job(client, model="openai;words=400")
    assert len(full) > 400
    poll = client.get(job["url"]).json()
    events = read_stream(client, with_snapshot(job["events_url"]))
    assert [(e.id, e.event) for e in events] == [(full[-2].id, "snapshot"), (full[-1].id, "done")]
    snap = events[0].data
    assert snap["last_event_id"] == full[-2].id
    assert (snap["model"], snap["attempt"]) == ("openai;words=400", 1)
    assert snap["choices"] == [{**poll["choices"][0], "finish_reason": None}]
    assert (
        snap["choices"][0]["content"]
        == text_of(full)
        == expected_reply(upstream_body(upstream, job["prompt"]))
    )
    assert events[1] == full[-1]
    again = read_stream(client, with_snapshot(job["events_url"], "true"))  # from the cache
    assert again == events


def test_a_joiner_mid_stream_gets_the_snapshot_then_the_rest_and_resumes_exactly(
    client: httpx.Client, upstream: FakeUpstream
) -> None:
    prompt = unique_prompt()
    job = create_job(
        client, model="slow;delay=0.01;words=60", messages=[{"role": "user", "content": prompt}]
    )
    wait_for_text(client, job["url"], 30)
    head = read_stream(client, with_snapshot(job["events_url"]), limit=3)
    snap = head[0]
    assert snap.event == "snapshot" and snap.data["last_event_id"] == snap.id
    assert [e.event for e in head[1:]] == ["delta", "delta"]
    assert [e.id for e in head] == [snap.id, snap.id + 1, snap.id + 2]
    # reconnect with the snapshot's id (snapshot=1 is ignored with a cursor): the exact tail
    tail = read_stream(
        client, with_snapshot(job["events_url"]), headers={"Last-Event-ID": str(snap.id)}
    )
    assert tail[:2] == head[1:] and tail[-1].event == "done"
    assert [e.id for e in tail] == list(range(snap.id + 1, snap.id + 1 + len(tail)))
    answer = expected_reply(upstream_body(upstream, prompt))
    assert snap.data["choices"][0]["content"] + text_of(tail) == answer
    assert 0 < len(snap.data["choices"][0]["content"]) < len(answer)
    # and with a later delta's id, as ?after=
    later = read_stream(client, with_snapshot(f"{job['events_url']}?after={head[-1].id}"))
    assert later == tail[2:]


def test_snapshot_with_a_cursor_is_the_plain_replay_and_a_bad_value_is_a_400(
    client: httpx.Client,
) -> None:
    job, full = run_job(client)
    url = with_snapshot(job["events_url"])
    assert read_stream(client, url, headers={"Last-Event-ID": "3"}) == full[3:]
    assert read_stream(client, with_snapshot(f"{job['events_url']}?after=2", "1")) == full[2:]
    assert read_stream(client, with_snapshot(job["events_url"], "0")) == full
    for value in ("yes", "2", ""):
        response = client.get(with_snapshot(job["events_url"], value))
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert (error["type"], error["param"]) == ("invalid_request", "snapshot")
