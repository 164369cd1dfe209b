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


# --- tools, structured output, logprobs, content parts (the whole Chat Completions request)

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"], "additionalProperties": False},
        "strict": True,
    },
}  # fmt: skip
CALL = {"id": "call_1", "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}  # fmt: skip
PNG = (  # a 1x1 PNG
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


def user(*parts: dict) -> list[dict]:
    return [{"role": "user", "content": list(parts)}]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (with_(tools=[{"type": "function", "function": {"description": "x"}}]),
         "tools[0].function.name"),
        (with_(tools=[{"type": "function", "function": {"name": "has space"}}]),
         "tools[0].function.name"),
        (with_(tools=[{"type": "function", "function": {"name": "f", "parameters": "{}"}}]),
         "tools[0].function.parameters"),
        (with_(tools=[{"type": "function", "function": {"name": "f",
                                                        "parameters": {"type": "array"}}}]),
         "tools[0].function.parameters"),
        (with_(tools=[{"type": "retrieval"}]), "tools[0]"),
        (with_(tools=[]), "tools"),
        (with_(tool_choice="auto"), "tool_choice"),
        (with_(tools=[WEATHER], tool_choice="sometimes"), "tool_choice"),
        (with_(tools=[WEATHER], tool_choice={"type": "function", "function": {"name": "nope"}}),
         "tool_choice"),
        (with_(tools=[WEATHER], parallel_tool_calls="yes"), "parallel_tool_calls"),
        (with_(logprobs=True, top_logprobs=21), "top_logprobs"),
        (with_(top_logprobs=3), "top_logprobs"),
        (with_(logprobs="yes"), "logprobs"),
        (with_(response_format={"type": "xml"}), "response_format"),
        (with_(response_format={"type": "json_schema"}), "response_format.json_schema"),
        (with_(response_format={"type": "json_schema", "json_schema": {"schema": {}}}),
         "response_format.json_schema.name"),
        (with_(prediction={"type": "content"}), "prediction.content"),
        (with_(modalities=["text", "audio"]), "modalities[1]"),
        (with_(messages=user({"type": "image_url", "image_url": {}})),
         "messages[0].content[0].image_url.url"),
        (with_(messages=user({"type": "image_url", "image_url": {"url": "file:///etc/passwd"}})),
         "messages[0].content[0].image_url.url"),
        (with_(messages=user({"type": "image_url", "image_url": {"url": PNG, "detail": "max"}})),
         "messages[0].content[0].image_url.detail"),
        (with_(messages=user({"type": "input_audio", "input_audio": {"data": "UklG"}})),
         "messages[0].content[0].input_audio.format"),
        (with_(messages=user({"type": "file", "file": {"filename": "a.pdf"}})),
         "messages[0].content[0].file.file_data"),
        (with_(messages=user({"type": "video", "video": {}})), "messages[0].content[0]"),
        (with_(messages=[{"role": "system", "content": [{"type": "image_url",
                                                        "image_url": {"url": PNG}}]}]),
         "messages[0].content[0]"),
        (with_(messages=[{"role": "tool", "content": "22 C"}]), "messages[0].tool_call_id"),
        (with_(messages=[{"role": "user", "content": "x", "tool_calls": [CALL]}]),
         "messages[0].tool_calls"),
        (with_(messages=[{"role": "assistant"}]), "messages[0].content"),
        (with_(messages=[{"role": "assistant", "tool_calls": [{"id": "c", "type": "function",
                                                              "function": {"name": "f"}}]}]),
         "messages[0].tool_calls[0].function.arguments"),
        (with_(functions=[{"name": "f"}]), "functions"),
        (with_(temprature=0.5), "temprature"),
        (with_(frobnicate=1), "frobnicate"),
    ],
)  # fmt: skip
def test_malformed_tools_formats_and_parts_are_named_in_a_400(
    api: FlaskClient, body: dict, param: str
) -> None:
    status, error = post(api, body)
    assert status == 400, error
    assert error["error"]["type"] == "invalid_request"
    assert error["error"]["param"] == param, error
    assert error["error"]["message"].startswith(param), error


def test_a_misspelled_parameter_names_the_one_it_looks_like(api: FlaskClient) -> None:
    _status, error = post(api, with_(temprature=0.5))
    assert "did you mean temperature?" in error["error"]["message"]


def stored_request(api: FlaskClient, job_id: str) -> dict[str, Any]:
    job = api.application.extensions["sluice"].store.get(job_id)
    assert job is not None
    return job.request


