"""Bounded resources per client, and no server-side request forgery, on the running stack
(issue #19): real gunicorn gateways with the real ``gunicorn.conf.py``, a real Celery
worker, the real Redis and the fake upstream over HTTP.

One worker serves three gateways of this module (one gunicorn process each, so a
per-process limit is the gateway's limit):

- ``forged``: ``SLUICE_PROXY_HOPS=0`` and a rate limit of 5 a minute: ``X-Forwarded-For``
  is not trusted, so rotating it gains nothing;
- ``proxied``: one trusted proxy hop, the same rate limit, at most 2 streams per client,
  a 200 kB body limit and every vendor parameter forwarded (``*``: the strongest case for
  the SSRF claims: even forwarded, no field redirects the upstream). Each test speaks as
  a client address of its own (the proxy's ``X-Forwarded-For``), so their budgets do not
  mix;
- ``keyed``: access keys on, at most 2 streams per key.

What other files prove already, and this one does not repeat: body size, message shapes
and bad JSON through Flask's test client (``tests/redis/test_api_validation.py``), no
input making the gateway fail (``tests/integration/test_fuzz_api.py``), rate limits per
access key (``tests/integration/test_access.py``).
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import secrets
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from devtools.fake_upstream import FakeUpstream
from sluice.settings import Settings
from tests.helpers.stack import LoggedProcess, ProcessLogs, RestartableGateway, start_worker
from tests.helpers.support import free_port, read_stream, wait_until

pytestmark = pytest.mark.integration

KEY_A = "sk-bounds-a-" + secrets.token_hex(8)
KEY_B = "sk-bounds-b-" + secrets.token_hex(8)
STREAM_LIMIT = 2
RATE_LIMIT = 5  # a minute
BODY_LIMIT = 200_000
LONG = "slow;words=4000;delay=0.05"  # 200 s of deltas: a stream that stays open
_addresses = itertools.count(1)


def address() -> str:
    """A client address of its own, as the trusted proxy reports it (``proxied``)."""
    n = next(_addresses)
    return f"10.{secrets.randbelow(200)}.{n // 250}.{n % 250 + 1}"


def via_proxy(ip: str | None = None, **headers: str) -> dict[str, str]:
    return {"X-Forwarded-For": ip or address(), **headers}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@dataclass
class Gateways:
    forged: str
    proxied: str
    keyed: str


@pytest.fixture(scope="module")
def module_settings(settings: Settings) -> Settings:
    run = secrets.token_hex(3)
    return settings.with_(
        key_prefix=f"{settings.key_prefix}-bounds-{run}", queue=f"{settings.queue}-bounds-{run}"
    )


@pytest.fixture(scope="module")
def gateways(module_settings: Settings, process_logs: ProcessLogs) -> Iterator[Gateways]:
    """The worker and the three gateways, started side by side (each takes seconds)."""
    base = module_settings.with_(max_streams_per_client=STREAM_LIMIT)
    variants = {
        "forged": base.with_(rate_limit=f"{RATE_LIMIT}/minute"),
        "proxied": base.with_(
            proxy_hops=1,
            rate_limit=f"{RATE_LIMIT}/minute",
            max_body_bytes=BODY_LIMIT,
            vendor_parameters=("*",),
        ),
        "keyed": base.with_(access_keys=(KEY_A, KEY_B)),
    }
    gateways = {
        name: RestartableGateway(settings, process_logs, free_port(), name=f"bounds-{name}")
        for name, settings in variants.items()
    }
    worker: LoggedProcess | None = None
    try:
        with ThreadPoolExecutor(4) as pool:
            started = pool.submit(start_worker, module_settings, process_logs, "bounds-worker")
            list(pool.map(RestartableGateway.start, gateways.values()))
            worker = started.result()
        yield Gateways(**{name: gateway.url for name, gateway in gateways.items()})
    finally:  # all stopped together: each takes seconds to shut down
        processes = [g.process for g in gateways.values()] + [worker]
        running = [p for p in processes if p is not None and p.poll() is None]
        for process in running:
            os.killpg(process.pid, signal.SIGTERM)
        for process in running:
            with contextlib.suppress(Exception):
                process.wait(15)


@pytest.fixture(scope="module")
def proxied(gateways: Gateways) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateways.proxied, timeout=30) as client:
        yield client


# -- 1. rate limits are not bypassed through X-Forwarded-For ---------------------------------


def verify(client: httpx.Client, headers: dict[str, str]) -> int:
    """A request to a rate-limited route that costs the upstream nothing."""
    return client.post("/v1/keys/verify", json={"api_key": "sk-x"}, headers=headers).status_code


def test_rotating_a_forged_x_forwarded_for_does_not_escape_the_rate_limit(
    gateways: Gateways,
) -> None:
    with httpx.Client(base_url=gateways.forged, timeout=30) as c:
        statuses = [verify(c, {"X-Forwarded-For": f"203.0.113.{i}"}) for i in range(RATE_LIMIT + 2)]
    assert statuses[:RATE_LIMIT] == [200] * RATE_LIMIT
    assert statuses[RATE_LIMIT:] == [429, 429], statuses


def test_behind_a_trusted_hop_the_client_it_names_is_limited_and_others_are_not(
    proxied: httpx.Client,
) -> None:
    client, other = address(), address()
    # what the client forges comes first; the trusted proxy appends the address it saw
    statuses = [
        verify(proxied, {"X-Forwarded-For": f"198.51.100.{i}, {client}"})
        for i in range(RATE_LIMIT + 1)
    ]
    assert statuses == [200] * RATE_LIMIT + [429], statuses
    assert verify(proxied, via_proxy(other)) == 200


# -- 2. open streams per client are bounded --------------------------------------------------


@dataclass
class LongJobs:
    """Jobs that stream for minutes, to hold streams open on: one created through the
    Responses API (background), one a conversation's turn."""

    job_id: str
    response_id: str
    conversation: str
    conversation_job: str


