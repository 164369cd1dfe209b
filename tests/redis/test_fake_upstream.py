"""The fake upstream must be faithful on the wire, or the integration tests prove nothing.

Everything here goes over real HTTP with `requests`, reading raw bytes and parsing SSE by the
spec (CR, LF and CRLF line ends; comments; event/id fields) rather than by `splitlines`.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from devtools.fake_upstream import (
    FakeUpstream,
    expected_logprobs,
    expected_reasoning,
    expected_refusal,
    expected_reply,
    expected_tool_calls,
    prompt_tokens,
    split_pieces,
)

HELLO = [{"role": "user", "content": "Say hi — ça va? 🙂"}]


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as up:
        yield up


def chat(
    up: FakeUpstream, model: str = "gpt-4o-mini", stream: bool = True, **extra: Any
) -> tuple[dict, requests.Response]:
    headers = extra.pop("headers", None)
    body = {"model": model, "messages": HELLO, "stream": stream, **extra}
    response = requests.post(
        f"{up.base_url}/chat/completions", json=body, stream=stream, timeout=5, headers=headers
    )
    return body, response


def raw_body(response: requests.Response) -> bytes:
    return b"".join(response.iter_content(chunk_size=None))


def parse_sse(raw: bytes) -> list[dict[str, str]]:
    """A spec-following SSE parser: splits lines on CRLF, CR or LF only (not U+2028)."""
    events: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for line in re.split(r"\r\n|\r|\n", raw.decode("utf-8")):
        if line == "":
            if "data" in current:
                events.append(current)
            current = {}
        elif line.startswith(":"):
            continue
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                current["data"] = f"{current['data']}\n{value}" if "data" in current else value
            else:
                current[name] = value
    return events


def payloads(raw: bytes) -> list[Any]:
    """The data of each event, JSON-decoded except the [DONE] sentinel."""
    return [e["data"] if e["data"] == "[DONE]" else json.loads(e["data"]) for e in parse_sse(raw)]


def content_of(chunks: list[Any], index: int = 0) -> str:
    return "".join(
        choice["delta"].get("content") or ""
        for chunk in chunks
        if isinstance(chunk, dict)
        for choice in chunk.get("choices", [])
        if choice["index"] == index
    )


def finish_reasons(chunks: list[Any]) -> list[str | None]:
    return [
        c["choices"][0]["finish_reason"] for c in chunks if isinstance(c, dict) and c.get("choices")
    ]


# --------------------------------------------------------------------------- default stream


def test_default_stream_shape_and_order(upstream: FakeUpstream) -> None:
    body, response = chat(upstream, stream_options={"include_usage": True})
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/event-stream")
    assert response.headers["Transfer-Encoding"] == "chunked"
    raw = raw_body(response)
    assert raw.endswith(b"}\n\ndata: [DONE]\n\n")
    chunks = payloads(raw)
    assert chunks[-1] == "[DONE]"
    role, *pieces, finish, usage_chunk, _ = chunks
    for chunk in chunks[:-1]:
        assert chunk["object"] == "chat.completion.chunk"
        assert chunk["id"] == role["id"] and chunk["id"].startswith("chatcmpl-")
        assert chunk["system_fingerprint"] == "fp_fake" and chunk["model"] == "gpt-4o-mini"
        assert "usage" in chunk
    assert role["choices"] == [
        {
            "index": 0,
            "delta": {"role": "assistant", "content": ""},
            "logprobs": None,
            "finish_reason": None,
        }
    ]
    assert all(p["usage"] is None and p["choices"][0]["finish_reason"] is None for p in pieces)
    assert "".join(p["choices"][0]["delta"]["content"] for p in pieces) == expected_reply(body)
    assert finish["choices"][0]["delta"] == {} and finish["choices"][0]["finish_reason"] == "stop"
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"] == {
        "prompt_tokens": prompt_tokens(body),
        "completion_tokens": len(pieces),
        "total_tokens": prompt_tokens(body) + len(pieces),
    }
    assert upstream.wait_for_no_open_streams(1)
    assert upstream.requests[-1].path == "/v1/chat/completions"
    assert upstream.requests[-1].body == body
    assert upstream.requests[-1].headers["Content-Type"] == "application/json"


def test_no_usage_chunk_unless_asked(upstream: FakeUpstream) -> None:
    body, response = chat(upstream, "openai;words=3")
    chunks = payloads(raw_body(response))
    assert chunks[-1] == "[DONE]"
    assert all("usage" not in c for c in chunks[:-1])
    assert finish_reasons(chunks)[-1] == "stop"
    assert content_of(chunks) == expected_reply(body)


def test_azure_prelude_and_filter_results(upstream: FakeUpstream) -> None:
    body, response = chat(upstream, "azure;words=2")
    chunks = payloads(raw_body(response))
    first = chunks[0]
    assert first["id"] == "" and first["choices"] == [] and first["object"] == ""
    results = first["prompt_filter_results"][0]["content_filter_results"]
    assert results["hate"] == {"filtered": False, "severity": "safe"}
    assert all("content_filter_results" in c["choices"][0] for c in chunks[1:-1])
    assert content_of(chunks) == expected_reply(body)


def test_provider_variants(upstream: FakeUpstream) -> None:
    opts = {"stream_options": {"include_usage": True}}
    _, response = chat(upstream, "no-usage;words=2", **opts)
    chunks = payloads(raw_body(response))
    assert all("usage" not in c for c in chunks[:-1]) and chunks[-1] == "[DONE]"

    _, response = chat(upstream, "rejects-stream-options", **opts)
    assert response.status_code == 400
    assert "stream_options" in response.json()["error"]["message"]
    _, response = chat(upstream, "rejects-stream-options;words=2")
    assert payloads(raw_body(response))[-1] == "[DONE]"

    _, response = chat(upstream, "llamacpp;words=2")
    chunks = payloads(raw_body(response))
    finish = chunks[-2]
    assert finish["choices"][0]["finish_reason"] == "stop"
    assert finish["usage"]["completion_tokens"] > 0 and "timings" in finish

    _, response = chat(upstream, "ollama-old;words=2")
    reasons = finish_reasons(payloads(raw_body(response)))
    assert set(reasons[:-1]) == {""} and reasons[-1] == "stop"


# --------------------------------------------------------------------------- wire details


def test_crlf_and_cr_line_endings(upstream: FakeUpstream) -> None:
    body, response = chat(upstream, "crlf;words=2")
    raw = raw_body(response)
    assert raw.endswith(b"data: [DONE]\r\n\r\n")
    assert raw.count(b"\n") == raw.count(b"\r\n") > 0
    assert content_of(payloads(raw)) == expected_reply(body)

    body, response = chat(upstream, "cr;words=2")
    raw = raw_body(response)
    assert b"\n" not in raw and raw.endswith(b"data: [DONE]\r\r")
    assert content_of(payloads(raw)) == expected_reply(body)


def test_fragmented_same_payload_in_tiny_chunks(upstream: FakeUpstream) -> None:
    def strip(chunks: list[Any]) -> list[Any]:
        return [
            {k: v for k, v in c.items() if k not in ("id", "created", "model")}
            if isinstance(c, dict)
            else c
            for c in chunks
        ]

    _, response = chat(upstream, "fragmented;words=1;gap=0")
    pieces = list(response.iter_content(chunk_size=None))
    assert max(len(p) for p in pieces) <= 3
    joined = b"".join(pieces)
    with pytest.raises(UnicodeDecodeError):  # some read really splits a UTF-8 character
        for p in pieces:
            p.decode("utf-8")
    _, reference = chat(upstream, "openai;words=1")
    assert strip(payloads(joined)) == strip(payloads(raw_body(reference)))


def test_comments_and_fields_are_ignorable(upstream: FakeUpstream) -> None:
    body, response = chat(upstream, "comments;words=2")
    raw = raw_body(response)
    for marker in (b": keep-alive\n", b"event: message\n", b"id: 2\n", b"retry: 3000\n"):
        assert marker in raw
    chunks = payloads(raw)
    assert chunks[-1] == "[DONE]" and content_of(chunks) == expected_reply(body)


# --------------------------------------------------------------------------- faults


def test_no_done_ends_after_finish(upstream: FakeUpstream) -> None:
    body, response = chat(upstream, "no-done;words=2", stream_options={"include_usage": True})
    chunks = payloads(raw_body(response))
    assert "[DONE]" not in chunks
    assert chunks[-1]["usage"]["completion_tokens"] > 0
    assert content_of(chunks) == expected_reply(body)


def test_truncated_cuts_the_connection(upstream: FakeUpstream) -> None:
    _, response = chat(upstream, "truncated;fail_after=2")
    received = []
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        for piece in response.iter_content(chunk_size=None):
            received.append(piece)
    chunks = payloads(b"".join(received))
    assert "[DONE]" not in chunks
    assert len(chunks) == 3 and set(finish_reasons(chunks)) == {None}


def test_error_in_stream_then_done(upstream: FakeUpstream) -> None:
    _, response = chat(upstream, "error-in-stream;fail_after=1")
    raw = raw_body(response)
    assert b'data: {"error": {"message": "The server had an error' in raw
    chunks = payloads(raw)
    assert chunks[-2]["error"]["type"] == "server_error" and chunks[-1] == "[DONE]"
    assert len(chunks) == 4


def test_error_event(upstream: FakeUpstream) -> None:
    _, response = chat(upstream, "error-event;fail_after=0")
    events = parse_sse(raw_body(response))
    assert events[-1]["event"] == "error"
    assert json.loads(events[-1]["data"])["error"]["type"] == "overloaded_error"
    assert all(e["data"] != "[DONE]" for e in events)


def test_stall_client_close_is_counted(upstream: FakeUpstream) -> None:
    _, response = chat(upstream, "stall;fail_after=2")
    reads = response.iter_content(chunk_size=None)  # abandoning it would close the socket
    buffer = b""
    while buffer.count(b"\n\n") < 3:  # role + 2 pieces, then silence
        buffer += next(reads)
    time.sleep(0.1)
    assert upstream.open_streams == 1 and upstream.streams_closed_by_client == 0
    response.close()
    start = time.monotonic()
    assert upstream.wait_for_no_open_streams(1.0)
    assert time.monotonic() - start < 1.0
    assert upstream.streams_closed_by_client == 1


def test_silent_sends_nothing(upstream: FakeUpstream) -> None:
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.post(
            f"{upstream.base_url}/chat/completions",
            json={"model": "silent", "messages": HELLO, "stream": True},
            timeout=(1, 0.3),
        )
    assert upstream.wait_for_no_open_streams(1.0)
    assert upstream.streams_closed_by_client == 1


def test_client_going_away_mid_stream_is_quiet(
    upstream: FakeUpstream, capfd: pytest.CaptureFixture[str]
) -> None:
    _, response = chat(upstream, "slow;words=200;delay=0.01")
    next(response.iter_content(chunk_size=None))
    response.close()
    assert upstream.wait_for_no_open_streams(1.0)
    assert upstream.streams_closed_by_client == 1
    assert "Traceback" not in capfd.readouterr().err


# --------------------------------------------------------------------------- HTTP errors


def test_api_key_required_and_masked() -> None:
    with FakeUpstream(api_key="sk-right-key-123") as up:
        url = f"{up.base_url}/chat/completions"
        body = {"model": "openai;words=1", "messages": HELLO}
        wrong = requests.post(url, json=body, headers={"Authorization": "Bearer sk-abcdefghxyz"})
        assert wrong.status_code == 401
        assert wrong.json() == {
            "error": {
                "message": "Incorrect API key provided: sk-ab***yz. You can find your API key "
                "at https://platform.openai.com/account/api-keys.",
                "type": "invalid_request_error",
                "param": None,
                "code": "invalid_api_key",
            }
        }
        missing = requests.get(f"{up.base_url}/models")
        assert missing.status_code == 401
        assert "didn't provide an API key" in missing.json()["error"]["message"]
        ok = requests.post(url, json=body, headers={"Authorization": "Bearer sk-right-key-123"})
        assert ok.status_code == 200 and ok.json()["object"] == "chat.completion"


def test_extra_keys_are_accepted_and_key_echo_full_quotes_the_whole_key() -> None:
    """A user's own key beside the server's; a 401 that quotes the key whole, as servers
    other than OpenAI do (the default stays OpenAI's masked quote)."""
    with FakeUpstream(
        api_key="sk-right-key-123", extra_keys={"sk-user-key-456"}, key_echo="full"
    ) as up:
        url = f"{up.base_url}/chat/completions"
        body = {"model": "openai;words=1", "messages": HELLO}
        extra = requests.post(url, json=body, headers={"Authorization": "Bearer sk-user-key-456"})
        assert extra.status_code == 200
        wrong = requests.get(
            f"{up.base_url}/models", headers={"Authorization": "Bearer sk-wrong-9"}
        )
        assert wrong.status_code == 401
        assert "Incorrect API key provided: sk-wrong-9." in wrong.json()["error"]["message"]
    with pytest.raises(ValueError, match="key_echo"):
        FakeUpstream(key_echo="half")


def test_http_401_scenario(upstream: FakeUpstream) -> None:
    _, response = chat(upstream, "http-401", headers={"Authorization": "Bearer sk-abcdefghxyz"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"
    assert "sk-ab***yz" in response.json()["error"]["message"]


def test_http_error_scenarios(upstream: FakeUpstream) -> None:
    expected = {
        "http-400": "context_length_exceeded",
        "http-403": "unsupported_country_region_territory",
        "http-404": "model_not_found",
        "http-500": None,
        "http-503": None,
    }
    for model, code in expected.items():
        _, response = chat(upstream, model)
        assert response.status_code == int(model[-3:])
        assert response.json()["error"]["code"] == code
    _, response = chat(upstream, "http-404")
    assert "The model `http-404` does not exist" in response.json()["error"]["message"]


def test_http_429_headers(upstream: FakeUpstream) -> None:
    _, response = chat(upstream, "http-429;retry_after=2")
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "2"
    assert response.headers["retry-after-ms"] == "2000"
    assert response.headers["x-ratelimit-remaining-requests"] == "0"
    assert response.json()["error"]["code"] == "rate_limit_exceeded"


def test_http_429_then_ok(upstream: FakeUpstream) -> None:
    _, first = chat(upstream, "http-429-then-ok;failures=1;words=2")
    assert first.status_code == 429
    body, second = chat(upstream, "http-429-then-ok;failures=1;words=2")
    assert second.status_code == 200
    assert content_of(payloads(raw_body(second))) == expected_reply(body)
    _, other = chat(upstream, "http-500-then-ok")  # counted per exact model string
    assert other.status_code == 500


def test_unknown_path_is_404(upstream: FakeUpstream) -> None:
    response = requests.post(f"{upstream.base_url}/completions", json={})
    assert response.status_code == 404
    assert response.json()["error"]["message"] == "Invalid URL (POST /v1/completions)"


# --------------------------------------------------------------------------- other shapes


def test_non_streaming_completion(upstream: FakeUpstream) -> None:
    body, response = chat(upstream, stream=False)
    assert response.status_code == 200
    data = response.json()
    assert data["object"] == "chat.completion" and data["id"].startswith("chatcmpl-")
    choice = data["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"] == expected_reply(body)
    assert choice["finish_reason"] == "stop"
    usage = data["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_keep_alive_reuses_the_connection(upstream: FakeUpstream) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", upstream.port, timeout=5)
    body = json.dumps({"model": "openai;words=1", "messages": HELLO, "stream": True})
    sockets = set()
    for method, path in [("POST", "/v1/chat/completions"), ("GET", "/v1/models")] * 2:
        conn.request(method, path, body=body if method == "POST" else None)
        response = conn.getresponse()
        assert response.status == 200 and response.getheader("Connection") != "close"
        response.read()
        sockets.add(id(conn.sock))
    conn.close()
    assert len(sockets) == 1 and len(upstream.requests) == 4


def test_n_choices_interleave(upstream: FakeUpstream) -> None:
    body, response = chat(upstream, "openai;words=2", n=2, stream_options={"include_usage": True})
    chunks = payloads(raw_body(response))
    indexes = [c["choices"][0]["index"] for c in chunks if isinstance(c, dict) and c["choices"]]
    assert indexes[:4] == [0, 1, 0, 1]
    assert content_of(chunks, 0) == expected_reply(body, 0)
    assert content_of(chunks, 1) == expected_reply(body, 1)
    assert expected_reply(body, 0) != expected_reply(body, 1)
    finishes = [
        c["choices"][0]
        for c in chunks
        if isinstance(c, dict) and c["choices"] and c["choices"][0]["finish_reason"]
    ]
    assert sorted(f["index"] for f in finishes) == [0, 1]
    pieces = len(split_pieces(expected_reply(body, 0))) + len(split_pieces(expected_reply(body, 1)))
    assert chunks[-2]["usage"]["completion_tokens"] == pieces


def test_max_tokens_gives_length(upstream: FakeUpstream) -> None:
    body, response = chat(upstream, max_tokens=5, stream_options={"include_usage": True})
    chunks = payloads(raw_body(response))
    assert finish_reasons(chunks)[-1] == "length"
    assert content_of(chunks) == expected_reply(body)
    assert len(split_pieces(expected_reply(body))) == 5
    assert chunks[-2]["usage"]["completion_tokens"] == 5


def test_reasoning_before_content(upstream: FakeUpstream) -> None:
    body, response = chat(upstream, "reasoning;words=2")
    chunks = [c for c in payloads(raw_body(response)) if isinstance(c, dict)]
    deltas = [c["choices"][0]["delta"] for c in chunks[1:-1]]
    reasoning = [d for d in deltas if d.get("reasoning_content")]
    assert reasoning and all(d["content"] is None for d in reasoning)
    assert deltas.index(reasoning[-1]) < min(i for i, d in enumerate(deltas) if d.get("content"))
    assert "".join(d["reasoning_content"] for d in reasoning) == expected_reasoning(body)
    assert content_of(chunks) == expected_reply(body)


def test_models_listing() -> None:
    with FakeUpstream() as up:
        data = requests.get(f"{up.base_url}/models").json()
        ids = {m["id"]: m["owned_by"] for m in data["data"]}
        assert data["object"] == "list"
        assert {"gpt-4o-mini", "gpt-4o", "o3-mini", "sluice-demo"} <= set(ids)
    with FakeUpstream(demo=True) as up:
        assert up.default_delay == 0.03
        data = requests.get(f"{up.base_url}/models").json()
        ids = {m["id"]: m["owned_by"] for m in data["data"]}
        assert {"sluice-demo", "openai", "stall", "reasoning"} <= set(ids)
        assert set(ids.values()) == {"sluice-demo-upstream"}
        assert all(m["object"] == "model" for m in data["data"])


def test_cli_announces_demo_upstream() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "devtools.fake_upstream", "--port", str(port), "--delay", "0"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        banner = proc.stderr.readline()
        assert "DEMO upstream" in banner and "NOT a real LLM" in banner
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        body = {"model": "sluice-demo", "messages": HELLO, "stream": True}
        response = requests.post(url, json=body, timeout=5)
        assert response.headers["x-sluice-upstream"] == "demo"
        assert content_of(payloads(response.content)) == expected_reply(body)
    finally:
        proc.terminate()
        proc.wait(timeout=5)


# -- what it sent, and the disruptions the chaos soak schedules ------------------------------


def test_each_request_records_its_id_and_exactly_what_it_sent(upstream: FakeUpstream) -> None:
    body, response = chat(upstream, "reasoning", n=2)
    chunks = payloads(raw_body(response))
    assert upstream.wait_for_no_open_streams(5)  # its thread has recorded the end
    record = upstream.requests[-1]
    assert response.headers["x-request-id"] == record.request_id
    assert record.request_id.startswith("req_")
    assert record.status == 200 and record.finished
    assert record.sent == {0: content_of(chunks, 0), 1: content_of(chunks, 1)}
    assert record.sent[0] == expected_reply(body, 0)
    assert record.reasoning_sent[0] == expected_reasoning(body)


def test_a_cut_stream_records_only_what_was_written(upstream: FakeUpstream) -> None:
    body, response = chat(upstream, "slow;delay=0.05;words=40")
    received = b""
    with pytest.raises(requests.exceptions.ChunkedEncodingError):  # no terminating chunk
        for chunk in response.iter_content(chunk_size=None):
            received += chunk
            if received.count(b'"content":"') == 4:
                assert upstream.cut_streams() == 1
    assert upstream.wait_for_no_open_streams(5)  # its thread has recorded its last write
    record = upstream.requests[-1]
    assert not record.finished
    assert record.sent[0] == content_of(payloads(received))
    assert expected_reply(body).startswith(record.sent[0]) and record.sent[0]


def test_a_stall_holds_every_stream(upstream: FakeUpstream) -> None:
    upstream.disruptions.stall(0.6)
    started = time.monotonic()
    _body, response = chat(upstream, "openai;words=3")
    raw_body(response)
    assert time.monotonic() - started >= 0.6


@pytest.mark.parametrize(("scenario", "status"), [("http-429", 429), ("http-500", 500)])
def test_a_refusal_window_answers_every_request_with_its_error(
    upstream: FakeUpstream, scenario: str, status: int
) -> None:
    upstream.disruptions.refuse(scenario, 0.5)
    assert chat(upstream)[1].status_code == status
    time.sleep(0.6)
    assert chat(upstream)[1].status_code == 200


def test_streams_can_end_without_done_for_a_while(upstream: FakeUpstream) -> None:
    upstream.disruptions.omit_done(5)
    _body, response = chat(upstream)
    raw = raw_body(response)
    assert b"[DONE]" not in raw and finish_reasons(payloads(raw))[-1] == "stop"


def test_a_close_delimited_stream_has_no_framing_and_ends_with_the_connection(
    upstream: FakeUpstream,
) -> None:
    """``framing=close``: the same bytes as OpenAI's stream, but without chunked encoding
    or a length; the body is over when the server closes the connection."""
    with socket.create_connection(("127.0.0.1", upstream.port), timeout=5) as conn:
        body = json.dumps({"model": "openai;framing=close", "messages": HELLO, "stream": True})
        conn.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n{body}".encode()
        )
        raw = b""
        while data := conn.recv(65536):  # returns b"" only once the server has closed
            raw += data
    head, _, payload = raw.partition(b"\r\n\r\n")
    assert b"transfer-encoding" not in head.lower() and b"content-length" not in head.lower()
    assert b"connection: close" in head.lower()
    assert content_of(payloads(payload)) == expected_reply(json.loads(body))


# -- tool calls, structured output, refusals, logprobs, echo ---------------------------------

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}},
    },
}
CALL_ID = re.compile(r"call_[A-Za-z0-9]{24}")


