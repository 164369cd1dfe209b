"""Headless Chromium (Debian's ``chromium``) driven by Python Playwright, against a
gateway process of its own that a test may kill and restart on the same port
(``browser_gateway``)."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.helpers.stack import RestartableGateway

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-gpu",
    "--no-first-run",
]


def chromium_path() -> str | None:
    return os.environ.get("SLUICE_CHROMIUM") or shutil.which("chromium") or None


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    path = chromium_path()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (.ci/run installs it)")
        pytest.skip("chromium is not installed: apt-get install chromium")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@contextlib.contextmanager
def open_page(browser: Browser, url: str, init_script: str | None = None) -> Iterator[Page]:
    """The page at ``url`` in a fresh context (``init_script`` run before the page's
    own); an uncaught error in the page fails the test that used it."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    if init_script is not None:
        context.add_init_script(init_script)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url)
    yield page
    context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


@pytest.fixture
def page(browser: Browser, browser_gateway: RestartableGateway) -> Iterator[Page]:
    with open_page(browser, browser_gateway.url + "/") as page:
        yield page
