"""The chat page shows what a model writes besides its answer (tool calls, reasoning,
refusals), sends images and JSON-mode requests, and none of it runs as HTML.

Streams the fake upstream cannot produce (hostile tool names, a reset in the middle of a
tool call) are written straight into the job's log and followed by the page as it follows
any job left streaming (a conversation in localStorage whose last answer is unfinished).
"""

from __future__ import annotations

import base64
import json
import secrets
import struct
import zlib
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from devtools.fake_upstream import FakeUpstream, expected_reasoning
from sluice.settings import Settings
from tests.helpers.stack import RestartableGateway as Gateway

from .test_chat_page import LAST_ANSWER, SCREENSHOTS, send, set_model, wait_status

pytestmark = pytest.mark.integration
XSS = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'


def tiny_png() -> bytes:
    """A valid 1×1 PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    header = chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 6, 0, 0, 0))
    pixels = chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00\xff"))
    return b"\x89PNG\r\n\x1a\n" + header + pixels + chunk(b"IEND", b"")


def attach(page: Page, name: str, data: bytes, mime: str = "image/png") -> None:
    page.set_input_files("#attach", files=[{"name": name, "mimeType": mime, "buffer": data}])


def recorded_with(upstream: FakeUpstream, marker: str) -> dict[str, Any]:
    """The last request whose last message's text parts contain ``marker``."""
    for recorded in reversed(upstream.requests):
        messages = (recorded.body or {}).get("messages") or []
        content = messages[-1].get("content") if messages else None
        parts = content if isinstance(content, list) else [{"type": "text", "text": content}]
        if any(marker in str(p.get("text", "")) for p in parts if isinstance(p, dict)):
            return recorded.body or {}
    raise AssertionError(f"the upstream never saw {marker!r}")


def follow_injected(
    page: Page, settings: Settings, events: list[tuple[str, dict]], **job: Any
) -> Callable[[list[tuple[str, dict]]], None]:
    """Write ``events`` into a new job's log and have the page follow it (as after a
    reload mid-answer); returns a function that appends more."""
    from sluice.events import Event
    from sluice.redis_client import make_redis
    from sluice.store import JobStore

    store = JobStore(make_redis(settings), settings)
    created, _ = store.create(model="m", request={}, prompt_tokens=1, truncated_messages=0)
    store.claim(created.id)  # appends `started`

    def append(more: list[tuple[str, dict]]) -> None:
        for kind, data in more:
            store.append(created.id, [Event(kind, data)])

    append(events)
    conversation = [
        {"role": "user", "content": "question"},
        {"role": "assistant", "content": "",
         "job": {"id": created.id, "status": "streaming", "lastEventId": 0, **job}},
    ]  # fmt: skip
    page.evaluate(
        "c => localStorage.setItem('sluice.conversation.v1', JSON.stringify(c))", conversation
    )
    page.reload()
    return append


def poll(gateway: Gateway, page: Page) -> dict[str, Any]:
    job_id = page.locator(LAST_ANSWER).get_attribute("data-job-id")
    return httpx.get(f"{gateway.url}/v1/jobs/{job_id}").json()


def test_tool_calls_are_shown_per_call_with_pretty_printed_arguments(
    page: Page, browser_gateway: Gateway
) -> None:
    set_model(page, "tools;calls=2")
    send(page, "What is the weather in Paris and the time in Tokyo?")
    wait_status(page, "succeeded")
    calls = poll(browser_gateway, page)["choices"][0]["tool_calls"]
    assert len(calls) == 2
    shown = page.locator(f"{LAST_ANSWER} >> details.tool-call")
    expect(shown).to_have_count(2)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "chat-tool-calls.png"))
    for i, call in enumerate(calls):
        view = shown.nth(i)
        expect(view).to_have_attribute("open", "")
        assert view.locator(".tool-name").inner_text() == call["function"]["name"]
        arguments = view.locator(".tool-arguments").inner_text()
        pretty = json.dumps(json.loads(call["function"]["arguments"]), indent=2)
        assert arguments == pretty
        assert view.get_attribute("data-complete") == "true"
        view.locator("summary").click()  # collapsible
        expect(view.locator(".tool-arguments")).to_be_hidden()
    meta = page.locator(f"{LAST_ANSWER} >> .meta").inner_text()
    assert "finish: tool_calls" in meta
    stored = json.loads(page.evaluate("localStorage.getItem('sluice.conversation.v1')"))
    assert stored[-1]["toolCalls"] == calls
    page.reload()  # the calls are kept with the conversation
    expect(page.locator(f"{LAST_ANSWER} >> details.tool-call")).to_have_count(2)


