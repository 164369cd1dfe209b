"""Security review (issue #19), secrets: the server's upstream key (``OPENAI_API_KEY``) and
users' own keys (``X-Upstream-Api-Key``, sealed with ``SLUICE_SECRET_KEY``) never appear in
clear text in Redis, in Celery's messages, in any process's log, in the metrics, in an
error response or in a stream.

One stack for the whole module, of its own (key prefix, queue, log directory), so every
byte it wrote can be searched for the keys: a gunicorn gateway with its access log on and
a Celery worker with its metrics endpoint, both at the default (info) log level, on the
real Redis, with a fake upstream over real HTTP that accepts the server's key and one
user's key and, like the OpenAI-compatible servers that do, quotes a refused key *whole*
in its 401 (OpenAI itself masks it). The keys are canaries drawn per run, so a hit can
only be this module's leak. ``traffic`` drives the jobs and requests once (succeeded,
failed with an upstream 401, 429 and 500, cancelled; with either kind of key) and keeps
every answer; each test then checks one place, and fails at the first leak it finds,
naming the key and where it was.
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import os
import secrets
import signal
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import redis

from devtools.fake_upstream import FakeUpstream
from sluice.settings import Settings
from tests.helpers.stack import ProcessLogs, stack_env, start_worker, wait_ready
from tests.helpers.support import ROOT, free_port, read_stream, wait_until

pytestmark = pytest.mark.integration

SERVER_KEY = "sk-canary-server-" + secrets.token_hex(16)
USER_KEY = "sk-canary-user-" + secrets.token_hex(16)  # a user's own key the upstream accepts
WRONG_USER_KEY = "sk-canary-user-wrong-" + secrets.token_hex(16)  # one it refuses
KEYS = (SERVER_KEY, USER_KEY, WRONG_USER_KEY)
HELLO = [{"role": "user", "content": "hi"}]
STALL = "stall;fail_after=1;stall=30"  # one piece, then silence until cancelled


def _base64_cores(secret: bytes) -> set[bytes]:
    """What ``secret`` looks like inside any base64 text (standard or URL-safe alphabet),
    wherever it sits in the encoded bytes: for each of the three alignments, the encoded
    characters that depend on the secret's bytes alone."""
    cores: set[bytes] = set()
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + secret)
        start = math.ceil(8 * offset / 6)
        end = (8 * (offset + len(secret))) // 6
        core = encoded[start:end]
        cores |= {core, core.translate(bytes.maketrans(b"+/", b"-_"))}
    return cores


FORBIDDEN = {
    key.encode(): {key.encode(), *_base64_cores(key.encode())} for key in KEYS
}  # every key, in clear and in base64


def leaks(data: str | bytes) -> list[str]:
    """The keys (named by their kind) found in ``data`` in clear or base64."""
    raw = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data
    found = []
    for key, forms in FORBIDDEN.items():
        if any(form in raw for form in forms):
            found.append(key.decode().rsplit("-", 1)[0])
    return found


def assert_no_key(data: str | bytes, where: str) -> None:
    found = leaks(data)
    assert not found, f"{', '.join(found)} key found in {where}: {str(data)[:2000]}"


@dataclass
class SecretStack:
    """The module's stack and what was captured on the way."""

    settings: Settings
    url: str
    worker_metrics_url: str
    logs: ProcessLogs
    queued: list[tuple[str, bytes]]  # (job id, its Celery message as the broker held it)
    published: list[bytes] = field(default_factory=list)  # every pub/sub message meanwhile


def start_gateway(settings: Settings, logs: ProcessLogs, processes: int = 2, **env: str) -> str:
    """A gunicorn gateway as the Procfile starts it, with the access log on (the stack
    helper turns it off; this module must read it)."""
    port = free_port()
    env = stack_env(
        settings, PORT=str(port), WEB_CONCURRENCY=str(processes), SLUICE_ACCESS_LOG="1", **env
    )
    cmd = [
        sys.executable, "-m", "gunicorn", "--no-control-socket", "--config", "gunicorn.conf.py",
        "gateway.wsgi:app",
    ]  # fmt: skip
    process, log_path = logs.start("gateway", cmd, env, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, process, log_path)
    return url