def choice_chunks(chunks: list[Any], index: int = 0) -> list[dict]:
    """The choice objects of one index, in stream order (usage-only chunks skipped)."""
    return [
        choice
        for chunk in chunks
        if isinstance(chunk, dict)
        for choice in chunk.get("choices", [])
        if choice["index"] == index
    ]


def assemble_tool_calls(chunks: list[Any], index: int = 0) -> list[dict]:
    """Tool calls as a client assembles them: a fragment with an id opens call `index`,
    the others append to its arguments (or custom input)."""
    calls: dict[int, dict] = {}
    for choice in choice_chunks(chunks, index):
        for fragment in choice["delta"].get("tool_calls") or ():
            if "id" in fragment:
                kind = fragment["type"]
                assert fragment["index"] not in calls
                calls[fragment["index"]] = {
                    "id": fragment["id"],
                    "type": kind,
                    kind: dict(fragment[kind]),
                }
            else:
                call = calls[fragment["index"]]
                kind = call["type"]
                for key, piece in fragment[kind].items():
                    call[kind][key] += piece
    return [calls[i] for i in sorted(calls)]


def without_ids(calls: list[dict]) -> list[dict]:
    return [{k: v for k, v in call.items() if k != "id"} for call in calls]


def test_tool_call_stream_shape(upstream: FakeUpstream) -> None:
    body, response = chat(upstream, tools=[WEATHER], stream_options={"include_usage": True})
    chunks = payloads(raw_body(response))
    assert chunks[-1] == "[DONE]"
    choices = choice_chunks(chunks)
    first, *fragments, finish = choices
    [header] = first["delta"]["tool_calls"]
    assert first["delta"] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "index": 0,
                "id": header["id"],
                "type": "function",
                "function": {"name": "get_weather", "arguments": ""},
            }
        ],
        "refusal": None,
    }
    assert CALL_ID.fullmatch(header["id"])
    assert first["logprobs"] is None and first["finish_reason"] is None
    for choice in fragments:
        [fragment] = choice["delta"]["tool_calls"]
        assert choice["delta"].keys() == {"tool_calls"} and choice["finish_reason"] is None
        assert fragment.keys() == {"index", "function"} and fragment["index"] == 0
        assert fragment["function"].keys() == {"arguments"}
        assert 0 < len(fragment["function"]["arguments"]) <= 4
    assert fragments[0]["delta"]["tool_calls"][0]["function"]["arguments"] == '{"ci'
    assert finish["delta"] == {} and finish["finish_reason"] == "tool_calls"
    calls = assemble_tool_calls(chunks)
    assert without_ids(calls) == without_ids(expected_tool_calls(body))
    assert json.loads(calls[0]["function"]["arguments"]) == {"city": "Paris", "unit": "celsius"}
    usage = chunks[-2]
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == len(fragments)
    assert content_of(chunks) == ""
    assert upstream.wait_for_no_open_streams(5)
    assert upstream.requests[-1].tool_calls_sent == {0: calls}
    assert upstream.requests[-1].pieces_sent == len(fragments)


