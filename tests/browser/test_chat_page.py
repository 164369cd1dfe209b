"""The chat page in a real browser against the real stack and the fake upstream."""

from __future__ import annotations

import json
import re
import secrets
import time
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from devtools.fake_upstream import FakeUpstream, expected_reply
from sluice.settings import Settings
from tests.helpers.stack import ProcessLogs
from tests.helpers.stack import RestartableGateway as Gateway
from tests.helpers.support import ARTIFACTS, upstream_body

pytestmark = pytest.mark.integration
SCREENSHOTS = ARTIFACTS / "screenshots"
LAST_ANSWER = "article.assistant >> nth=-1"


def set_model(page: Page, model: str) -> None:
    page.locator("#settings summary").click()
    page.fill("#model", model)
    page.locator("#settings summary").click()


def send(page: Page, text: str) -> None:
    page.fill("#prompt", text)
    page.press("#prompt", "Enter")


def stored_conversation(page: Page) -> list[dict]:
    return json.loads(page.evaluate("localStorage.getItem('sluice.conversation.v1')"))


def wait_status(page: Page, status: str, timeout: float = 20_000) -> None:
    expect(page.locator(LAST_ANSWER)).to_have_attribute("data-status", status, timeout=timeout)


def normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def test_answer_appears_progressively_and_ends_with_usage(
    page: Page, upstream: FakeUpstream
) -> None:
    set_model(page, "slow;delay=0.03;words=40")
    prompt = f"Hello there {secrets.token_hex(3)}"
    send(page, prompt)
    body = page.locator(f"{LAST_ANSWER} >> .body")
    states: list[str] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        text = body.inner_text()
        if text and (not states or states[-1] != text):
            states.append(text)
        if page.locator(LAST_ANSWER).get_attribute("data-status") == "succeeded":
            break
        time.sleep(0.02)
    wait_status(page, "succeeded")
    expected = expected_reply(upstream_body(upstream, prompt))
    assert len(states) >= 5, states  # the typing effect: many intermediate states
    assert all(normalise(expected).startswith(normalise(s)[:-3]) for s in states[:-1])
    assert stored_conversation(page)[-1]["content"] == expected
    assert normalise(body.inner_text()) == normalise(expected)
    meta = page.locator(f"{LAST_ANSWER} >> .meta").inner_text()
    assert "total tokens" in meta and "finish: stop" in meta
    expect(page.locator(f"{LAST_ANSWER}")).to_have_attribute("aria-busy", "false")
    expect(page.locator("#prompt")).to_be_focused()


def test_stop_cancels_the_job_on_the_server(page: Page, browser_gateway: Gateway) -> None:
    set_model(page, "slow;delay=0.1;words=200")
    send(page, "Tell me a long story")
    expect(page.locator(f"{LAST_ANSWER} >> .body")).not_to_be_empty(timeout=10_000)
    page.click("#stop-button")
    wait_status(page, "cancelled", timeout=5_000)
    job_id = page.locator(LAST_ANSWER).get_attribute("data-job-id")
    job = httpx.get(f"{browser_gateway.url}/v1/jobs/{job_id}").json()
    assert job["status"] == "cancelled"
    assert "Stopped" in page.locator(f"{LAST_ANSWER} >> .meta").inner_text()
    expect(page.locator("#stop-button")).to_be_hidden()


def test_a_gateway_killed_mid_answer_resumes_with_the_exact_text(
    page: Page, browser_gateway: Gateway, upstream: FakeUpstream
) -> None:
    set_model(page, "slow;delay=0.04;words=120")
    prompt = f"Survive a crash {secrets.token_hex(3)}"
    send(page, prompt)
    expect(page.locator(f"{LAST_ANSWER} >> .body")).not_to_be_empty(timeout=10_000)
    browser_gateway.kill()
    expect(page.locator("#connection")).to_have_text("Reconnecting…", timeout=5_000)
    time.sleep(1)  # the answer goes on being written while no gateway runs
    browser_gateway.start()
    wait_status(page, "succeeded", timeout=30_000)
    expected = expected_reply(upstream_body(upstream, prompt))
    assert stored_conversation(page)[-1]["content"] == expected  # nothing lost or doubled
    expect(page.locator("#connection")).to_have_text("")