def kill_all(logs: ProcessLogs) -> None:
    """SIGKILL the processes these logs belong to (by their process groups, which they
    lead): their logs were read already, and a graceful stop (Celery's warm shutdown,
    gunicorn's graceful timeout) would only cost CI seconds."""
    for process in logs.processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    for process in logs.processes:
        process.wait(10)


@contextlib.contextmanager
def capture_pubsub(settings: Settings, into: list[bytes]) -> Iterator[None]:
    """Every message published on the database while the block runs (pub/sub keeps
    nothing, so a dump would never see what went through it)."""
    client = redis.Redis.from_url(settings.redis_url)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.psubscribe("*")
    stop = threading.Event()

    def listen() -> None:
        while not stop.is_set():
            message = pubsub.get_message(timeout=0.1)
            if message is not None:
                into.append(bytes(message["channel"]) + b" " + bytes(message["data"]))

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)
        pubsub.close()
        client.close()


@pytest.fixture(scope="module")
def echo_upstream() -> Iterator[FakeUpstream]:
    """Accepts the server's key and one user's key; quotes a refused key whole."""
    with FakeUpstream(api_key=SERVER_KEY, extra_keys={USER_KEY}, key_echo="full") as upstream:
        yield upstream


def stack_settings_for(settings: Settings, upstream: FakeUpstream, name: str) -> Settings:
    """The session's settings with the canary server key, the echoing upstream, and a key
    prefix and queue of this stack's own."""
    run = f"{name}-{secrets.token_hex(3)}"
    return settings.with_(
        openai_api_key=SERVER_KEY,
        openai_base_url=upstream.base_url,
        key_prefix=f"{settings.key_prefix}-{run}",
        queue=f"{settings.queue}-{run}",
        upstream_retries=0,  # a 429 or 500 fails at once: no waiting out Retry-After
    )


@pytest.fixture(scope="module")
def secret_stack(
    settings: Settings, echo_upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SecretStack]:
    """The gateway starts first, and two jobs (one per kind of key) are sent while no
    worker consumes the queue, so their Celery messages can be read where the broker keeps
    them; then the worker starts and runs them."""
    logs = ProcessLogs(tmp_path_factory.mktemp("secret-logs"))
    stack_settings = stack_settings_for(settings, echo_upstream, "secrets")
    try:
        url = start_gateway(stack_settings, logs)
        broker = redis.Redis.from_url(stack_settings.redis_url)
        queued = []
        with httpx.Client(base_url=url, timeout=30) as client:
            for headers in ({}, {"X-Upstream-Api-Key": USER_KEY}):
                job = client.post("/v1/jobs", json={"model": "openai", "messages": HELLO},
                                  headers=headers).json()  # fmt: skip
                queued.append(job["id"])
        messages = broker.lrange(stack_settings.queue, 0, -1)
        broker.close()
        metrics_port = free_port()
        start_worker(stack_settings, logs, env={"SLUICE_WORKER_METRICS_PORT": str(metrics_port)})
        yield SecretStack(
            stack_settings,
            url,
            f"http://127.0.0.1:{metrics_port}/metrics",
            logs,
            [(job_id, message) for job_id, message in zip(queued, reversed(messages), strict=True)],
        )
    finally:
        kill_all(logs)


@dataclass
class Traffic:
    """Everything the clients were answered, by what was asked, and Redis as it was while
    the cancelled jobs still ran."""

    answers: dict[str, str] = field(default_factory=dict)
    redis_while_running: list[bytes] = field(default_factory=list)


def _job_case(
    client: httpx.Client, traffic: Traffic, case: str, model: str, key: str | None
) -> None:
    """Run one job to its end, following its events live, and keep its stream (live and
    replayed) and its poll view."""
    headers = {"X-Upstream-Api-Key": key} if key else {}
    created = client.post("/v1/jobs", json={"model": model, "messages": HELLO}, headers=headers)
    assert created.status_code == 202, created.text
    job = created.json()
    traffic.answers[f"{case}: POST /v1/jobs"] = created.text
    live = read_stream(client, job["events_url"])
    traffic.answers[f"{case}: live events"] = json.dumps([e.data for e in live])
    traffic.answers[f"{case}: replayed events"] = client.get(job["events_url"]).text
    traffic.answers[f"{case}: poll"] = client.get(job["url"]).text