def cancel_quietly(client: httpx.Client, path: str, headers: dict[str, str]) -> None:
    with contextlib.suppress(httpx.HTTPError):
        client.post(path, headers=headers)


@pytest.fixture(scope="module")
def long_jobs(proxied: httpx.Client) -> Iterator[LongJobs]:
    owner = via_proxy()  # keys are off: any client may follow these jobs
    response = proxied.post(
        "/v1/responses",
        json={"model": LONG, "input": "a long answer", "background": True},
        headers=owner,
    )
    assert response.status_code == 200, response.text
    conversation = f"bounds-{secrets.token_hex(4)}"
    turn = proxied.post(
        "/v1/jobs",
        json={
            "model": LONG,
            "conversation_id": conversation,
            "messages": [{"role": "user", "content": "a long turn"}],
        },
        headers=owner,
    )
    assert turn.status_code == 202, turn.text
    jobs = LongJobs(
        response.headers["x-sluice-job-id"], response.json()["id"], conversation, turn.json()["id"]
    )
    yield jobs
    cancel_quietly(proxied, f"/v1/jobs/{jobs.job_id}/cancel", owner)
    cancel_quietly(proxied, f"/v1/jobs/{jobs.conversation_job}/cancel", owner)


@contextlib.contextmanager
def open_stream(
    client: httpx.Client, path: str, headers: dict[str, str]
) -> Iterator[httpx.Response]:
    """A stream held open (its first bytes read, so the server has answered) until the
    block ends, when the client closes its connection mid-stream, as a closed tab does."""
    with client.stream("GET", path, headers=headers) as response:
        assert response.status_code == 200, response.read()
        # the iterator stays referenced until the block ends: an abandoned one, once the
        # garbage collector finds it, closes the connection under the stream
        chunks = response.iter_bytes()
        next(chunks)
        yield response
        del chunks


def attempt(
    client: httpx.Client, method: str, path: str, headers: dict[str, str], body: Any = None
) -> httpx.Response:
    """One more stream's answer, its body read only when it is not a stream: a stream let
    through by mistake fails the test's assertion at once instead of being read to its
    end."""
    with client.stream(method, path, json=body, headers=headers) as response:
        if response.status_code != 200:
            response.read()
    return response


def ui_body(chat: str) -> dict[str, Any]:
    message = {"id": "u-1", "role": "user", "parts": [{"type": "text", "text": "hi"}]}
    return {"id": chat, "messages": [message], "trigger": "submit-message", "model": LONG}