def test_html_and_script_in_an_answer_render_inert(page: Page) -> None:
    set_model(page, "openai")
    attack = (
        '<img src=x onerror="window.__xss=1"> <script>window.__xss=2</script> '
        "[click](javascript:window.__xss=3)"
    )
    send(page, attack)
    wait_status(page, "succeeded")
    answer = page.locator(LAST_ANSWER)
    assert page.evaluate("window.__xss") is None
    assert answer.locator("script").count() == 0
    assert page.locator(".messages [onerror]").count() == 0
    hrefs = answer.locator("a").evaluate_all("els => els.map(e => e.getAttribute('href'))")
    assert not any(h and h.lower().startswith("javascript") for h in hrefs)
    for link in answer.locator("a").all():
        link.click()
    assert page.evaluate("window.__xss") is None
    user = page.locator("article.user >> nth=-1")
    assert "<script>" in user.inner_text()  # the user's words are shown, as text


def test_raw_html_in_an_answer_shows_as_text(page: Page) -> None:
    """As in ChatGPT: an answer that echoes HTML shows the characters, not a (sanitised,
    broken) image or a styled element."""
    set_model(page, "openai")
    send(page, 'Show <img src=x alt="pic"> and <b>bold</b> literally')
    wait_status(page, "succeeded")
    answer = page.locator(f"{LAST_ANSWER} >> .body")
    assert answer.locator("img").count() == 0
    assert answer.locator("b").count() == 0
    text = answer.inner_text()
    assert '<img src=x alt="pic">' in text and "<b>bold</b>" in text


def test_an_upstream_401_reads_as_a_bad_key_with_a_retry(page: Page) -> None:
    set_model(page, "http-401")
    send(page, "Hello")
    wait_status(page, "failed")
    error = page.locator(f"{LAST_ANSWER} >> .note.error")
    expect(error).to_contain_text("rejected the API key")
    expect(error).to_contain_text("Incorrect API key")
    set_model(page, "openai")
    page.locator(f"{LAST_ANSWER} >> button.retry").click()
    wait_status(page, "succeeded")
    assert page.locator("article.assistant").count() == 1  # the failed answer was replaced


def test_conversation_and_settings_survive_a_reload_and_new_chat_clears(page: Page) -> None:
    set_model(page, "openai")
    page.locator("#settings summary").click()
    page.fill("#temperature", "0.7")
    page.fill("#system", "Answer briefly.")
    send(page, "First question")
    wait_status(page, "succeeded")
    send(page, "Second question")
    wait_status(page, "succeeded")
    page.reload()
    expect(page.locator("article")).to_have_count(4)
    assert page.input_value("#model") == "openai"
    assert page.input_value("#temperature") == "0.7"
    assert page.input_value("#system") == "Answer briefly."
    page.click("#new-chat")
    expect(page.locator("article")).to_have_count(0)
    expect(page.locator("#empty-hint")).to_be_visible()


def test_every_turn_is_sent_with_the_parameters(page: Page, upstream: FakeUpstream) -> None:
    set_model(page, "openai")
    page.locator("#settings summary").click()
    page.fill("#max_tokens", "64")
    page.fill("#stop", "END\nSTOP")
    page.fill("#system", "Be terse.")
    send(page, "one")
    wait_status(page, "succeeded")
    second = f"two {secrets.token_hex(3)}"
    send(page, second)
    wait_status(page, "succeeded")
    body = upstream_body(upstream, second)
    assert [m["role"] for m in body["messages"]] == ["system", "user", "assistant", "user"]
    assert body["max_tokens"] == 64 and body["stop"] == ["END", "STOP"]


def test_trimmed_history_is_announced(page: Page) -> None:
    filler = "lorem ipsum " * 2000
    history = [
        {"role": role, "content": f"{i} {filler}"}
        for i in range(3)
        for role in ("user", "assistant")
    ]
    page.evaluate("h => localStorage.setItem('sluice.conversation.v1', JSON.stringify(h))", history)
    page.reload()
    set_model(page, "gpt-4")
    send(page, "And now?")
    wait_status(page, "succeeded")
    expect(page.locator(f"{LAST_ANSWER} >> .note.notice")).to_contain_text(
        "left out to fit the model's context window"
    )


def test_the_client_module_works_on_its_own(page: Page, upstream: FakeUpstream) -> None:
    prompt = f"module {secrets.token_hex(3)}"
    result = page.evaluate(
        """async (prompt) => {
          const { Sluice } = await import('/static/sluice.js');
          const sluice = new Sluice();
          const job = await sluice.createJob({model: 'openai', n: 2,
                                              messages: [{role: 'user', content: prompt}]});
          const stream = sluice.stream(job);
          const ids = [];
          for await (const event of stream) ids.push(event.id);
          const final = await stream.result;
          let failure = null;
          const bad = await sluice.createJob({model: 'http-429',
                                              messages: [{role: 'user', content: 'x'}]});
          try { await sluice.stream(bad).result; } catch (e) { failure = [e.type, e.status]; }
          return {ids, texts: final.choices.map(c => c.content), status: final.status,
                  failure};
        }""",
        prompt,
    )
    assert result["ids"] == list(range(1, len(result["ids"]) + 1))
    body = upstream_body(upstream, prompt)
    assert result["texts"] == [expected_reply(body, 0), expected_reply(body, 1)]
    assert result["status"] == "succeeded"
    assert result["failure"] == ["upstream_rate_limited", 429]