def _cancelled_case(
    client: httpx.Client, traffic: Traffic, settings: Settings, case: str, key: str | None
) -> None:
    """A job cancelled mid-stream; Redis is dumped while it runs (its sealed key, kombu's
    unacked copy of its message), before the cancel."""
    headers = {"X-Upstream-Api-Key": key} if key else {}
    job = client.post("/v1/jobs", json={"model": STALL, "messages": HELLO}, headers=headers).json()
    first = read_stream(client, job["events_url"], limit=2)  # started, the one delta
    assert [e.event for e in first] == ["started", "delta"], first
    traffic.redis_while_running += dump_redis(settings)
    traffic.answers[f"{case}: cancel"] = client.post(f"{job['url']}/cancel").text
    traffic.answers[f"{case}: replayed events"] = client.get(job["events_url"]).text
    traffic.answers[f"{case}: poll"] = client.get(job["url"]).text
    assert json.loads(traffic.answers[f"{case}: poll"])["status"] == "cancelled"


def _stream_text(client: httpx.Client, path: str, body: dict[str, Any], key: str | None) -> str:
    headers = {"X-Upstream-Api-Key": key} if key else {}
    with client.stream("POST", path, json=body, headers=headers) as response:
        return f"{response.status_code} {response.headers} " + response.read().decode()


@pytest.fixture(scope="module")
def traffic(secret_stack: SecretStack) -> Traffic:
    """Jobs with the server's key and with users' keys: succeeded, failed (the upstream's
    401 quoting the key whole, 429, 500, a user key the upstream refuses), cancelled;
    the OpenAI-compatible and Responses routes; bad requests carrying a user key; key
    verification and model listing with a wrong key; the OpenAPI document and metrics."""
    out = Traffic()
    stack = secret_stack
    with (
        httpx.Client(base_url=stack.url, timeout=30) as c,
        capture_pubsub(stack.settings, stack.published),
    ):
        for kind, key in (("server", None), ("user", USER_KEY)):
            for model in ("openai", "http-401", "http-429;retry_after=30", "http-500"):
                _job_case(c, out, f"{kind} key, {model}", model, key)
            _cancelled_case(c, out, stack.settings, f"{kind} key, cancelled", key)
        _job_case(c, out, "refused user key", "openai", WRONG_USER_KEY)
        for job_id, _message in stack.queued:  # the jobs sent before the worker started
            url = f"/v1/jobs/{job_id}"
            wait_until(lambda url=url: '"succeeded"' in c.get(url).text, 10)
            out.answers[f"queued {job_id}: poll"] = c.get(url).text

        for model in ("openai", "http-401"):
            for key in (None, USER_KEY, WRONG_USER_KEY):
                body = {"model": model, "messages": HELLO}
                kind = {None: "server", USER_KEY: "user", WRONG_USER_KEY: "refused user"}[key]
                name = f"chat completions, {model}, {kind} key"
                out.answers[f"{name}, stream"] = _stream_text(
                    c, "/v1/chat/completions", {**body, "stream": True}, key
                )
                out.answers[name] = _stream_text(c, "/v1/chat/completions", body, key)
            out.answers[f"responses, {model}, stream"] = _stream_text(
                c, "/v1/responses", {"model": model, "input": "hi", "stream": True}, USER_KEY
            )

        bad_requests = {
            "invalid body + user key": ("/v1/jobs", {"model": "x", "messages": "nope"}, USER_KEY),
            "no messages + user key": ("/v1/jobs", {"model": "x"}, USER_KEY),
            "invalid user key header": ("/v1/jobs", {"model": "x", "messages": HELLO},
                                        f"{USER_KEY} {WRONG_USER_KEY}"),
            "invalid chat completions body + user key": (
                "/v1/chat/completions", {"messages": 3}, USER_KEY),
            "verify, wrong key": ("/v1/keys/verify", {"api_key": WRONG_USER_KEY}, None),
            "verify, right key": ("/v1/keys/verify", {"api_key": USER_KEY}, None),
            "verify, extra field": ("/v1/keys/verify", {"api_key": USER_KEY, "x": 1}, None),
            "verify, invalid key": ("/v1/keys/verify", {"api_key": f"{USER_KEY} x"}, None),
        }  # fmt: skip
        for name, (path, body, key) in bad_requests.items():
            headers = {"X-Upstream-Api-Key": key} if key else {}
            response = c.post(path, json=body, headers=headers)
            out.answers[name] = f"{response.status_code} {response.headers} {response.text}"
        models = {"wrong user key": WRONG_USER_KEY, "user key": USER_KEY, "server key": None}
        for case, key in models.items():
            name = f"models, {case}"
            headers = {"X-Upstream-Api-Key": key} if key else {}
            response = c.get("/v1/models", headers=headers)
            out.answers[name] = f"{response.status_code} {response.headers} {response.text}"
        out.answers["openapi"] = c.get("/openapi.json").text
        out.answers["gateway metrics"] = c.get("/metrics").text
    out.answers["worker metrics"] = httpx.get(stack.worker_metrics_url, timeout=10).text
    return out


