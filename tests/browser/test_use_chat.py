"""The AI SDK's own ``useChat`` (ai 7 with @ai-sdk/react, React 19) in Chromium against
the real stack, with no transport options: a page from web/use-chat/, bundled by esbuild
for this module, is served on the gateway's origin (Playwright fulfils /use-chat/*; every
other request, /api/chat… included, reaches the real gateway)."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from playwright.sync_api import Browser, Page, Route, expect

from devtools.fake_upstream import FakeUpstream, expected_reply
from tests.helpers.support import ROOT, upstream_body

pytestmark = pytest.mark.integration
WEB = ROOT / "web"
ANSWER = "article.assistant"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """web/use-chat/ built with the pinned esbuild into a directory of the module's own."""
    node = shutil.which("node")
    if node is None or not (WEB / "node_modules" / "@ai-sdk" / "react").is_dir():
        if os.environ.get("CI"):
            pytest.fail("web/node_modules is needed (make test runs npm ci in web/)")
        pytest.skip("needs `npm ci` in web/ (the AI SDK, React and esbuild)")
    out = tmp_path_factory.mktemp("use-chat")
    subprocess.run([node, "use-chat/build.mjs", str(out)], cwd=WEB, check=True, timeout=60)
    return out


@pytest.fixture
def open_chat(browser: Browser, bundle: Path, gateway_url: str) -> Iterator[tuple[Page, str]]:
    """A function that opens the page for a chat (``?chat=…&model=…``); yields the page
    and the chat id."""
    context = browser.new_context()
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    def serve(route: Route) -> None:
        name = route.request.url.split("/use-chat/", 1)[1].split("?")[0] or "index.html"
        path = bundle / name
        if path.parent != bundle or not path.is_file():
            route.fulfill(status=404)
            return
        kind = "text/html" if name.endswith(".html") else "text/javascript"
        route.fulfill(status=200, body=path.read_bytes(), content_type=kind)

    page.route(f"{gateway_url}/use-chat/**", serve)
    chat = f"chat-{secrets.token_hex(4)}"
    yield page, chat
    context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


def visit(page: Page, gateway_url: str, chat: str, model: str) -> None:
    page.goto(f"{gateway_url}/use-chat/index.html?chat={chat}&model={quote(model)}")
    expect(page.locator("main")).to_have_attribute("data-status", "ready", timeout=10_000)


def send(page: Page, text: str) -> str:
    """Sends ``text``; returns the job id the gateway answered with."""
    with page.expect_response(lambda r: r.url.endswith("/api/chat")) as response:
        page.fill("#prompt", text)
        page.click("#send")
    return response.value.headers["x-sluice-job-id"]


def answer_text(page: Page) -> str:
    return page.locator(ANSWER).evaluate_all("els => els.map(e => e.textContent).join('|')")


def test_an_answer_streams_in_progressively_with_the_exact_text(
    open_chat: tuple[Page, str], gateway_url: str, upstream: FakeUpstream
) -> None:
    page, chat = open_chat
    visit(page, gateway_url, chat, "slow;delay=0.03;words=40")
    prompt = f"Hello useChat {secrets.token_hex(3)}"
    send(page, prompt)
    lengths: list[int] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        length = len(answer_text(page))
        if length and (not lengths or lengths[-1] != length):
            lengths.append(length)
        if page.locator("main").get_attribute("data-status") == "ready" and lengths:
            break
        time.sleep(0.02)
    expected = expected_reply(upstream_body(upstream, prompt))
    assert answer_text(page) == expected  # multi-byte UTF-8, a newline, U+2028: as sent
    assert len(lengths) >= 2 and lengths == sorted(lengths), lengths  # it grew, in steps
    assert page.locator("article.user").all_text_contents() == [prompt]


def test_a_tool_call_shows_as_a_tool_part(open_chat: tuple[Page, str], gateway_url: str) -> None:
    page, chat = open_chat
    visit(page, gateway_url, chat, "tools")
    send(page, "What is the weather in Paris?")
    tool = page.locator(f"{ANSWER} .tool")
    expect(tool).to_have_attribute("data-state", "input-available", timeout=10_000)
    assert tool.get_attribute("data-name") == "get_weather"
    assert tool.text_content() == '{"city":"Paris"}'


def test_a_reload_mid_answer_shows_the_whole_answer_once(
    open_chat: tuple[Page, str], gateway_url: str, upstream: FakeUpstream
) -> None:
    page, chat = open_chat
    visit(page, gateway_url, chat, "slow;delay=0.04;words=60")
    prompt = f"Survive a reload {secrets.token_hex(3)}"
    job_id = send(page, prompt)
    expect(page.locator(ANSWER)).not_to_have_text("", timeout=10_000)
    page.reload()  # mid-answer: the page loads the chat's messages, then resumes the stream
    expect(page.locator("article.user")).to_have_count(1, timeout=10_000)
    assert httpx.get(f"{gateway_url}/v1/jobs/{job_id}").json()["status"] == "running"
    expect(page.locator("main")).to_have_attribute("data-status", "streaming", timeout=10_000)
    expect(page.locator("main")).to_have_attribute("data-status", "ready", timeout=30_000)
    expected = expected_reply(upstream_body(upstream, prompt))
    assert page.locator(ANSWER).count() == 1  # no second copy of the message
    assert answer_text(page) == expected  # nothing missing, nothing doubled
    page.reload()  # ended: the answer comes from GET /api/chat/<id>, nothing to resume
    expect(page.locator(ANSWER)).to_have_count(1, timeout=10_000)
    assert answer_text(page) == expected


def test_stop_cancels_the_job_on_the_server(open_chat: tuple[Page, str], gateway_url: str) -> None:
    page, chat = open_chat
    visit(page, gateway_url, chat, "slow;delay=0.1;words=200")
    job_id = send(page, "Tell me a long story")
    expect(page.locator(ANSWER)).not_to_have_text("", timeout=10_000)
    page.click("#stop")
    expect(page.locator("main")).to_have_attribute("data-status", "ready", timeout=5_000)
    deadline = time.monotonic() + 5
    while httpx.get(f"{gateway_url}/v1/jobs/{job_id}").json()["status"] != "cancelled":
        assert time.monotonic() < deadline, "the job was not cancelled on the server"
        time.sleep(0.05)
    shown = answer_text(page)
    time.sleep(0.5)
    assert answer_text(page) == shown and re.search(r"\w", shown)  # it stopped where it was
