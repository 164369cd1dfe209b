"""Headless Chromium (Debian's ``chromium``) driven by Python Playwright, against a
gateway process of its own that a test may kill and restart on the same port."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from sluice.settings import Settings
from tests.conftest import ROOT, stack_env
from tests.support import ProcessLogs, free_port, wait_ready

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


@dataclass
class Gateway:
    """One gunicorn gateway on a fixed port, which a test can kill and start again."""

    settings: Settings
    logs: ProcessLogs
    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = stack_env(self.settings, PORT=str(self.port), WEB_CONCURRENCY="1")
        cmd = [
            sys.executable, "-m", "gunicorn", "--no-control-socket", "--config",
            "gunicorn.conf.py", "gateway.wsgi:app",
        ]  # fmt: skip
        self.process, log_path = self.logs.start("gateway-browser", cmd, env, cwd=ROOT)
        wait_ready(self.url, self.process, log_path)

    def kill(self) -> None:
        """SIGKILL the whole gateway (master and workers): a crash, not a shutdown."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)


@pytest.fixture(scope="module")
def browser_gateway(
    settings: Settings, process_logs: ProcessLogs, worker: object
) -> Iterator[Gateway]:
    gateway = Gateway(settings, process_logs, free_port())
    gateway.start()
    yield gateway
    if gateway.process is not None and gateway.process.poll() is None:
        os.killpg(gateway.process.pid, signal.SIGTERM)
        gateway.process.wait(15)


@pytest.fixture
def page(browser: Browser, browser_gateway: Gateway) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(browser_gateway.url + "/")
    yield page
    context.close()
    assert not errors, f"uncaught errors in the page: {errors}"
