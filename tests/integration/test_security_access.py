"""Issue #19, access keys, job isolation by key and signed event tokens, on a real stack.

One stack for the module: a Celery worker and two gunicorn gateways (one at log level
INFO, one at DEBUG, both with the access log on, as in production), access keys on, on
the real Redis and the fake upstream. What ``test_access.py`` already proves (a job's
three routes isolated, a job's token refused on another job, a tampered token, the access
log's redaction of one stream) is not repeated; this module proves the claims for every
route the app has, derived from its ``url_map`` so that a route added later is covered
(or fails the test until it is).
"""

from __future__ import annotations

import http.client
import secrets
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from flask import Flask
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from werkzeug.routing import Rule

from gateway import create_app
from gateway.access import PUBLIC_PREFIXES, TOKEN_ROUTES, owner_id
from sluice.settings import Settings
from tests.helpers.stack import (
    LoggedProcess,
    ProcessLogs,
    stack_env,
    start_worker,
    stop_processes,
    wait_ready,
)
from tests.helpers.support import ROOT, free_port, wait_until

pytestmark = pytest.mark.integration
KEY_A = "sk-sluice-a-" + secrets.token_hex(8)
KEY_B = "sk-sluice-b-" + secrets.token_hex(8)
A = {"Authorization": f"Bearer {KEY_A}"}
B = {"Authorization": f"Bearer {KEY_B}"}
MAX_JOB_AGE = 600  # SLUICE_MAX_JOB_AGE of the stack: the events tokens' lifetime
SLOW = "slow;words=400;delay=0.05"  # 20 s of answer: running while the probes run
FAST = "openai"
SALT = "sluice-events"  # gateway.access signs event tokens with this salt


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


# -- the stack ------------------------------------------------------------------------------


@dataclass
class Guarded:
    """The module's stack: its settings, its gateways by log level, every process."""

    settings: Settings
    urls: dict[str, str]  # "info", "debug" -> base URL
    processes: list[LoggedProcess] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.urls["info"]

    def client(self, level: str = "info") -> httpx.Client:
        return httpx.Client(base_url=self.urls[level], timeout=30)

    def log_paths(self) -> list[Path]:
        return [p.log_path for p in self.processes]


def start_logged_gateway(
    settings: Settings, logs: ProcessLogs, name: str, level: str
) -> tuple[LoggedProcess, str]:
    """A gunicorn gateway as the Procfile starts it, with the access log on (its default;
    ``start_gateway`` turns it off) at ``level``."""
    port = free_port()
    env = stack_env(
        settings, PORT=str(port), WEB_CONCURRENCY="1", SLUICE_ACCESS_LOG="1",
        SLUICE_LOG_LEVEL=level, SLUICE_MAX_JOB_AGE=str(MAX_JOB_AGE),
    )  # fmt: skip
    cmd = [
        sys.executable, "-m", "gunicorn", "--no-control-socket", "--config", "gunicorn.conf.py",
        "gateway.wsgi:app",
    ]  # fmt: skip
    process, _path = logs.start(name, cmd, env, cwd=ROOT)
    return process, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def guarded(settings: Settings, process_logs: ProcessLogs) -> Iterator[Guarded]:
    run = f"secacc-{secrets.token_hex(3)}"
    stack_settings = settings.with_(
        key_prefix=f"{settings.key_prefix}-{run}", queue=f"{settings.queue}-{run}",
        access_keys=(KEY_A, KEY_B), max_job_age=MAX_JOB_AGE,
    )  # fmt: skip
    # both gateways boot while the worker does: the stack is up in one start's time
    gateways = {
        level: start_logged_gateway(stack_settings, process_logs, f"{run}-gateway-{level}", level)
        for level in ("INFO", "DEBUG")
    }
    worker = start_worker(
        stack_settings, process_logs, f"{run}-worker", {"SLUICE_MAX_JOB_AGE": str(MAX_JOB_AGE)}
    )
    for process, url in gateways.values():
        wait_ready(url, process, process.log_path)
    stack = Guarded(
        stack_settings,
        {level.lower(): url for level, (_p, url) in gateways.items()},
        [worker, *(p for p, _url in gateways.values())],
    )
    yield stack
    stop_processes(stack.processes)