def test_the_whole_chat_completions_request_is_accepted_and_forwarded(api: FlaskClient) -> None:
    messages = [
        {"role": "developer", "content": "Use the tools."},
        {"role": "user", "content": [
            {"type": "text", "text": "Weather here?"},
            {"type": "image_url", "image_url": {"url": PNG, "detail": "low"}},
            {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
            {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERg==",
                                      "filename": "a.pdf"}},
        ]},
        {"role": "assistant", "content": None, "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "22"}]},
        {"role": "assistant", "content": [{"type": "refusal", "refusal": "No."}],
         "refusal": "No."},
        {"role": "user", "content": "And tomorrow?"},
    ]  # fmt: skip
    fields = {
        "tools": [WEATHER,
                  {"type": "custom", "custom": {"name": "sql", "format": {"type": "text"}}}],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "parallel_tool_calls": False,
        "response_format": {"type": "json_schema", "json_schema": {
            "name": "answer", "strict": True,
            "schema": {"type": "object", "properties": {"a": {"type": "string"}}}}},
        "logprobs": True, "top_logprobs": 2,
        "prediction": {"type": "content", "content": "It is sunny."},
        "seed": 3, "prompt_cache_key": "k", "safety_identifier": "u-1",
    }  # fmt: skip
    status, job = post(api, with_(messages=messages, **fields))
    assert status == 202, job
    sent = stored_request(api, job["id"])
    for name, value in fields.items():
        assert sent[name] == value, name
    assert sent["messages"][0]["role"] == "system"  # gpt-4o-mini takes developer as system
    assert sent["messages"][1:] == messages[1:]


def test_tool_choice_by_name_and_modes_are_accepted(api: FlaskClient) -> None:
    for choice in ("none", "auto", "required",
                   {"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": [
                       {"type": "function", "function": {"name": "get_weather"}}]}}):  # fmt: skip
        status, job = post(api, with_(tools=[WEATHER], tool_choice=choice))
        assert status == 202, (choice, job)
    status, job = post(api, with_(tool_choice="none"))  # "none" needs no tools
    assert status == 202, job


def test_vendor_parameters_reach_the_upstream_unchanged(api: FlaskClient) -> None:
    vendor = {"top_k": 40, "min_p": 0.05, "repetition_penalty": 1.1,
              "chat_template_kwargs": {"enable_thinking": False},
              "provider": {"order": ["groq"], "allow_fallbacks": False}}  # fmt: skip
    status, job = post(api, with_(**vendor))
    assert status == 202, job
    sent = stored_request(api, job["id"])
    assert {k: sent[k] for k in vendor} == vendor


def test_sluice_vendor_parameters_names_more_fields_to_forward(redis_url: str) -> None:
    settings = Settings.from_env(
        redis_url=redis_url, key_prefix="sluice-validation", queue="sluice-validation-unused",
        secret_key=None, vendor_parameters=("my_knob",),
    )  # fmt: skip
    app = create_app(settings)
    with app.test_client() as api:
        status, job = post(api, with_(my_knob={"x": 1}))
        assert status == 202, job
        assert stored_request(api, job["id"])["my_knob"] == {"x": 1}
        status, error = post(api, with_(other_knob=1))
        assert status == 400 and error["error"]["param"] == "other_knob"


def test_tool_definitions_and_images_count_in_the_prompt_and_estimates_are_marked(
    api: FlaskClient,
) -> None:
    _, plain = post(api, GOOD)
    _, with_tools = post(api, with_(tools=[WEATHER]))
    assert with_tools["prompt_tokens"] > plain["prompt_tokens"]
    assert plain["prompt_tokens_estimated"] is False
    low = {"type": "image_url", "image_url": {"url": PNG, "detail": "low"}}
    _, known = post(api, with_(messages=user({"type": "text", "text": "hi"}, low)))
    assert known["prompt_tokens"] >= plain["prompt_tokens"] + 85  # OpenAI's low-detail 85
    assert known["prompt_tokens_estimated"] is False  # a data URL's size is read
    remote = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    _, unknown = post(api, with_(messages=user({"type": "text", "text": "hi"}, remote)))
    assert unknown["prompt_tokens_estimated"] is True  # never fetched: estimated
    poll = api.get(unknown["url"]).get_json()
    assert poll["prompt_tokens_estimated"] is True