def test_parallel_calls_cycle_through_the_tools(upstream: FakeUpstream) -> None:
    body, response = chat(upstream, "openai;calls=3", tools=[WEATHER, TIME])
    chunks = payloads(raw_body(response))
    calls = assemble_tool_calls(chunks)
    assert [c["function"]["name"] for c in calls] == ["get_weather", "get_time", "get_weather"]
    assert len({c["id"] for c in calls}) == 3
    assert without_ids(calls) == without_ids(expected_tool_calls(body))
    headers = [
        fragment
        for choice in choice_chunks(chunks)
        for fragment in choice["delta"].get("tool_calls") or ()
        if "id" in fragment
    ]
    assert [h["index"] for h in headers] == [0, 1, 2]
    later = [c for c in choice_chunks(chunks)[1:] if "role" in c["delta"]]
    assert later == []  # role, content and refusal only on the first chunk

    body, response = chat(upstream, "openai;calls=3", tools=[WEATHER, TIME], stream=False)
    message = response.json()["choices"][0]["message"]
    assert response.json()["choices"][0]["finish_reason"] == "tool_calls"
    assert message["content"] is None and message["refusal"] is None
    assert without_ids(message["tool_calls"]) == without_ids(expected_tool_calls(body))
    assert all(CALL_ID.fullmatch(c["id"]) for c in message["tool_calls"])