def test_a_refusal_is_shown_apart_from_the_answer(page: Page, browser_gateway: Gateway) -> None:
    set_model(page, "refusal")
    send(page, "Help me with something bad")
    wait_status(page, "succeeded")
    refusal = poll(browser_gateway, page)["choices"][0]["refusal"]
    assert refusal
    box = page.locator(f"{LAST_ANSWER} >> .refusal")
    expect(box).to_be_visible()
    expect(box).to_have_attribute("role", "note")
    assert box.locator(".refusal-text").inner_text() == refusal
    assert "refused" in box.inner_text().lower()
    assert refusal not in page.locator(f"{LAST_ANSWER} >> .body").inner_text()


def test_reasoning_is_shown_collapsed_above_the_answer(page: Page, upstream: FakeUpstream) -> None:
    set_model(page, "reasoning")
    prompt = f"Think first {secrets.token_hex(3)}"
    send(page, prompt)
    wait_status(page, "succeeded")
    details = page.locator(f"{LAST_ANSWER} >> details.reasoning")
    expect(details).to_be_visible()
    assert details.get_attribute("open") is None  # collapsed
    expect(details.locator("summary")).to_have_text("Reasoning")
    text = details.locator(".reasoning-text")
    expect(text).to_be_hidden()
    details.locator("summary").click()
    expect(text).to_be_visible()
    body = recorded_with(upstream, prompt)
    assert text.inner_text() == expected_reasoning(body)
    assert expected_reasoning(body) not in page.locator(f"{LAST_ANSWER} >> .body").inner_text()


def test_an_attached_image_is_sent_as_a_data_url_part(page: Page, upstream: FakeUpstream) -> None:
    set_model(page, "openai")
    png = tiny_png()
    expect(page.locator("#attach-hint")).to_contain_text("up to 5 MB")
    attach(page, "dot.png", png)
    preview = page.locator("#attachment")
    expect(preview).to_be_visible()
    expect(preview).to_contain_text("dot.png")
    prompt = f"What is in this picture {secrets.token_hex(3)}"
    send(page, prompt)
    wait_status(page, "succeeded")
    expect(preview).to_be_hidden()  # the attachment went with the message
    body = recorded_with(upstream, prompt)
    url = "data:image/png;base64," + base64.b64encode(png).decode()
    assert body["messages"][-1]["content"] == [
        {"type": "text", "text": prompt},
        {"type": "image_url", "image_url": {"url": url, "detail": "auto"}},
    ]
    expect(page.locator(f"{LAST_ANSWER} >> .body")).to_contain_text("[1 image]")
    thumbnail = page.locator("article.user >> nth=-1 >> img")
    assert thumbnail.get_attribute("src") == url
    assert page.evaluate("() => document.querySelector('article.user img').naturalWidth") == 1
    # the image stays in the conversation: the next turn sends it again
    second = f"And now {secrets.token_hex(3)}"
    send(page, second)
    wait_status(page, "succeeded")
    again = recorded_with(upstream, second)["messages"]
    assert again[0]["content"][1]["image_url"]["url"] == url