def test_page_sends_a_content_security_policy(browser_gateway: Gateway) -> None:
    response = httpx.get(browser_gateway.url + "/")
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "img-src 'self' data:" in csp


@pytest.mark.parametrize(("name", "width", "height"), [("desktop", 1280, 800), ("phone", 390, 844)])
def test_screenshots_for_review(page: Page, name: str, width: int, height: int) -> None:
    page.set_viewport_size({"width": width, "height": height})
    set_model(page, "openai")
    send(page, "Show me **Markdown** with `code`:\n\n```python\nprint('hi')\n```")
    wait_status(page, "succeeded")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path: Path = SCREENSHOTS / f"chat-{name}.png"
    page.screenshot(path=str(path), full_page=False)
    assert path.stat().st_size > 10_000
    overflow = page.evaluate("document.documentElement.scrollWidth > window.innerWidth")
    assert not overflow, "the page scrolls sideways"


def test_the_view_follows_the_answer_unless_the_reader_scrolls_up(page: Page) -> None:
    page.set_viewport_size({"width": 600, "height": 500})
    set_model(page, "slow;delay=0.01;words=1500")
    send(page, "A long answer please")
    at_bottom = "() => { const e = document.scrollingElement;" \
        " return e.scrollHeight - e.scrollTop - e.clientHeight < 100; }"  # fmt: skip
    page.wait_for_function("() => document.scrollingElement.scrollHeight > 1200", timeout=15_000)
    assert page.evaluate(at_bottom)  # it followed the growing answer
    page.mouse.wheel(0, -600)
    page.wait_for_timeout(300)
    scrolled_to = page.evaluate("document.scrollingElement.scrollTop")
    page.wait_for_timeout(700)  # more text arrives meanwhile
    assert page.evaluate("document.scrollingElement.scrollTop") == scrolled_to
    assert not page.evaluate(at_bottom)
    page.click("#stop-button")
    wait_status(page, "cancelled")


def test_a_reset_event_discards_the_partial_answer(page: Page, settings) -> None:
    from sluice.events import DELTA, DONE, RESET, Event
    from sluice.redis_client import make_redis
    from sluice.store import JobStore

    store = JobStore(make_redis(settings), settings)
    job, _ = store.create(model="m", request={}, prompt_tokens=1, truncated_messages=0)
    store.claim(job.id)  # appends `started`
    store.append(job.id, [Event(DELTA, {"index": 0, "content": "half an ans"})])
    store.append(job.id, [Event(RESET, {"reason": "worker_lost", "attempt": 2})])
    store.append(job.id, [Event(DELTA, {"index": 0, "content": "the whole answer"})])
    store.append(job.id, [Event(DONE, {"finish_reasons": ["stop"], "usage": None})])
    result = page.evaluate(
        """async (id) => {
          const { Sluice } = await import('/static/sluice.js');
          const stream = new Sluice().stream(id);
          const seen = [];
          stream.on('delta', (e) => seen.push(e.text));
          stream.on('reset', () => seen.push('<reset>'));
          const final = await stream.result;
          return {seen, text: final.text};
        }""",
        job.id,
    )
    assert result == {
        "seen": ["half an ans", "<reset>", "the whole answer"],
        "text": "the whole answer",
    }


def test_the_page_works_with_a_gateway_access_key(
    browser: Browser, settings: Settings, process_logs: ProcessLogs
) -> None:
    from tests.helpers.stack import Stack

    key = "sk-page-" + secrets.token_hex(6)
    stack = Stack(
        settings.with_(key_prefix=f"{settings.key_prefix}-pg", queue=f"{settings.queue}-pg",
                       access_keys=(key,)),
        process_logs, "page-acl",
    )  # fmt: skip
    stack.start_worker()
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(stack.url + "/")
        set_model(page, "openai")
        send(page, "without a key")
        wait_status(page, "failed")
        expect(page.locator(f"{LAST_ANSWER} >> .note.error")).to_contain_text("access key")
        page.locator("#settings summary").click()
        page.fill("#access_key", key)
        page.locator(f"{LAST_ANSWER} >> button.retry").click()
        wait_status(page, "succeeded")
    finally:
        context.close()
        stack.stop()