@pytest.fixture(scope="module")
def app(guarded: Guarded) -> Flask:
    """The gateway's Flask app, built by the factory gunicorn's ``gateway.wsgi`` calls, for
    its ``url_map``: the routes the tests enumerate are the ones the gateway serves."""
    return create_app(guarded.settings)


def api_rules(app: Flask) -> list[Rule]:
    """Every rule of the app that is not public (``gateway.access.PUBLIC_PREFIXES`` and
    the page at ``/``)."""
    return [
        rule
        for rule in app.url_map.iter_rules()
        if rule.rule != "/" and not rule.rule.startswith(PUBLIC_PREFIXES)
    ]


def methods_of(rule: Rule) -> list[str]:
    return sorted((rule.methods or set()) - {"HEAD", "OPTIONS"})


def build(app: Flask, rule: Rule, method: str, values: dict[str, str]) -> str:
    return app.url_map.bind("gateway").build(rule.endpoint, values, method=method)


def first_bytes(response: httpx.Response) -> str:
    """A response's body, or for an open event stream only that it is one: a stream that
    should not have opened must not hang the test until its job ends."""
    if response.status_code == 200 and "event-stream" in response.headers.get("content-type", ""):
        return "<event stream>"
    return response.read().decode(errors="replace")


def call(
    c: httpx.Client,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
) -> tuple[int, str]:
    body = {} if method == "POST" else None
    with c.stream(method, path, headers=headers, params=params, json=body) as response:
        return response.status_code, first_bytes(response)


# -- claim 1: every non-public route needs a key ------------------------------------------


def test_every_api_route_without_a_valid_key_is_a_401(app: Flask, guarded: Guarded) -> None:
    """Derived from ``url_map``: each method of each non-public route, with no key, with a
    wrong key, and with a key that differs from a real one only in its last character."""
    rules = api_rules(app)
    assert {r.rule.split("/")[1] for r in rules} == {"v1", "api"}, [r.rule for r in rules]
    assert any(r.rule == "/api/chat" for r in rules)
    near_miss = KEY_A[:-1] + ("0" if KEY_A[-1] != "0" else "1")
    tried = 0
    with guarded.client() as c:
        for rule in rules:
            values = {name: f"x{secrets.token_hex(4)}" for name in rule.arguments}
            for method in methods_of(rule):
                path = build(app, rule, method, values)
                for headers in ({}, {"Authorization": "Bearer sk-wrong"},
                                {"Authorization": f"Bearer {near_miss}"}):  # fmt: skip
                    status, body = call(c, method, path, headers)
                    assert status == 401, (method, path, headers, body)
                    assert '"error"' in body, body
                    tried += 1
                if method == "GET":  # HEAD runs the GET view: it needs the key too
                    assert c.head(path).status_code == 401, path
    assert tried >= 3 * 19  # today's 19 route methods: the enumeration did not come up short


# -- claim 2: every id-bearing route isolates by key ---------------------------------------


@dataclass(frozen=True)
class Probe:
    """One request on an id-bearing route: its query, whether it changes the resource
    (so its owner's own check runs last), and what a caller gets for an id that does not
    exist (404; ``/api/chat/<id>/stream`` answers 204, "nothing to resume", to useChat)."""

    params: dict[str, str] = field(default_factory=dict)
    destructive: bool = False
    absent_status: int = 404


