"""Access keys, job ownership, signed event URLs, rate limits and CORS, on a real stack."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import TypedDict

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from gateway.access import AccessControl
from gateway.access_log import redact_query, redact_url
from sluice.settings import Settings
from tests.helpers.stack import ProcessLogs, Stack
from tests.helpers.support import read_stream, wait_until

pytestmark = pytest.mark.integration
KEY_A = "sk-sluice-a-" + secrets.token_hex(8)
KEY_B = "sk-sluice-b-" + secrets.token_hex(8)


class Body(TypedDict):
    model: str
    messages: list[ChatCompletionMessageParam]


BODY: Body = {"model": "openai", "messages": [{"role": "user", "content": "hello"}]}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def guarded(settings: Settings, process_logs: ProcessLogs) -> Iterator[Stack]:
    stack = Stack(
        settings.with_(
            key_prefix=f"{settings.key_prefix}-acl", queue=f"{settings.queue}-acl",
            access_keys=(KEY_A, KEY_B), rate_limit="5/minute",
            cors_origins=("https://app.example",),
        ),
        process_logs,
        "guarded",
    )  # fmt: skip
    stack.start_worker()
    yield stack
    stack.stop()


def test_the_api_needs_an_access_key_but_health_and_page_do_not(guarded: Stack) -> None:
    with guarded.client() as c:
        for method, path in [("POST", "/v1/jobs"), ("GET", "/v1/models"), ("GET", "/v1/jobs/x")]:
            response = c.request(method, path, json=BODY if method == "POST" else None)
            assert response.status_code == 401, path
            assert response.json()["error"]["type"] == "unauthorized"
        assert c.post("/v1/jobs", json=BODY, headers=bearer("sk-wrong")).status_code == 401
        for path in ["/", "/healthz", "/readyz", "/openapi.json", "/static/sluice.js"]:
            assert c.get(path).status_code == 200, path


def test_a_job_is_visible_only_to_the_key_that_created_it(guarded: Stack) -> None:
    with guarded.client() as c:
        job = c.post("/v1/jobs", json=BODY, headers=bearer(KEY_A)).json()
        for method, path in [
            ("GET", job["url"]),
            ("POST", f"{job['url']}/cancel"),
            ("GET", f"{job['url']}/events"),
        ]:
            response = c.request(method, path, headers=bearer(KEY_B))
            assert response.status_code == 404, path
            assert response.json()["error"]["type"] == "not_found"
        events = read_stream(c, f"{job['url']}/events", headers=bearer(KEY_A))
        assert events[-1].event == "done"
        assert c.get(job["url"], headers=bearer(KEY_A)).json()["status"] == "succeeded"


def test_the_events_url_opens_without_headers_like_an_eventsource(guarded: Stack) -> None:
    with guarded.client() as c:
        job = c.post("/v1/jobs", json=BODY, headers=bearer(KEY_A)).json()
        assert "token=" in job["events_url"]
        events = read_stream(c, job["events_url"])  # no Authorization header
        assert events[-1].event == "done"
        other = c.post("/v1/jobs", json=BODY, headers=bearer(KEY_A)).json()
        token = job["events_url"].split("token=")[1]
        reused = c.get(f"{other['url']}/events?token={token}")
        assert reused.status_code == 404  # a token opens its own job only
        assert c.get(f"{job['url']}/events?token={token[:-2]}xx").status_code == 404
        assert c.get(f"{job['url']}/events").status_code == 401


def test_expired_event_tokens_are_refused(settings: Settings) -> None:
    access = AccessControl(settings.with_(access_keys=(KEY_A,)))
    token = access.events_token("job_x", "owner")
    assert token and access.events_token_owner("job_x", token) == "owner"
    access.token_ttl = -1
    assert access.events_token_owner("job_x", token) is None


def test_the_openai_sdk_uses_its_api_key_as_the_access_key(guarded: Stack) -> None:
    good = openai.OpenAI(base_url=f"{guarded.url}/v1", api_key=KEY_B, max_retries=0)
    reply = good.chat.completions.create(**BODY)
    assert reply.choices[0].message.content
    bad = openai.OpenAI(base_url=f"{guarded.url}/v1", api_key="sk-nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(**BODY)


def test_rate_limits_apply_per_client_key(guarded: Stack) -> None:
    with guarded.client() as c:
        # a fresh key of its own: the limit is 5 per minute per key
        statuses = []
        for _ in range(7):
            r = c.post("/v1/keys/verify", json={"api_key": "sk-x"}, headers=bearer(KEY_A))
            statuses.append(r.status_code)
        assert statuses.count(429) >= 1 and statuses[0] == 200
        assert r.status_code == 429 and r.json()["error"]["type"] == "rate_limited"
        assert int(r.headers["retry-after"]) > 0
        # another key has its own budget
        assert (
            c.post("/v1/keys/verify", json={"api_key": "x"}, headers=bearer(KEY_B)).status_code
            == 200
        )


def test_cors_allows_the_configured_origin_only(guarded: Stack) -> None:
    with guarded.client() as c:
        preflight = c.options(
            "/v1/jobs",
            headers={
                "Origin": "https://app.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )
        assert preflight.headers["access-control-allow-origin"] == "https://app.example"
        assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
        job = c.post(
            "/v1/jobs", json=BODY, headers={**bearer(KEY_B), "Origin": "https://app.example"}
        )
        assert "x-sluice-job-id" in job.headers["access-control-expose-headers"].lower()
        evil = c.options(
            "/v1/jobs",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
        assert "access-control-allow-origin" not in evil.headers
        # the AI SDK's routes too, for a useChat page on another origin
        for path in ("/api/chat", "/api/chat/some-chat/stop", "/v1/responses"):
            preflight = c.options(
                path,
                headers={
                    "Origin": "https://app.example",
                    "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "authorization,content-type",
                },
            )
            assert preflight.headers["access-control-allow-origin"] == "https://app.example"


def test_the_responses_and_ai_sdk_routes_are_rate_limited_too(guarded: Stack) -> None:
    """Each route that starts jobs has the limit (5 per minute per key here), answered in
    its API's error shape."""
    with guarded.client() as c:
        for path in ("/v1/responses", "/api/chat"):
            statuses = [
                c.post(path, json={"bad": True}, headers=bearer(KEY_B)).status_code
                for _ in range(6)
            ]
            assert statuses[:5] == [400] * 5 and statuses[5] == 429, (path, statuses)
        limited = c.post("/v1/responses", json={}, headers=bearer(KEY_B))
        assert limited.json()["error"]["type"] == "rate_limit_exceeded"
        assert int(limited.headers["retry-after"]) > 0


