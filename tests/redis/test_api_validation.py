"""Bad input gets a clear 4xx in the one error shape, never a 500 (Flask test client)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient

from gateway import create_app
from sluice.settings import Settings

GOOD = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def api(redis_url: str) -> Iterator[FlaskClient]:
    settings = Settings.from_env(
        redis_url=redis_url, key_prefix="sluice-validation", queue="sluice-validation-unused",
        max_body_bytes=100_000, secret_key=None,
    )  # fmt: skip
    app = create_app(settings)
    with app.test_client() as client:
        yield client
    r = app.extensions["sluice"].redis
    r.delete(settings.queue, *r.keys(f"{settings.key_prefix}:*"))


def post(api: FlaskClient, body: Any, **kw: Any) -> tuple[int, dict[str, Any]]:
    response = (
        api.post("/v1/jobs", json=body, **kw) if "data" not in kw else api.post("/v1/jobs", **kw)
    )
    return response.status_code, response.get_json()


def with_(**changes: Any) -> dict[str, Any]:
    return {**GOOD, **changes}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": GOOD["messages"]}, "model"),
        ({"model": "m"}, "messages"),
        (with_(messages=[]), "messages"),
        (with_(messages="hi"), "messages"),
        (
            with_(
                messages=[
                    {"role": "system", "content": "a"},
                    {"role": "user", "content": "b"},
                    {"role": "wizard", "content": "c"},
                ]
            ),
            "messages[2].role",
        ),
        (with_(messages=[{"role": "user", "content": ""}]), "messages[0].content"),
        (with_(messages=[{"role": "user"}]), "messages[0].content"),
        (with_(messages=[{"role": "user", "content": 5}]), "messages[0].content"),
        (with_(temperature="hot"), "temperature"),
        (with_(temperature=2.5), "temperature"),
        (with_(top_p=-0.1), "top_p"),
        (with_(n=0), "n"),
        (with_(n=True), "n"),
        (with_(max_tokens=-1), "max_tokens"),
        (with_(max_tokens=1.5), "max_tokens"),
        (with_(stop=["a", "b", "c", "d", "e"]), "stop"),
        (with_(presence_penalty=3), "presence_penalty"),
        (with_(logit_bias={"abc": 1}), "logit_bias"),
        (with_(logit_bias={"²": 1}), "logit_bias"),  # isdigit() accepts it; int() does not
        (with_(logit_bias={"50256": 101}), "logit_bias.50256"),
        (with_(user=5), "user"),
        (with_(model=""), "model"),
        (with_(stream="yes"), "stream"),
        (with_(stream_options={"include_usage": True}), "stream_options"),
    ],
)
def test_invalid_fields_are_named_in_a_400(api: FlaskClient, body: dict, param: str) -> None:
    status, error = post(api, body)
    assert status == 400, error
    assert error["error"]["type"] == "invalid_request"
    assert error["error"]["param"] == param
    assert error["error"]["message"].startswith(param)


def test_the_unknown_role_message_lists_the_allowed_roles(api: FlaskClient) -> None:
    _status, error = post(api, with_(messages=[{"role": "wizard", "content": "x"}]))
    for role in ("system", "user", "assistant", "tool"):
        assert role in error["error"]["message"]


def test_non_json_body_is_a_400(api: FlaskClient) -> None:
    status, error = post(api, None, data="{not json", content_type="application/json")
    assert status == 400 and "not valid JSON" in error["error"]["message"]


def test_invalid_utf8_is_a_400(api: FlaskClient) -> None:
    raw = b'{"model": "m", "messages": [{"role": "user", "content": "\xff\xfe"}]}'
    status, error = post(api, None, data=raw, content_type="application/json")
    assert status == 400 and "UTF-8" in error["error"]["message"]


def test_a_json_array_is_a_400(api: FlaskClient) -> None:
    status, error = post(api, None, data="[1, 2]", content_type="application/json")
    assert status == 400 and error["error"]["message"] == "the body must be a JSON object"


def test_wrong_content_type_is_a_415(api: FlaskClient) -> None:
    status, error = post(api, None, data=json.dumps(GOOD), content_type="text/plain")
    assert status == 415 and error["error"]["type"] == "unsupported_media_type"


def test_oversized_body_is_a_413(api: FlaskClient) -> None:
    big = with_(messages=[{"role": "user", "content": "x" * 120_000}])
    status, error = post(api, big)
    assert status == 413 and error["error"]["type"] == "payload_too_large"


def test_prompt_beyond_the_context_window_is_context_length_exceeded(api: FlaskClient) -> None:
    words = "hello " * 9000  # > 8192 tokens for gpt-4
    status, error = post(api, with_(model="gpt-4", messages=[{"role": "user", "content": words}]))
    assert status == 400
    assert error["error"]["type"] == "context_length_exceeded"
    assert error["error"]["param"] == "messages"


def test_unknown_routes_and_methods_answer_in_the_error_shape(api: FlaskClient) -> None:
    response = api.get("/v1/nothing")
    assert response.status_code == 404 and response.get_json()["error"]["type"] == "not_found"
    response = api.delete("/v1/jobs")
    assert response.status_code == 405
    assert response.get_json()["error"]["type"] == "method_not_allowed"


def test_malformed_idempotency_key_is_a_400(api: FlaskClient) -> None:
    status, error = post(api, GOOD, headers={"Idempotency-Key": "k" * 300})
    assert status == 400 and error["error"]["param"] == "Idempotency-Key"


def test_a_users_key_is_refused_when_the_server_has_no_secret(api: FlaskClient) -> None:
    status, error = post(api, GOOD, headers={"X-Upstream-Api-Key": "sk-abc"})
    assert status == 400 and error["error"]["param"] == "X-Upstream-Api-Key"
    assert "SLUICE_SECRET_KEY" in error["error"]["message"]


def test_a_malformed_users_key_is_a_400(api: FlaskClient) -> None:
    status, error = post(api, GOOD, headers={"X-Upstream-Api-Key": "sk with spaces"})
    assert status == 400 and error["error"]["param"] == "X-Upstream-Api-Key"


@pytest.mark.parametrize(
    "raw",
    [
        '{"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": NaN}',
        '{"model": "m", "messages": [{"role": "user", "content": "x"}], "top_p": Infinity}',
        "[" * 5_000 + "]" * 5_000,
    ],
)
def test_non_standard_or_absurdly_nested_json_is_a_400(api: FlaskClient, raw: str) -> None:
    status, error = post(api, None, data=raw, content_type="application/json")
    assert status == 400 and error["error"]["type"] == "invalid_request"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (with_(reasoning_effort="extreme"), "reasoning_effort"),
        (with_(verbosity="loud"), "verbosity"),
        (with_(service_tier="gold"), "service_tier"),
        (with_(metadata={"k": "v" * 513}), "metadata.k"),
        (with_(metadata={f"k{i}": "v" for i in range(17)}), "metadata"),
        (with_(store="yes"), "store"),
    ],
)
def test_malformed_newer_parameters_are_named_in_a_400(
    api: FlaskClient, body: dict, param: str
) -> None:
    status, error = post(api, body)
    assert status == 400, error
    assert error["error"]["param"] == param


def test_developer_messages_and_the_newer_parameters_are_accepted(api: FlaskClient) -> None:
    body = with_(
        messages=[{"role": "developer", "content": "Be terse."}, {"role": "user", "content": "hi"}],
        reasoning_effort="low", verbosity="low", service_tier="auto",
        metadata={"app": "sluice"}, store=False, seed=7,
    )  # fmt: skip
    status, job = post(api, body)
    assert status == 202, job
    assert job["status"] == "queued"