# Every id-bearing (endpoint, method) of the app. The test fails when the app has one that
# is not here: a new route that takes an id must say how it is isolated.
ID_ROUTES: dict[tuple[str, str], list[Probe]] = {
    ("jobs.get_job", "GET"): [Probe()],
    ("jobs.job_events", "GET"): [Probe(), Probe({"after": "0"}), Probe({"snapshot": "1"})],
    ("jobs.cancel_job", "POST"): [Probe(destructive=True)],
    ("responses.get_response", "GET"): [
        Probe(),
        Probe({"stream": "true"}),
        Probe({"stream": "true", "starting_after": "0"}),  # the stream's resume
    ],
    ("responses.cancel_response", "POST"): [Probe(destructive=True)],
    ("responses.delete_response", "DELETE"): [Probe(destructive=True)],
    ("responses.input_items", "GET"): [Probe()],
    ("ai_chat.get_chat", "GET"): [Probe()],
    ("ai_chat.resume", "GET"): [Probe(absent_status=204)],
    ("ai_chat.stop", "POST"): [Probe(destructive=True)],
    ("conversations.get_conversation", "GET"): [Probe()],
    ("conversations.conversation_events", "GET"): [Probe(), Probe({"snapshot": "1"})],
    ("conversations.cancel_conversation", "POST"): [Probe(destructive=True)],
}
# which of key A's resources a path parameter names, and an id of the same shape that
# names nothing
KINDS = {
    "job_id": ("job", lambda: f"job_{secrets.token_hex(16)}"),
    "response_id": ("response", lambda: f"resp_{secrets.token_hex(16)}"),
    "chat_id": ("chat", lambda: f"chat-{secrets.token_hex(6)}"),
    "conversation_id": ("conversation", lambda: f"conv-{secrets.token_hex(6)}"),
}


def key_a_resources(c: httpx.Client) -> dict[str, str]:
    """Key A's running job (a turn of a conversation), background response and AI SDK
    chat, each slow enough to be running while the probes run."""
    conversation = f"conv-{secrets.token_hex(6)}"
    job = c.post(
        "/v1/jobs",
        json={"model": SLOW, "messages": user("mine"), "conversation_id": conversation},
        headers=A,
    )
    assert job.status_code == 202, job.text
    response = c.post(
        "/v1/responses", json={"model": SLOW, "input": "mine", "background": True}, headers=A
    )
    assert response.status_code == 200, response.text
    chat = f"chat-{secrets.token_hex(6)}"
    ui = {"id": chat, "trigger": "submit-message",
          "messages": [{"id": "u1", "role": "user", "parts": [{"type": "text", "text": "x"}]}],
          "model": SLOW}  # fmt: skip
    with c.stream("POST", "/api/chat", json=ui, headers=A) as started:
        assert started.status_code == 200  # closing it leaves the job running
    return {
        "job": job.json()["id"],
        "conversation": conversation,
        "response": response.json()["id"],
        "chat": chat,
    }


def test_every_id_route_is_in_the_isolation_table(app: Flask) -> None:
    """A route that takes an id and is not in ``ID_ROUTES`` (or a parameter not in
    ``KINDS``) fails here, so no new route skips the isolation test below."""
    served = {
        (rule.endpoint, method)
        for rule in api_rules(app)
        if rule.arguments
        for method in methods_of(rule)
    }
    assert served == set(ID_ROUTES)
    for rule in api_rules(app):
        assert set(rule.arguments) <= set(KINDS), rule.rule


def test_another_keys_job_answers_on_every_id_route_as_one_that_does_not_exist(
    app: Flask, guarded: Guarded
) -> None:
    """For each id-bearing route, key B asking for key A's resource gets exactly what it
    gets for an id that names nothing (status and body, the id aside): nothing tells B
    that A's exists. Key A itself gets 200 on the same request (so each probe hit a live
    resource); the requests that change it run last, delete at the very end."""
    rules = {r.endpoint: r for r in api_rules(app) if r.arguments}
    with guarded.client() as c:
        owned = key_a_resources(c)
        checks: list[tuple[str, str, Probe]] = []
        for (endpoint, method), probes in ID_ROUTES.items():
            rule = rules[endpoint]
            (argument,) = rule.arguments
            kind, absent_id = KINDS[argument]
            mine, nothing = owned[kind], absent_id()
            for probe in probes:
                path = build(app, rule, method, {argument: mine})
                status, body = call(c, method, path, B, probe.params)
                absent = call(c, method, build(app, rule, method, {argument: nothing}), B,
                              probe.params)  # fmt: skip
                where = (method, path, probe.params)
                assert status == probe.absent_status, (where, status, body)
                assert (status, body.replace(mine, "<id>")) == (
                    absent[0],
                    absent[1].replace(nothing, "<id>"),
                ), where
                checks.append((method, path, probe))
            # a CORS preflight needs no key (browsers send none): Flask answers it without
            # running the view, so it says nothing of A's resource either
            preflight = c.options(build(app, rule, method, {argument: mine}))
            assert preflight.status_code == 200 and preflight.content == b"", endpoint
        checks.sort(key=lambda m: (m[2].destructive, m[0] == "DELETE"))
        for method, path, probe in checks:
            status, body = call(c, method, path, A, probe.params)
            assert status == 200, (method, path, probe.params, body)