def refusals(jobs: LongJobs) -> list[tuple[str, str, Any]]:
    """Every streaming route, and every route that waits for a job's answer, as (method,
    path, JSON body): one more stream each."""
    prompt = [{"role": "user", "content": f"never started {secrets.token_hex(4)}"}]
    return [
        ("GET", f"/v1/jobs/{jobs.job_id}/events", None),
        ("POST", "/v1/jobs", {"model": LONG, "messages": prompt, "stream": True}),
        ("POST", "/v1/chat/completions", {"model": LONG, "messages": prompt, "stream": True}),
        # the answers a client waits for hold a connection as long: counted alike
        ("POST", "/v1/chat/completions", {"model": LONG, "messages": prompt}),
        ("POST", "/v1/responses", {"model": LONG, "input": "never started", "stream": True}),
        ("POST", "/v1/responses", {"model": LONG, "input": "never started"}),
        ("GET", f"/v1/responses/{jobs.response_id}?stream=true", None),
        ("POST", "/api/chat", ui_body(f"bounds-chat-{secrets.token_hex(3)}")),
        ("GET", f"/api/chat/{jobs.conversation}/stream", None),
        ("GET", f"/v1/conversations/{jobs.conversation}/events", None),
    ]


def test_one_stream_past_the_limit_is_refused_on_every_streaming_route_and_starts_no_job(
    proxied: httpx.Client, long_jobs: LongJobs, upstream: FakeUpstream
) -> None:
    client = via_proxy()
    events = f"/v1/jobs/{long_jobs.job_id}/events"
    seen_before = len(upstream.requests)
    with open_stream(proxied, events, client), open_stream(proxied, events, client):
        for method, path, body in refusals(long_jobs):
            response = attempt(proxied, method, path, client, body)
            assert response.status_code == 429, (path, response.status_code)
            assert int(response.headers["retry-after"]) > 0, path
            error = response.json()["error"]
            # Sluice's shape on its routes, OpenAI's (code) on the OpenAI-compatible ones
            assert "too_many_streams" in (error["type"], error.get("code")), (path, error)
            assert "limit is 2" in error["message"], (path, error)
            assert "x-sluice-job-id" not in response.headers, path  # no job was created
        # another client (another address behind the proxy) is unaffected
        with open_stream(proxied, events, via_proxy()):
            pass
    time.sleep(0.5)
    never = [r for r in upstream.requests[seen_before:] if "never started" in json.dumps(r.body)]
    assert never == []  # nothing refused reached the queue, let alone the upstream


def test_a_closed_or_abandoned_stream_frees_its_place(
    proxied: httpx.Client, long_jobs: LongJobs
) -> None:
    client = via_proxy()
    events = f"/v1/jobs/{long_jobs.job_id}/events"
    conversation = f"/v1/conversations/{long_jobs.conversation}/events"
    with open_stream(proxied, events, client):
        with open_stream(proxied, conversation, client):
            assert attempt(proxied, "GET", events, client).status_code == 429
        # the client dropped that connection mid-stream: the server notices on its next
        # write (the job's next delta here; a heartbeat at the latest) and frees the place

        def reopens() -> bool:
            with proxied.stream("GET", events, headers=client) as response:
                return response.status_code == 200

        wait_until(reopens, 10)


def test_with_access_keys_each_key_has_its_own_limit(gateways: Gateways) -> None:
    with httpx.Client(base_url=gateways.keyed, timeout=30) as c:
        job = c.post(
            "/v1/jobs",
            json={"model": LONG, "messages": [{"role": "user", "content": "keyed"}]},
            headers=bearer(KEY_A),
        ).json()
        events = f"{job['url']}/events"
        try:
            with open_stream(c, events, bearer(KEY_A)), open_stream(c, events, bearer(KEY_A)):
                refused = attempt(c, "GET", events, bearer(KEY_A))
                assert refused.status_code == 429
                assert refused.json()["error"]["type"] == "too_many_streams"
                # the events URL's signed token is the same key: counted with it
                assert attempt(c, "GET", job["events_url"], {}).status_code == 429
                # another key, from the same address, streams
                other = c.post(
                    "/v1/jobs",
                    json={
                        "model": "openai",
                        "stream": True,
                        "messages": [{"role": "user", "content": "hi"}],
                    },
                    headers=bearer(KEY_B),
                )
                assert other.status_code == 200 and "event: done" in other.text
        finally:
            cancel_quietly(c, f"{job['url']}/cancel", bearer(KEY_A))


