"""The official openai SDK against the gateway: streamed, not streamed, errors, resume."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from devtools.fake_upstream import FakeUpstream, expected_reasoning, expected_reply
from sluice.settings import Settings
from tests.helpers.stack import ProcessLogs, start_gateway, start_worker
from tests.helpers.support import read_stream, text_of, upstream_body

pytestmark = pytest.mark.integration


@pytest.fixture
def sdk(gateway_url: str) -> Iterator[openai.OpenAI]:
    client = openai.OpenAI(base_url=f"{gateway_url}/v1", api_key="not-used", max_retries=0)
    yield client
    client.close()


def prompt() -> str:
    return f"SDK says hi {secrets.token_hex(4)}"


def test_sdk_streams_chunks_with_usage(sdk: openai.OpenAI, upstream: FakeUpstream) -> None:
    text = prompt()
    stream = sdk.chat.completions.create(
        model="openai",
        messages=[{"role": "user", "content": text}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content == expected_reply(upstream_body(upstream, text))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[0].id.startswith("chatcmpl-job_")
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    finish = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finish == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens > 0
    assert all(c.usage is None for c in chunks[:-1])


def test_sdk_stream_without_usage_has_no_usage_chunk(sdk: openai.OpenAI) -> None:
    chunks = list(
        sdk.chat.completions.create(
            model="openai", messages=[{"role": "user", "content": prompt()}], stream=True
        )
    )
    assert all(c.choices for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_sdk_gets_one_completion_without_streaming(
    sdk: openai.OpenAI, upstream: FakeUpstream
) -> None:
    text = prompt()
    result = sdk.chat.completions.create(
        model="openai", messages=[{"role": "user", "content": text}], n=2
    )
    body = upstream_body(upstream, text)
    assert result.object == "chat.completion"
    assert [c.message.content for c in result.choices] == [
        expected_reply(body, 0),
        expected_reply(body, 1),
    ]
    assert [c.finish_reason for c in result.choices] == ["stop", "stop"]
    assert result.usage is not None and result.usage.completion_tokens > 0


@pytest.mark.parametrize(
    ("model", "exception", "status"),
    [
        ("http-401", openai.AuthenticationError, 401),
        ("http-403", openai.PermissionDeniedError, 403),
        ("http-404", openai.NotFoundError, 404),
        ("http-429", openai.RateLimitError, 429),
        ("http-500", openai.InternalServerError, 502),
    ],
)
@pytest.mark.parametrize("stream", [True, False])
def test_upstream_refusals_raise_the_sdks_typed_errors(
    sdk: openai.OpenAI,
    model: str,
    exception: type[openai.APIStatusError],
    status: int,
    stream: bool,
) -> None:
    with pytest.raises(exception) as info:
        result = sdk.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "x"}], stream=stream
        )
        if stream:
            list(result)
    assert info.value.status_code == status
    assert info.value.response.headers["x-sluice-job-id"].startswith("job_")
    if model == "http-401":
        assert "Incorrect API key" in str(info.value)


def test_a_failure_mid_stream_raises_with_the_upstreams_message(sdk: openai.OpenAI) -> None:
    stream = sdk.chat.completions.create(
        model="error-in-stream", messages=[{"role": "user", "content": "x"}], stream=True
    )
    received = []
    with pytest.raises(openai.APIError) as info:
        for chunk in stream:
            received.append(chunk)
    assert received  # text came first
    assert "The server had an error while processing your request." in str(info.value)


def test_invalid_requests_answer_in_openais_error_shape(
    sdk: openai.OpenAI, gateway_url: str
) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        sdk.chat.completions.create(model="openai", messages=[{"role": "robot", "content": "x"}])
    assert info.value.param == "messages[0].role"
    raw = httpx.post(f"{gateway_url}/v1/chat/completions", json={"model": "m", "messages": []})
    assert raw.status_code == 400
    error = raw.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error" and error["param"] == "messages"


def test_the_job_id_header_resumes_the_same_answer(
    sdk: openai.OpenAI, client: httpx.Client
) -> None:
    raw = sdk.chat.completions.with_raw_response.create(
        model="openai", messages=[{"role": "user", "content": prompt()}], stream=True
    )
    job_id = raw.headers["x-sluice-job-id"]
    assert raw.headers["x-sluice-events-url"] == f"/v1/jobs/{job_id}/events"
    text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
    assert text_of(read_stream(client, f"/v1/jobs/{job_id}/events")) == text


def test_reasoning_deltas_come_as_reasoning_content(
    sdk: openai.OpenAI, upstream: FakeUpstream
) -> None:
    text = prompt()
    chunks = list(
        sdk.chat.completions.create(
            model="reasoning", messages=[{"role": "user", "content": text}], stream=True
        )
    )
    reasoning = "".join(
        (c.choices[0].delta.model_extra or {}).get("reasoning_content") or ""
        for c in chunks
        if c.choices
    )
    assert reasoning == expected_reasoning(upstream_body(upstream, text))


def test_a_cancel_ends_an_sdk_stream_with_an_error(
    sdk: openai.OpenAI, client: httpx.Client
) -> None:
    raw = sdk.chat.completions.with_raw_response.create(
        model="slow;delay=0.05;words=200", messages=[{"role": "user", "content": "x"}],
        stream=True,
    )  # fmt: skip
    stream = iter(raw.parse())
    next(stream)
    client.post(f"/v1/jobs/{raw.headers['x-sluice-job-id']}/cancel")
    with pytest.raises(openai.APIError, match="cancelled"):
        list(stream)


@pytest.mark.parametrize(
    ("model", "sent", "expected"),
    [
        ("o3-mini", {"max_tokens": 100, "temperature": 0.2, "top_p": 0.5},
         {"max_completion_tokens": 100}),
        ("gpt-5-mini", {"max_completion_tokens": 80, "presence_penalty": 1.0},
         {"max_completion_tokens": 80}),
        ("gpt-4o-mini", {"max_completion_tokens": 50, "temperature": 0.2},
         {"max_tokens": 50, "temperature": 0.2}),
    ],
)  # fmt: skip
def test_parameters_are_mapped_per_model_family(
    sdk: openai.OpenAI, upstream: FakeUpstream, model: str, sent: dict, expected: dict
) -> None:
    text = prompt()
    sdk.chat.completions.create(model=model, messages=[{"role": "user", "content": text}], **sent)
    body = upstream_body(upstream, text)
    tunables = {"max_tokens", "max_completion_tokens", "temperature", "top_p", "presence_penalty"}
    assert {k: v for k, v in body.items() if k in tunables} == expected


@pytest.mark.parametrize(("model", "role"), [("gpt-4o-mini", "system"), ("o3-mini", "developer")])
def test_developer_messages_and_reasoning_effort_reach_the_upstream(
    sdk: openai.OpenAI, upstream: FakeUpstream, model: str, role: str
) -> None:
    text = prompt()
    sdk.chat.completions.create(
        model=model,
        messages=[{"role": "developer", "content": "Be terse."}, {"role": "user", "content": text}],
        reasoning_effort="low",
        metadata={"app": "sluice"},
    )
    body = upstream_body(upstream, text)
    assert [m["role"] for m in body["messages"]] == [role, "user"]
    assert body["reasoning_effort"] == "low" and body["metadata"] == {"app": "sluice"}


def test_a_malformed_idempotency_key_is_refused_here_too(gateway_url: str) -> None:
    response = httpx.post(
        f"{gateway_url}/v1/chat/completions",
        json={"model": "openai", "messages": [{"role": "user", "content": "x"}]},
        headers={"Idempotency-Key": "k" * 300},
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "Idempotency-Key"


def test_a_silent_job_sends_its_first_byte_at_the_deadline_not_the_heartbeat(
    settings: Settings, process_logs: ProcessLogs
) -> None:
    """With the default 15 s heartbeat and an upstream silent for longer, a streamed answer
    sends its first byte at SLUICE_FIRST_BYTE_WAIT (20 s by default; 3 s here), not at a
    heartbeat (the second, at 30 s, is exactly when PaaS routers cut a request with no
    first byte)."""
    first_byte_wait = 3.0
    patient = settings.with_(
        key_prefix=f"{settings.key_prefix}-silent", queue=f"{settings.queue}-silent",
        heartbeat_interval=15.0, upstream_read_timeout=60.0,
    )  # fmt: skip
    start_worker(patient, process_logs, name="worker-silent")
    _process, url = start_gateway(
        patient, process_logs, name="gateway-15s-heartbeat",
        env={"SLUICE_FIRST_BYTE_WAIT": str(first_byte_wait)},
    )  # fmt: skip
    prompt = f"first byte {secrets.token_hex(4)}"
    body = {"model": "silent;stall=8", "stream": True,
            "messages": [{"role": "user", "content": prompt}]}  # fmt: skip
    started = time.monotonic()
    with (
        httpx.Client(base_url=url, timeout=60) as client,
        client.stream("POST", "/v1/chat/completions", json=body) as response,
    ):
        first = next(response.iter_raw())
        waited = time.monotonic() - started
        assert response.status_code == 200
        assert response.headers["X-Sluice-Job-Id"]
    assert first.startswith(b": keep-alive")
    assert first_byte_wait - 0.5 <= waited < first_byte_wait + 3, waited