def test_older_images_give_way_when_the_request_would_outgrow_the_body_limit(
    page: Page, upstream: FakeUpstream
) -> None:
    set_model(page, "openai")
    big = tiny_png() + b"\x00" * 4_900_000  # 6.5 MB as a data URL: two exceed 10 MB
    attach(page, "first.png", big)
    first = f"first picture {secrets.token_hex(3)}"
    send(page, first)
    wait_status(page, "succeeded", timeout=60_000)
    attach(page, "second.png", big)
    second = f"second picture {secrets.token_hex(3)}"
    send(page, second)
    wait_status(page, "succeeded", timeout=60_000)
    messages = recorded_with(upstream, second)["messages"]
    assert messages[0]["content"] == [
        {"type": "text", "text": first},
        {"type": "text", "text": "[an image, first.png, was attached here]"},
    ]
    assert messages[-1]["content"][1]["type"] == "image_url"
    expect(page.locator(f"{LAST_ANSWER} >> .note.notice")).to_contain_text(
        "1 earlier image was left out to fit the gateway's request size limit"
    )


def test_a_too_large_image_and_a_non_image_are_refused_with_a_message(page: Page) -> None:
    big = tiny_png() + b"\x00" * 5_000_000
    attach(page, "big.png", big)
    error = page.locator("#attach-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("big.png")
    expect(error).to_contain_text(f"{len(big):,} bytes")
    expect(error).to_contain_text("up to 5 MB")
    expect(page.locator("#attachment")).to_be_hidden()
    text = b"just some words, named like a picture"
    attach(page, "fake.png", text)
    expect(error).to_contain_text("fake.png")
    expect(error).to_contain_text("not an image")
    expect(page.locator("#attachment")).to_be_hidden()
    attach(page, "ok.png", tiny_png())
    expect(error).to_be_hidden()
    expect(page.locator("#attachment")).to_contain_text("ok.png")


def test_json_output_sends_response_format_and_shows_the_answer_as_json(
    page: Page, upstream: FakeUpstream, settings: Settings, browser_gateway: Gateway
) -> None:
    set_model(page, "openai")
    page.check("#json-mode")
    prompt = f"Answer in JSON {secrets.token_hex(3)}"
    send(page, prompt)
    wait_status(page, "succeeded")
    assert recorded_with(upstream, prompt)["response_format"] == {"type": "json_object"}
    content = poll(browser_gateway, page)["choices"][0]["content"]
    pretty = json.dumps(json.loads(content), indent=2, ensure_ascii=False)
    assert pretty != content  # the fake upstream answers compact JSON
    block = page.locator(f"{LAST_ANSWER} >> .body pre.json-output code")
    assert block.inner_text() == pretty
    page.reload()
    expect(page.locator("#json-mode")).to_be_checked()  # the toggle is kept
    page.uncheck("#json-mode")
    plain = f"No JSON now {secrets.token_hex(3)}"
    send(page, plain)
    wait_status(page, "succeeded")
    assert "response_format" not in recorded_with(upstream, plain)

    answer = {"city": "Paris", "tags": ["<b>x</b>", XSS], "n": 2}
    text = json.dumps(answer, separators=(",", ":"))
    follow_injected(
        page, settings,
        [("delta", {"index": 0, "content": text[:9]}), ("delta", {"index": 0, "content": text[9:]}),
         ("done", {"finish_reasons": ["stop"], "usage": None})],
        json=True,
    )  # fmt: skip
    wait_status(page, "succeeded")
    block = page.locator(f"{LAST_ANSWER} >> .body pre.json-output code")
    assert block.inner_text() == json.dumps(answer, indent=2)
    assert page.locator(f"{LAST_ANSWER} >> .body b").count() == 0
    assert page.evaluate("window.__xss") is None


def test_reasoning_and_tool_calls_as_they_stream(page: Page, settings: Settings) -> None:
    """ "Thinking…" while the model only reasons; a call's arguments as written until they
    are complete JSON, then pretty-printed."""
    args = json.dumps({"city": "Paris", "days": [1, 2]})
    append = follow_injected(page, settings, [("delta", {"index": 0, "reasoning": "Hmm."})])
    reasoning = page.locator(f"{LAST_ANSWER} >> details.reasoning")
    expect(reasoning.locator("summary")).to_have_text("Thinking…")
    call = {"index": 0, "id": "call_1", "type": "function", "name": "forecast"}
    append([("delta", {"index": 0, "tool_call": {**call, "arguments": args[:12]}})])
    view = page.locator(f"{LAST_ANSWER} >> details.tool-call")
    expect(view.locator(".tool-arguments")).to_have_text(args[:12])
    expect(view).to_have_attribute("data-complete", "false")
    expect(reasoning.locator("summary")).to_have_text("Reasoning")
    append([("delta", {"index": 0, "tool_call": {"index": 0, "arguments": args[12:]}})])
    expect(view).to_have_attribute("data-complete", "true")
    assert view.locator(".tool-arguments").inner_text() == json.dumps(json.loads(args), indent=2)
    append([("done", {"finish_reasons": ["tool_calls"], "usage": None})])
    wait_status(page, "succeeded")


def test_model_output_in_tool_calls_reasoning_and_refusals_never_runs(
    page: Page, settings: Settings
) -> None:
    events = [
        ("delta", {"index": 0, "tool_call": {"index": 0, "id": "call_old", "type": "function",
                                             "name": "discarded", "arguments": "{"}}),
        ("reset", {"reason": "worker_lost", "attempt": 2}),
        ("delta", {"index": 0, "reasoning": f"thinking {XSS}"}),
        ("delta", {"index": 0, "refusal": f"no {XSS}"}),
        ("delta", {"index": 0, "tool_call": {"index": 0, "id": f"c{XSS}", "type": "function",
                                             "name": XSS, "arguments": ""}}),
        ("delta", {"index": 0, "tool_call": {"index": 0, "arguments": json.dumps({"q": XSS})[:7]}}),
        ("delta", {"index": 0, "tool_call": {"index": 0, "arguments": json.dumps({"q": XSS})[7:]}}),
        ("delta", {"index": 0, "tool_call": {"index": 1, "id": "c2", "type": "function",
                                             "name": "raw", "arguments": f"not json {XSS}"}}),
        ("done", {"finish_reasons": ["tool_calls"], "usage": None}),
    ]  # fmt: skip
    follow_injected(page, settings, events)
    wait_status(page, "succeeded")
    answer = page.locator(LAST_ANSWER)
    page.locator(f"{LAST_ANSWER} >> details.reasoning summary").click()
    calls = answer.locator("details.tool-call")
    expect(calls).to_have_count(2)  # the call before the reset is gone
    assert calls.nth(0).locator(".tool-name").inner_text() == XSS
    assert json.loads(calls.nth(0).locator(".tool-arguments").inner_text()) == {"q": XSS}
    assert calls.nth(1).locator(".tool-arguments").inner_text() == f"not json {XSS}"
    assert calls.nth(1).get_attribute("data-complete") == "false"
    assert answer.locator(".refusal-text").inner_text() == f"no {XSS}"
    assert answer.locator(".reasoning-text").inner_text() == f"thinking {XSS}"
    assert "discarded" not in answer.inner_text()
    assert answer.locator("img, script").count() == 0
    assert page.evaluate("window.__xss") is None


def test_a_file_name_never_runs_either(page: Page) -> None:
    name = '<img src=x onerror="window.__xss=1">.png'
    attach(page, name, tiny_png())
    expect(page.locator("#attachment")).to_contain_text(name)
    attach(page, name, b"hi", "text/plain")
    expect(page.locator("#attach-error")).to_contain_text(name)
    assert page.locator("#attachment img").count() == 1  # the thumbnail, not the name
    assert page.locator("[onerror]").count() == 0
    assert page.evaluate("window.__xss") is None