# -- 3. bounded input ------------------------------------------------------------------------

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(24)).decode()


def image(url: str) -> list[dict[str, Any]]:
    return [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "what is it?"},
                {"type": "image_url", "image_url": {"url": url}},
            ],
        }
    ]


def chat(messages: list[dict[str, Any]]) -> dict[str, Any]:
    return {"model": "openai", "messages": messages}


@dataclass
class Finished:
    """A job that ended (a conversation's turn) and a Responses response that ended."""

    job_id: str
    last_event_id: int
    conversation: str
    response_id: str


@pytest.fixture(scope="module")
def finished(proxied: httpx.Client) -> Finished:
    conversation = f"done-{secrets.token_hex(4)}"
    body = {
        "model": "openai;words=3",
        "conversation_id": conversation,
        "stream": True,
        "messages": [{"role": "user", "content": "short"}],
    }
    seen: dict[str, str] = {}
    events = read_stream(proxied, "/v1/jobs", via_proxy(), body=body, seen=seen)
    assert events[-1].event == "done"
    response = proxied.post(
        "/v1/responses", json={"model": "openai;words=3", "input": "short"}, headers=via_proxy()
    )
    assert response.status_code == 200 and response.json()["status"] == "completed"
    return Finished(seen["x-sluice-job-id"], events[-1].id, conversation, response.json()["id"])


HUGE = str(10**40)


def input_cases(done: Finished) -> list[tuple[str, str, dict[str, str], Any, int, str]]:
    """(method, path, headers, JSON body, status, what the message says)."""
    job, conv, resp = done.job_id, done.conversation, done.response_id
    past = str(done.last_event_id + 1000)
    big = chat([{"role": "user", "content": "x" * (BODY_LIMIT + 1000)}])
    many = chat([{"role": "user", "content": "hi"}] * 4097)
    responses_image = {
        "model": "openai",
        "input": [
            {
                "role": "user",
                "content": [
                    {"type": "input_image", "image_url": "data:image/png;base64,@@not-base64@@"}
                ],
            }
        ],
    }
    ui_image = {
        "id": "c-img",
        "trigger": "submit-message",
        "messages": [
            {
                "id": "u",
                "role": "user",
                "parts": [
                    {"type": "file", "mediaType": "image/png", "url": "data:image/png;base64,%%%"}
                ],
            }
        ],
    }
    ev = f"/v1/jobs/{job}/events"
    cev = f"/v1/conversations/{conv}/events"
    rev = f"/v1/responses/{resp}?stream=true&starting_after="
    return [
        # the body and the messages
        ("POST", "/v1/jobs", {}, big, 413, "larger than allowed"),
        ("POST", "/v1/jobs", {}, many, 400, "messages"),
        # image data URLs: the body limit bounds their size; their data must be base64
        (
            "POST",
            "/v1/jobs",
            {},
            chat(image("data:image/png;base64,@@not-base64@@")),
            400,
            "not valid base64",
        ),
        ("POST", "/v1/jobs", {}, chat(image("data:image/png;base64,")), 400, "not valid base64"),
        (
            "POST",
            "/v1/jobs",
            {},
            chat(image("data:image/png;base64,iVBOR")),
            400,
            "not valid base64",
        ),
        ("POST", "/v1/jobs", {}, chat(image(f"data:text/html;base64,{PNG}")), 400, "data URL"),
        (
            "POST",
            "/v1/chat/completions",
            {},
            chat(image("data:image/png;base64,a b")),
            400,
            "not valid base64",
        ),
        ("POST", "/v1/responses", {}, responses_image, 400, "not valid base64"),
        ("POST", "/api/chat", {}, ui_image, 400, "not valid base64"),
        # cursors: not a number, negative, huge, past the log
        *[
            ("GET", ev, {"Last-Event-ID": bad}, None, 400, "non-negative integer")
            for bad in ("abc", "-1", HUGE, "1e3", "0x10")
        ],
        *[
            ("GET", f"{ev}?after={bad}", {}, None, 400, "non-negative integer")
            for bad in ("abc", "-5", HUGE, "١٢")
        ],
        ("GET", ev, {"Last-Event-ID": past}, None, 410, "does not exist"),
        ("GET", f"{ev}?after={past}", {}, None, 410, "does not exist"),
        *[
            ("GET", cev, {"Last-Event-ID": bad}, None, 400, "event id of this stream")
            for bad in ("abc", f"{job}/-1", f"{job}/{HUGE}")
        ],
        ("GET", cev, {"Last-Event-ID": f"{job}/{past}"}, None, 410, "does not exist"),
        *[("GET", rev + bad, {}, None, 400, "sequence number") for bad in ("abc", "-1", HUGE)],
        ("GET", rev + past, {}, None, 400, "past the last event"),
    ]