def test_named_tool_choice_and_no_parallel_calls(upstream: FakeUpstream) -> None:
    named = {"type": "function", "function": {"name": "get_time"}}
    body, response = chat(upstream, "openai;calls=2", tools=[WEATHER, TIME], tool_choice=named)
    calls = assemble_tool_calls(payloads(raw_body(response)))
    assert without_ids(calls) == [
        {"type": "function", "function": {"name": "get_time", "arguments": '{"zone":"zone-value"}'}}
    ]
    body, response = chat(
        upstream, "openai;calls=2", tools=[WEATHER, TIME], parallel_tool_calls=False
    )
    calls = assemble_tool_calls(payloads(raw_body(response)))
    assert [c["function"]["name"] for c in calls] == ["get_weather"]
    body, response = chat(upstream, "openai;calls=2", tools=[WEATHER], tool_choice="none")
    chunks = payloads(raw_body(response))
    assert assemble_tool_calls(chunks) == [] and content_of(chunks) == expected_reply(body)
    assert finish_reasons(chunks)[-1] == "stop"


def test_custom_tool_streams_its_input(upstream: FakeUpstream) -> None:
    shell = {"type": "custom", "custom": {"name": "shell", "description": "runs a command"}}
    body, response = chat(upstream, tools=[shell])
    chunks = payloads(raw_body(response))
    fragments = [
        f
        for c in choice_chunks(chunks)
        for f in c["delta"].get("tool_calls") or ()
        if "id" not in f
    ]
    assert fragments and all(f.keys() == {"index", "custom"} for f in fragments)
    assert all(f["custom"].keys() == {"input"} for f in fragments)
    calls = assemble_tool_calls(chunks)
    assert calls[0]["custom"] == {
        "name": "shell",
        "input": "Input for shell from the Sluice demo upstream.",
    }
    assert without_ids(calls) == without_ids(expected_tool_calls(body))
    body, response = chat(upstream, tools=[shell], stream=False)
    assert without_ids(response.json()["choices"][0]["message"]["tool_calls"]) == without_ids(
        expected_tool_calls(body)
    )