def dump_redis(settings: Settings) -> list[bytes]:
    """Every key name and every value of the stack's database, whatever its type: the
    whole database (others' keys too: they cannot hold this run's canaries)."""
    client = redis.Redis.from_url(settings.redis_url)
    out: list[bytes] = []
    try:
        for name in client.scan_iter(count=1000):
            kind = client.type(name).decode()
            out.append(name)
            if kind == "string":
                out.append(client.get(name) or b"")
            elif kind == "hash":
                for k, v in client.hgetall(name).items():
                    out += [k, v]
            elif kind == "list":
                out += client.lrange(name, 0, -1)
            elif kind == "set":
                out += client.smembers(name)
            elif kind == "zset":
                out += [member for member, _ in client.zrange(name, 0, -1, withscores=True)]
            elif kind == "stream":
                for entry_id, fields in client.xrange(name):
                    out.append(entry_id)
                    for k, v in fields.items():
                        out += [k, v]
            elif kind != "none":  # ("none": it expired between SCAN and TYPE)
                raise AssertionError(f"{name!r} is a {kind}: dump it too")
    finally:
        client.close()
    return out


# --------------------------------------------------------------------------- the claims


def test_redis_holds_no_key_in_clear_or_base64_while_jobs_run_and_after_they_ended(
    secret_stack: SecretStack, traffic: Traffic
) -> None:
    """Every key name and value of every type, dumped while a cancelled job was still
    streaming with each kind of key (sealed key, kombu's unacked message present) and
    after everything ended; plus every pub/sub message published meanwhile."""
    assert b"unacked" in traffic.redis_while_running  # kombu's copy of a running job's message
    after = dump_redis(secret_stack.settings)
    prefix = secret_stack.settings.key_prefix.encode()
    assert any(name.startswith(prefix) for name in after)  # the stack's keys are in it
    for value in [*traffic.redis_while_running, *after]:
        assert_no_key(value, "Redis")
    assert any(prefix in message for message in secret_stack.published), "no job's pub/sub"
    for message in secret_stack.published:
        assert_no_key(message, "a pub/sub message")


def test_the_celery_message_of_a_job_holds_no_key_with_either_kind_of_key(
    secret_stack: SecretStack,
) -> None:
    """Read from the queue before any worker took it: the message, its headers and its
    base64 body name the job and nothing else."""
    assert len(secret_stack.queued) == 2
    for job_id, raw in secret_stack.queued:
        message = json.loads(raw)
        assert message["headers"]["id"] == job_id
        assert message["properties"]["body_encoding"] == "base64"
        body = base64.b64decode(message["body"])
        args, kwargs, _embed = json.loads(body)
        assert args == [job_id] and kwargs == {}
        assert_no_key(raw, "the Celery message")
        assert_no_key(body, "the Celery message's body")