def test_oversized_malformed_and_out_of_range_input_is_a_clear_4xx(
    proxied: httpx.Client, finished: Finished
) -> None:
    """One table: each row's status and the words its message must say, never a 500."""
    failures = []
    for method, path, headers, body, status, words in input_cases(finished):
        response = proxied.request(method, path, json=body, headers=via_proxy(**headers))
        error = response.json().get("error", {}) if response.content else {}
        if response.status_code != status or words not in str(error.get("message")):
            failures.append((method, path[:60], headers, response.status_code, response.text[:200]))
    assert failures == []


def test_oversized_headers_get_a_4xx_from_gunicorn_and_the_process_keeps_serving(
    gateways: Gateways, finished: Finished
) -> None:
    """gunicorn's own limits (``gunicorn.conf.py`` keeps its defaults: a header line of
    8190 bytes, 100 header fields, a request line of 4094 bytes) answer before the app."""
    url = gateways.proxied
    events = f"{url}/v1/jobs/{finished.job_id}/events"
    cases = [
        ("GET", events, {"Last-Event-ID": "1" * 9000}),
        ("GET", f"{url}/healthz", {"X-Big": "x" * 9000}),
        ("GET", f"{url}/healthz", {f"X-Many-{i}": "1" for i in range(120)}),
        ("GET", f"{url}/healthz?{'q' * 5000}", {}),
    ]
    for method, target, headers in cases:
        response = httpx.request(method, target, headers=headers, timeout=10)
        assert 400 <= response.status_code < 500, (target[:80], response.status_code)
    assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200
    at_end = {"Last-Event-ID": str(finished.last_event_id)}
    assert httpx.get(events, headers=at_end, timeout=10).status_code == 204  # the app too


# -- 4. no server-side request forgery ---------------------------------------------------