def test_tool_result_round_trip(upstream: FakeUpstream) -> None:
    _, response = chat(upstream, "tools")  # no tools in the request: the built-in one
    [call] = assemble_tool_calls(payloads(raw_body(response)))
    assert call["function"] == {"name": "get_weather", "arguments": '{"city":"Paris"}'}
    messages = [
        *HELLO,
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": "18°C, sunny"},
    ]
    body, response = chat(upstream, "tools", messages=messages, tools=[WEATHER])
    chunks = payloads(raw_body(response))
    assert assemble_tool_calls(chunks) == []
    assert content_of(chunks) == expected_reply(body)
    assert "The tool said: «18°C, sunny»." in content_of(chunks)
    assert finish_reasons(chunks)[-1] == "stop"


def test_truncated_cuts_mid_arguments(upstream: FakeUpstream) -> None:
    _, response = chat(upstream, "truncated;fail_after=2", tools=[WEATHER])
    received = b""
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        for piece in response.iter_content(chunk_size=None):
            received += piece
    [call] = assemble_tool_calls(payloads(received))
    assert call["function"]["arguments"] == '{"city":'


def test_max_tokens_cuts_tool_arguments(upstream: FakeUpstream) -> None:
    body, response = chat(upstream, tools=[WEATHER], max_tokens=2)
    chunks = payloads(raw_body(response))
    assert finish_reasons(chunks)[-1] == "length"
    assert without_ids(assemble_tool_calls(chunks)) == without_ids(expected_tool_calls(body))
    assert expected_tool_calls(body)[0]["function"]["arguments"] == '{"city":'