def test_a_shared_idempotency_key_never_returns_another_keys_job(guarded: Guarded) -> None:
    """Idempotency keys are scoped by owner: two access keys sending the same
    ``Idempotency-Key`` get a job each, and each retry returns the sender's own."""
    idem = {"Idempotency-Key": f"shared-{secrets.token_hex(6)}"}
    with guarded.client() as c:
        for path, body in [
            ("/v1/jobs", {"model": FAST, "messages": user("idem")}),
            ("/v1/responses", {"model": FAST, "input": "idem", "background": True}),
        ]:
            first_a = c.post(path, json=body, headers={**A, **idem}).json()["id"]
            first_b = c.post(path, json=body, headers={**B, **idem}).json()["id"]
            assert first_a != first_b, path
            retry_b = c.post(path, json=body, headers={**B, **idem})
            assert retry_b.json()["id"] == first_b and first_a not in retry_b.text, path
            assert c.post(path, json=body, headers={**A, **idem}).json()["id"] == first_a


# -- claim 3: signed event URLs -------------------------------------------------------------


def signed_at(secret: str, timestamp: float, payload: dict[str, str]) -> str:
    """A token as ``gateway.access`` makes it (same secret, same salt), but signed at
    ``timestamp``: how old a token the gateway sees is up to the clock it was signed by."""

    class Signer(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(timestamp)

    return URLSafeTimedSerializer(secret, salt=SALT, signer=Signer).dumps(payload)


def token_of(url: str) -> str:
    return httpx.URL(url).params["token"]


def open_status(c: httpx.Client, path: str, token: str, **params: str) -> int:
    """The status of opening ``path`` with ``?token=`` and no headers, as EventSource does."""
    with c.stream("GET", path, params={**params, "token": token}) as response:
        return response.status_code


def test_a_job_token_and_a_conversation_token_open_only_their_own_kind(
    guarded: Guarded,
) -> None:
    """A conversation named like a job (ids are the client's choice) is the sharpest
    case: the token's subject matches the path, only its kind differs, and it is a 404
    both ways. Neither kind opens anything but the events route: poll and cancel need
    the key (401)."""
    with guarded.client() as c:
        job = c.post("/v1/jobs", json={"model": FAST, "messages": user("j")}, headers=A).json()
        named = job["id"]  # a conversation of key A whose id is the job's id
        turn = c.post(
            "/v1/jobs",
            json={"model": FAST, "messages": user("c"), "conversation_id": named},
            headers=A,
        ).json()
        job_token = token_of(job["events_url"])
        conversation_token = token_of(turn["conversation_events_url"])
        assert open_status(c, f"/v1/jobs/{named}/events", job_token) == 200
        assert open_status(c, f"/v1/conversations/{named}/events", conversation_token) == 200
        assert open_status(c, f"/v1/conversations/{named}/events", job_token) == 404
        assert open_status(c, f"/v1/jobs/{named}/events", conversation_token) == 404
        # a valid key decides who the caller is: another key's header and A's token is B
        with c.stream("GET", job["events_url"], headers=B) as response:
            assert response.status_code == 404
        for token in (job_token, conversation_token):
            for method, path in [
                ("GET", f"/v1/jobs/{named}"),
                ("POST", f"/v1/jobs/{named}/cancel"),
                ("GET", f"/v1/conversations/{named}"),
                ("POST", f"/v1/conversations/{named}/cancel"),
                ("GET", f"/api/chat/{named}"),
                ("GET", f"/v1/responses/{named.replace('job_', 'resp_')}"),
            ]:
                status = c.request(method, path, params={"token": token}).status_code
                assert status == 401, (method, path)
    assert set(TOKEN_ROUTES) == {"jobs.job_events", "conversations.conversation_events"}


def test_two_keys_conversations_of_one_name_are_apart(guarded: Guarded) -> None:
    """Conversation ids are chosen by clients, so two keys may both have "support". While
    key A's turn runs, key B's turn in its "support" is accepted (one at a time holds per
    key: A's next is a 409 that names A's own job), and each key's conversation token
    follows its own conversation's job, never the namesake's."""
    name = f"support-{secrets.token_hex(4)}"
    with guarded.client() as c:

        def turn(headers: dict[str, str], model: str) -> httpx.Response:
            body = {"model": model, "messages": user("turn"), "conversation_id": name}
            return c.post("/v1/jobs", json=body, headers=headers)

        mine = turn(A, SLOW)
        theirs = turn(B, FAST)
        assert mine.status_code == theirs.status_code == 202, theirs.text
        a, b = mine.json(), theirs.json()
        busy = turn(A, FAST)
        assert busy.status_code == 409 and a["id"] in busy.text and b["id"] not in busy.text
        with c.stream("GET", a["conversation_events_url"]) as stream:  # the token alone
            assert stream.status_code == 200
            assert stream.headers["x-sluice-job-id"] == a["id"]
        followed = c.get(b["conversation_events_url"])
        assert followed.status_code == 200 and "event: done" in followed.text
        assert followed.headers["x-sluice-job-id"] == b["id"] and a["id"] not in followed.text
        assert c.post(f"/v1/conversations/{name}/cancel", headers=A).status_code == 200


def test_chaining_to_another_keys_response_is_as_to_one_that_does_not_exist(
    guarded: Guarded,
) -> None:
    """``previous_response_id`` reads the previous response's input and output into the
    new one: key B naming key A's response gets OpenAI's ``previous_response_not_found``,
    word for word what a made-up id gets, so B can neither read A's answer nor learn
    that the id exists. A itself chains to it."""
    with guarded.client() as c:
        body = {"model": FAST, "input": "first", "background": True}
        first = c.post("/v1/responses", json=body, headers=A).json()["id"]
        wait_until(
            lambda: c.get(f"/v1/responses/{first}", headers=A).json()["status"] == "completed",
            20,
        )
        made_up = f"resp_{secrets.token_hex(16)}"
        answers = {}
        for previous in (first, made_up):
            chained = {**body, "input": "next", "previous_response_id": previous}
            answers[previous] = c.post("/v1/responses", json=chained, headers=B)
        assert answers[first].status_code == answers[made_up].status_code == 400
        assert answers[first].json()["error"]["code"] == "previous_response_not_found"
        assert answers[first].text.replace(first, "<id>") == answers[made_up].text.replace(
            made_up, "<id>"
        )
        own = {**body, "input": "next", "previous_response_id": first}
        assert c.post("/v1/responses", json=own, headers=A).status_code == 200


def test_forged_tokens_are_404s(guarded: Guarded) -> None:
    """A token not signed by the gateway's secret opens nothing, whatever it claims: one
    signed with another secret, or with the right secret under another salt, one whose
    payload names key A's owner and job but carries no signature, a truncated one."""
    with guarded.client() as c:
        job = c.post("/v1/jobs", json={"model": FAST, "messages": user("f")}, headers=A).json()
        path = f"/v1/jobs/{job['id']}/events"
        real = token_of(job["events_url"])
        payload = {"j": job["id"], "o": owner_id(KEY_A)}
        secret = guarded.settings.secret_key
        assert secret
        forged = [
            URLSafeTimedSerializer("not-the-secret", salt=SALT).dumps(payload),
            URLSafeTimedSerializer(secret, salt="another-salt").dumps(payload),
            real.rsplit(".", 1)[0],  # payload and timestamp, no signature
            real.split(".", 1)[0],  # payload alone
            real[: len(real) // 2],
        ]
        for token in forged:
            assert open_status(c, path, token) == 404, token
        assert open_status(c, path, real) == 200  # the real one still opens it


def test_a_token_older_than_max_job_age_is_a_404(guarded: Guarded) -> None:
    """Tokens live ``SLUICE_MAX_JOB_AGE`` (600 s here): signed with the gateway's secret a
    minute short of that, it opens the stream; a minute past it, it is a 404, for a job
    that exists and belongs to the token's owner."""
    with guarded.client() as c:
        job = c.post("/v1/jobs", json={"model": FAST, "messages": user("e")}, headers=A).json()
        path = f"/v1/jobs/{job['id']}/events"
        payload = {"j": job["id"], "o": owner_id(KEY_A)}
        secret = guarded.settings.secret_key
        assert secret
        now = time.time()
        young = signed_at(secret, now - MAX_JOB_AGE + 60, payload)
        old = signed_at(secret, now - MAX_JOB_AGE - 60, payload)
        assert open_status(c, path, young) == 200
        expired = c.get(path, params={"token": old})
        assert expired.status_code == 404 and expired.json()["error"]["type"] == "not_found"


def test_no_process_log_holds_an_event_token(guarded: Guarded) -> None:
    """Through each gateway (log level INFO, and DEBUG) and the worker, open events URLs
    with their tokens: a job's (from the start, and resumed with ``after``), a
    conversation's, a chat completion's ``X-Sluice-Events-Url``, and a refused one. The
    access logs record those requests, and no log file of the stack holds a token, its
    signature, or an access key. (``test_access.py`` covers the access log's redaction
    of a disguised ``%74oken`` name.)"""
    tokens: list[str] = []
    events_paths: list[str] = []
    for level in ("info", "debug"):
        with guarded.client(level) as c:
            conversation = f"logs-{secrets.token_hex(4)}"
            job = c.post(
                "/v1/jobs",
                json={"model": FAST, "messages": user("log"), "conversation_id": conversation},
                headers=A,
            ).json()
            completion = c.post(
                "/v1/chat/completions",
                json={"model": FAST, "messages": user("log")},
                headers=A,
            )
            assert completion.status_code == 200
            urls = [
                job["events_url"],
                job["conversation_events_url"],
                completion.headers["X-Sluice-Events-Url"],
            ]
            for url in urls:
                tokens.append(token_of(url))
                stream = c.get(url)  # to the end: the jobs are quick
                assert stream.status_code == 200 and "event: done" in stream.text, url
            assert c.get(job["events_url"] + "&after=1").status_code == 200
            refused = f"/v1/jobs/job_{secrets.token_hex(16)}/events"
            assert c.get(refused, params={"token": tokens[0]}).status_code == 404
            events_paths += [f"/v1/jobs/{job['id']}/events", refused]

    def logged(path: str) -> list[str]:
        """The access log's lines of requests for ``path`` (at DEBUG, gunicorn also
        writes ``GET <path>``, without the query)."""
        text = "\n".join(p.read_text(errors="replace") for p in guarded.log_paths())
        return [line for line in text.splitlines() if f'"GET {path}?' in line]

    # the access log wrote each request (so the check below is not of empty logs)
    wait_until(lambda: all(logged(p) for p in events_paths), 10)
    assert all("oken=[redacted]" in line for p in events_paths for line in logged(p))
    for path in guarded.log_paths():
        text = path.read_text(errors="replace")
        for token in tokens:
            assert token not in text, path.name
            assert token.rsplit(".", 1)[1] not in text, path.name  # its signature
        assert KEY_A not in text and KEY_B not in text, path.name


def test_public_prefixes_do_not_open_api_routes_by_path_tricks(guarded: Guarded) -> None:
    """``authenticate`` skips paths that start with a public prefix; a raw request line
    that starts with one and climbs to an API route (``..``, encoded slashes) must not be
    served as that route without a key. http.client sends the path as written."""
    host, port = httpx.URL(guarded.url).host, httpx.URL(guarded.url).port
    assert port is not None
    for path in [
        "/static/../v1/models",
        "/static/..%2fv1/models",
        "/healthz/../v1/jobs/x",
        "/metrics/../v1/models",
        "/openapi.json/../../v1/models",
    ]:
        connection = http.client.HTTPConnection(host, port, timeout=10)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            body = response.read().decode(errors="replace")
        finally:
            connection.close()
        assert response.status in (401, 404), (path, response.status, body)
        assert '"object": "list"' not in body and '"object":"list"' not in body, path