class Canary:
    """An HTTP server on 127.0.0.1 that records every request it gets, and answers each
    with a tiny PNG (so nothing would fail loudly if something did fetch it)."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        hits = self.hits

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                hits.append(f"{self.command} {self.path}")
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.end_headers()
                self.wfile.write(base64.b64decode(PNG))

            do_GET = do_POST = do_HEAD = do_PUT = _any

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def canary() -> Iterator[Canary]:
    server = Canary()
    yield server
    server.close()


def received(upstream: FakeUpstream, tag: str) -> dict[str, Any]:
    """The chat request the fake upstream received that carries ``tag``."""
    wait_until(lambda: any(tag in json.dumps(r.body) for r in upstream.requests), 20)
    return next(r.body or {} for r in upstream.requests if tag in json.dumps(r.body))


def test_urls_and_redirecting_fields_in_requests_are_forwarded_never_fetched(
    proxied: httpx.Client, canary: Canary, upstream: FakeUpstream
) -> None:
    tag = secrets.token_hex(4)
    image_url = f"{canary.url}/x.png?{tag}"
    redirects = {
        "base_url": canary.url,
        "api_base": canary.url,
        "openai_base_url": canary.url,
        "endpoint": f"{canary.url}/v1/chat/completions",
        "url": canary.url,
    }
    headers = {
        "X-Upstream-Base-Url": canary.url,
        "X-Openai-Base-Url": canary.url,
        "X-Forwarded-Host": canary.url.removeprefix("http://"),
        "Forwarded": f"host={canary.url}",
        "X-Original-Url": f"{canary.url}/",
        "Referer": f"{canary.url}/",
    }
    parts = [
        {"type": "text", "text": f"jobs {tag}"},
        {"type": "image_url", "image_url": {"url": image_url, "detail": "high"}},
        {"type": "file", "file": {"file_data": f"{canary.url}/doc.pdf", "filename": "d.pdf"}},
        {"type": "file", "file": {"file_id": f"{canary.url}/file-1"}},
    ]
    body = {
        "model": f"{canary.url}/",
        "messages": [{"role": "user", "content": parts}],
        "stream": True,
        **redirects,
    }
    events = read_stream(proxied, "/v1/jobs", via_proxy(**headers), body=body)
    assert events[-1].event == "done", events[-1]
    sent = received(upstream, f"jobs {tag}")
    assert sent["messages"][-1]["content"][1:] == parts[1:]  # the URLs, verbatim
    assert sent["model"] == f"{canary.url}/"
    assert {k: sent[k] for k in redirects} == redirects  # forwarded as fields, not followed

    completion = proxied.post(
        "/v1/chat/completions",
        headers=via_proxy(**headers),
        json={
            "model": "openai",
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": f"completions {tag}"},
                        {"type": "image_url", "image_url": {"url": image_url}},
                    ],
                }
            ],
        },
    )
    assert completion.status_code == 200, completion.text
    assert received(upstream, f"completions {tag}")["messages"][-1]["content"][1] == {
        "type": "image_url",
        "image_url": {"url": image_url},
    }

    response = proxied.post(
        "/v1/responses",
        headers=via_proxy(**headers),
        json={
            "model": "openai",
            "input": [
                {
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": f"responses {tag}"},
                        {"type": "input_image", "image_url": image_url},
                        {
                            "type": "input_file",
                            "file_data": f"{canary.url}/r.pdf",
                            "filename": "r.pdf",
                        },
                    ],
                }
            ],
        },
    )
    assert response.status_code == 200, response.text
    content = received(upstream, f"responses {tag}")["messages"][-1]["content"]
    assert {"type": "image_url", "image_url": {"url": image_url}} in content

    ui = {
        "id": f"ssrf-{tag}",
        "trigger": "submit-message",
        "messages": [
            {
                "id": "u",
                "role": "user",
                "parts": [
                    {"type": "text", "text": f"ui {tag}"},
                    {"type": "file", "mediaType": "image/png", "url": image_url},
                ],
            }
        ],
    }
    answer = proxied.post("/api/chat", json=ui, headers=via_proxy(**headers))
    assert answer.status_code == 200 and '"type":"finish"' in answer.text.replace(" ", "")
    content = received(upstream, f"ui {tag}")["messages"][-1]["content"]
    assert {"type": "image_url", "image_url": {"url": image_url}} in content

    time.sleep(0.5)  # (a fetch, had there been one, would have come by now)
    assert canary.hits == []


def test_key_verification_and_model_listing_ask_only_the_configured_upstream(
    proxied: httpx.Client, canary: Canary, upstream: FakeUpstream
) -> None:
    headers = via_proxy(
        **{
            "X-Upstream-Base-Url": canary.url,
            "X-Forwarded-Host": canary.url.removeprefix("http://"),
        }
    )
    asked = len(upstream.requests)
    verdict = proxied.post("/v1/keys/verify", json={"api_key": f"{canary.url}/"}, headers=headers)
    assert verdict.status_code == 200 and verdict.json() == {"valid": False}
    models = proxied.get(
        f"/v1/models?base_url={canary.url}", headers={**headers, "X-Upstream-Api-Key": "sk-own"}
    )
    assert models.status_code == 401  # the fake upstream refused that key: it was asked
    paths = [r.path for r in upstream.requests[asked:]]
    assert paths.count("/v1/models") == 2, paths
    time.sleep(0.3)
    assert canary.hits == []


def test_an_upstream_redirect_is_an_error_never_followed(
    proxied: httpx.Client, canary: Canary, upstream: FakeUpstream
) -> None:
    """What the configured upstream answers cannot send the worker elsewhere either: a
    307 (a proxy in front of the provider, or a compromised one) would have ``requests``
    repeat the request, body and all, at its ``Location``. Here it fails the job."""
    target = f"{canary.url}/v1/chat/completions"
    job = proxied.post(
        "/v1/jobs",
        json={"model": f"redirect;to={target}", "messages": [{"role": "user", "content": "x"}]},
    ).json()
    events = read_stream(proxied, job["events_url"])
    assert events[-1].event == "error", [e.event for e in events]
    assert events[-1].data["error"]["status"] == 307
    time.sleep(0.3)
    assert canary.hits == []