def test_structured_output_matches_its_schema(upstream: FakeUpstream) -> None:
    schema = {
        "type": "object",
        "properties": {
            "title": {"type": "string"},
            "rating": {"type": "integer", "minimum": 1, "maximum": 5},
            "tags": {"type": "array", "items": {"type": "string"}},
            "author": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "alive": {"type": "boolean"}},
                "required": ["name", "alive"],
                "additionalProperties": False,
            },
        },
        "required": ["title", "rating", "tags", "author"],
        "additionalProperties": False,
    }
    fmt = {"type": "json_schema", "json_schema": {"name": "book", "schema": schema, "strict": True}}
    body, response = chat(upstream, response_format=fmt)
    chunks = payloads(raw_body(response))
    pieces = [c["delta"]["content"] for c in choice_chunks(chunks) if c["delta"].get("content")]
    assert len(pieces) > 1 and all(len(p) <= 4 for p in pieces)
    document = json.loads(content_of(chunks))
    assert content_of(chunks) == expected_reply(body)

    def check(value: Any, node: dict) -> None:  # the schema's keywords used above, by hand
        kinds = {"object": dict, "array": list, "string": str, "boolean": bool, "integer": int}
        assert isinstance(value, kinds[node["type"]])
        if node["type"] == "object":
            assert set(node["required"]) <= set(value) <= set(node["properties"])
            for key, sub in value.items():
                check(sub, node["properties"][key])
        if node["type"] == "integer":
            assert node["minimum"] <= value <= node["maximum"]

    check(document, schema)

    body, response = chat(upstream, response_format={"type": "json_object"}, stream=False)
    content = response.json()["choices"][0]["message"]["content"]
    assert content == expected_reply(body)
    assert json.loads(content) == {"answer": expected_reply({"model": "openai", "messages": HELLO})}