def test_job_streams_and_poll_views_carry_no_key_though_the_upstream_401_quoted_it(
    traffic: Traffic,
) -> None:
    """The upstream's 401 said "Incorrect API key provided: <the whole key>" for the
    server's key and a user's: the job's error event and poll view keep the provider's
    message, without the key."""
    for kind in ("server", "user"):
        outcomes = {"openai": None, "http-401": 401, "http-429;retry_after=30": 429,
                    "http-500": 500}  # fmt: skip
        for model, status in outcomes.items():
            poll = json.loads(traffic.answers[f"{kind} key, {model}: poll"])
            assert poll["status"] == ("succeeded" if status is None else "failed"), poll
            assert status is None or poll["error"]["status"] == status, poll
    for case in ("server key, http-401", "user key, http-401", "refused user key"):
        poll = json.loads(traffic.answers[f"{case}: poll"])
        assert poll["status"] == "failed", poll
        assert "Incorrect API key provided: [redacted]." in poll["error"]["message"], poll
    for name, answer in traffic.answers.items():
        if "events" in name or "poll" in name or "POST /v1/jobs" in name or "cancel" in name:
            assert_no_key(answer, name)


def test_chat_completions_and_responses_streams_and_errors_carry_no_key(
    traffic: Traffic,
) -> None:
    """Streamed and not, succeeded and refused by the upstream's key-quoting 401."""
    chat = {k: v for k, v in traffic.answers.items() if k.startswith(("chat", "responses"))}
    assert len(chat) == 14
    assert any("Incorrect API key provided" in v for v in chat.values())
    for name, answer in chat.items():
        assert_no_key(answer, name)


def test_error_responses_and_the_openapi_document_echo_no_key(traffic: Traffic) -> None:
    """Bad requests that carry a user key, key verification with a wrong key, model
    listing refused for a user's key, ``/openapi.json``."""
    assert traffic.answers["verify, wrong key"].endswith('{"valid":false}\n')
    assert traffic.answers["verify, right key"].endswith('{"valid":true}\n')
    assert traffic.answers["models, wrong user key"].startswith("401 ")
    assert "Incorrect API key provided" in traffic.answers["models, wrong user key"]
    for name in ("invalid body + user key", "no messages + user key", "invalid user key header",
                 "invalid chat completions body + user key", "verify, extra field",
                 "verify, invalid key"):  # fmt: skip
        assert traffic.answers[name].startswith("400 "), traffic.answers[name]
    names = {n for n in traffic.answers if n.startswith(("verify", "models", "openapi"))}
    names |= {n for n in traffic.answers if n.startswith(("invalid", "no messages"))}
    assert len(names) == 12
    for name in names:
        assert_no_key(traffic.answers[name], name)


def test_gateway_and_worker_metrics_carry_no_key(traffic: Traffic) -> None:
    for name in ("gateway metrics", "worker metrics"):
        text = traffic.answers[name]
        assert "sluice_jobs_total" in text, text[:500]
        assert_no_key(text, name)


def test_process_logs_at_info_and_warning_carry_no_key(
    secret_stack: SecretStack, traffic: Traffic
) -> None:
    """Every line the gateway (access log included) and the worker wrote, at info, and at
    warning where the upstream refused (``job.failed`` keeps the provider's message)."""
    logs = {path.name: path.read_bytes() for path in secret_stack.logs.directory.glob("*.log")}
    gateway = b"".join(text for name, text in logs.items() if name.startswith("gateway"))
    worker = b"".join(text for name, text in logs.items() if name.startswith("worker"))
    assert b'"POST /v1/jobs HTTP/1.1" 202' in gateway  # the access log is in it
    assert b"WARNING sluice.worker" in worker and b"event=job.failed" in worker
    assert b"Incorrect API key provided" in worker  # the refusals' messages are logged
    for name, text in logs.items():
        assert_no_key(text, f"the log {name}")