def test_the_access_log_holds_no_event_token(guarded: Stack) -> None:
    with guarded.client() as c:
        job = c.post("/v1/jobs", json=BODY, headers=bearer(KEY_A)).json()
        token = job["events_url"].split("token=")[1]
        read_stream(c, job["events_url"])
        # Werkzeug decodes parameter names too: the disguised name opens the stream as well
        assert c.get(job["events_url"].replace("token=", "%74oken=")).status_code == 200
    assert guarded.gateway.process is not None
    log_path = guarded.gateway.process.log_path

    def logged() -> list[str]:
        lines = log_path.read_text(errors="replace").splitlines()
        return [line for line in lines if f"/v1/jobs/{job['id']}/events" in line]

    wait_until(lambda: len(logged()) >= 2, 10)
    assert token not in log_path.read_text(errors="replace")
    assert all("oken=[redacted] HTTP/1.1" in line for line in logged()), logged()


@pytest.mark.parametrize(
    ("query", "redacted"),
    [
        ("token=abc.def&after=3", "token=[redacted]&after=3"),
        ("after=3;TOKEN=abc", "after=3;TOKEN=[redacted]"),
        ("%74oken=abc", "%74oken=[redacted]"),
        ("tokens=keep&atoken=keep", "tokens=keep&atoken=keep"),
        ("", ""),
    ],
)
def test_secret_query_parameters_are_redacted(query: str, redacted: str) -> None:
    assert redact_query(query) == redacted
    assert redact_url(f"GET /v1/jobs/j/events?{query} HTTP/1.1") == (
        f"GET /v1/jobs/j/events?{redacted} HTTP/1.1"
    )


def test_chat_completions_events_url_is_signed_like_a_jobs(guarded: Stack) -> None:
    """The X-Sluice-Events-Url of /v1/chat/completions opens without headers, as an
    EventSource must (it was built by hand, without the token)."""
    with guarded.client() as c:
        body = {**BODY, "messages": [{"role": "user", "content": "signed url"}]}
        response = c.post("/v1/chat/completions", json=body, headers=bearer(KEY_A))
        assert response.status_code == 200
        events_url = response.headers["X-Sluice-Events-Url"]
        assert "token=" in events_url
        events = read_stream(c, events_url)  # no Authorization header
        assert events[-1].event == "done"
        assert events[0].event == "started"