def test_refusal_stream_and_message(upstream: FakeUpstream) -> None:
    _, response = chat(upstream, "refusal", stream_options={"include_usage": True})
    chunks = payloads(raw_body(response))
    first, *pieces, finish = choice_chunks(chunks)
    assert first["delta"] == {"role": "assistant", "content": None, "refusal": ""}
    assert all(p["delta"].keys() == {"refusal"} for p in pieces)
    assert "".join(p["delta"]["refusal"] for p in pieces) == expected_refusal()
    assert expected_refusal() == "I'm sorry, I can't help with that request."
    assert finish["delta"] == {} and finish["finish_reason"] == "stop"
    assert chunks[-2]["usage"]["completion_tokens"] == len(pieces)
    assert content_of(chunks) == ""
    assert upstream.wait_for_no_open_streams(5)
    assert upstream.requests[-1].refusal_sent == {0: expected_refusal()}

    _, response = chat(upstream, "refusal", stream=False)
    choice = response.json()["choices"][0]
    assert choice["message"] == {
        "role": "assistant",
        "content": None,
        "refusal": expected_refusal(),
    }
    assert choice["finish_reason"] == "stop"


def test_logprobs_on_every_content_chunk(upstream: FakeUpstream) -> None:
    body, response = chat(upstream, "openai;words=3", logprobs=True, top_logprobs=2)
    chunks = payloads(raw_body(response))
    role, *pieces, finish = choice_chunks(chunks)
    assert role["logprobs"] is None and finish["logprobs"] is None
    entries = []
    for piece in pieces:
        assert piece["logprobs"]["refusal"] is None
        [entry] = piece["logprobs"]["content"]
        assert entry["token"] == piece["delta"]["content"]
        assert entry["bytes"] == list(entry["token"].encode()) and entry["logprob"] < 0
        assert entry["top_logprobs"][0] == {k: entry[k] for k in ("token", "logprob", "bytes")}
        assert len(entry["top_logprobs"]) == 2
        assert all(t.keys() == {"token", "logprob", "bytes"} for t in entry["top_logprobs"])
        entries.append(entry)
    assert entries == expected_logprobs(body)

    body, response = chat(upstream, "openai;words=3", logprobs=True, stream=False)
    logprobs = response.json()["choices"][0]["logprobs"]
    assert logprobs == {"content": expected_logprobs(body), "refusal": None}
    assert all(e["top_logprobs"] == [] for e in logprobs["content"])
    assert "".join(e["token"] for e in logprobs["content"]) == expected_reply(body)

    _, response = chat(upstream, "refusal", logprobs=True)
    for piece in choice_chunks(payloads(raw_body(response)))[1:-1]:
        assert piece["logprobs"]["content"] is None
        assert piece["logprobs"]["refusal"][0]["token"] == piece["delta"]["refusal"]

    _, response = chat(upstream, "openai;words=3")  # not asked: null everywhere
    assert all(c["logprobs"] is None for c in choice_chunks(payloads(raw_body(response))))