def test_the_canary_check_sees_a_key_in_clear_and_inside_base64() -> None:
    """The checker itself: a key found in clear, and in base64 at every alignment."""
    for prefix in (b"", b"a", b"ab", b"abc"):
        blob = prefix + b'{"k": "' + USER_KEY.encode() + b'"}'
        assert leaks(base64.b64encode(blob)) == ["sk-canary-user"]
        assert leaks(base64.urlsafe_b64encode(blob)) == ["sk-canary-user"]
    assert leaks(f"x {SERVER_KEY} y") == ["sk-canary-server"]
    assert leaks("sk-canary-user-") == []


def test_logs_at_debug_level_carry_no_key_either(
    settings: Settings, echo_upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """``SLUICE_LOG_LEVEL=debug`` on a small stack of its own (one gateway process, one
    worker): debug adds gunicorn's per-request lines and its configuration dump, and
    Sluice's own debug records (a client leaving a stream, the heap frozen at start),
    none of which carries a key, also when the upstream quotes the key it refused."""
    logs = ProcessLogs(tmp_path_factory.mktemp("secret-debug-logs"))
    debug_settings = stack_settings_for(settings, echo_upstream, "secrets-debug")
    try:
        url = start_gateway(debug_settings, logs, processes=1, SLUICE_LOG_LEVEL="debug")
        start_worker(debug_settings, logs, env={"SLUICE_LOG_LEVEL": "debug"})
        with httpx.Client(base_url=url, timeout=30) as c:
            for model, key in (("http-401", None), ("http-401", USER_KEY),
                               ("openai", WRONG_USER_KEY), ("openai", USER_KEY)):  # fmt: skip
                headers = {"X-Upstream-Api-Key": key} if key else {}
                job = c.post("/v1/jobs", json={"model": model, "messages": HELLO},
                             headers=headers).json()  # fmt: skip
                assert_no_key(c.get(job["events_url"]).text, "a job's events at debug")
            c.get("/v1/models", headers={"X-Upstream-Api-Key": WRONG_USER_KEY})
            c.post("/v1/keys/verify", json={"api_key": WRONG_USER_KEY})
        last = f"event=job.succeeded job={job['id']}".encode()  # the last record to wait for
        worker_log = next(path for path in logs.directory.glob("worker*.log"))
        wait_until(lambda: last in worker_log.read_bytes(), 10)
        texts = {path.name: path.read_bytes() for path in logs.directory.glob("*.log")}
    finally:
        kill_all(logs)
    assert b"[DEBUG] POST /v1/jobs" in b"".join(texts.values())  # debug was on
    assert b"event=job.failed" in b"".join(texts.values())
    for name, text in texts.items():
        assert_no_key(text, f"the debug log {name}")


def test_redact_keys_replaces_the_presented_keys_before_the_message_is_cut() -> None:
    """A key straddling the length cut is redacted whole, not cut to a prefix that stays;
    an in-stream error object quoting the key is redacted as an HTTP error is."""
    from sluice.upstream_errors import MAX_MESSAGE, error_from_payload, error_from_response
    from worker.upstream import ChunkReader

    text = "x" * (MAX_MESSAGE - 50) + f" key {USER_KEY} refused"  # the cut is in the key
    assert len("upstream answered 401: " + text[: text.index(USER_KEY)]) < MAX_MESSAGE
    body = json.dumps({"error": {"message": text}}).encode()
    error = error_from_response(401, body, keys=(USER_KEY, None))
    assert error.message.endswith(" key [redacted] refused") and len(error.message) < MAX_MESSAGE
    plain = error_from_response(500, f"bad key {SERVER_KEY}".encode(), keys=(SERVER_KEY,))
    assert plain.message == "upstream answered 500: bad key [redacted]"
    assert error_from_payload({"error": f"no {USER_KEY}"}, keys=[USER_KEY]).message == (
        "no [redacted]"
    )
    # placeholders are not secrets: "ollama" stays readable in "ollama refused"
    assert error_from_response(401, b"ollama refused", keys=("ollama",)).message.endswith(
        "ollama refused"
    )
    reader = ChunkReader()
    reader.keys = (USER_KEY,)
    with pytest.raises(Exception, match=r"\[redacted\]") as raised:
        reader.consume({"error": {"message": f"key {USER_KEY} revoked"}})
    assert_no_key(str(raised.value), "an in-stream error")