@pytest.mark.parametrize("top", [21, -1])
def test_top_logprobs_out_of_range_is_a_400(upstream: FakeUpstream, top: int) -> None:
    _, response = chat(upstream, logprobs=True, top_logprobs=top)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["code"] is None
    assert error["param"] == "top_logprobs" and "top_logprobs" in error["message"]
    _, response = chat(upstream, logprobs=True, top_logprobs=20)
    assert response.status_code == 200


def test_echo_shows_the_fields_that_arrived(upstream: FakeUpstream) -> None:
    extra = {"temperature": 0.25, "seed": 7, "metadata": {"k": "v"}, "tools": [WEATHER]}
    body, response = chat(upstream, "echo", **extra)
    text = content_of(payloads(raw_body(response)))
    assert text == expected_reply(body)
    assert json.loads(text) == {k: v for k, v in body.items() if k != "messages"}
    assert text == json.dumps({k: v for k, v in body.items() if k != "messages"}, sort_keys=True)
    assert upstream.requests[-1].body == body  # the in-process record still works


def test_image_parts_reach_the_reply(upstream: FakeUpstream) -> None:
    parts = [
        {"type": "text", "text": "What is in this picture?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO", "detail": "low"}},
    ]
    body, response = chat(upstream, messages=[{"role": "user", "content": parts}])
    text = content_of(payloads(raw_body(response)))
    assert text == expected_reply(body)
    assert "«What is in this picture?» [1 image]." in text
