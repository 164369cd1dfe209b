"""The worker's upstream session reads the environment's proxy and CA settings once."""

from __future__ import annotations

import pytest

from worker.upstream import make_session

pytestmark = pytest.mark.usefixtures("without_proxy_env")


def test_proxy_and_ca_bundle_come_from_the_environment(monkeypatch, tmp_path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    session = make_session("https://api.openai.com/v1")
    assert session.trust_env is False  # not re-read per request
    assert session.proxies["https"] == "http://proxy.internal:3128"
    assert session.verify == str(bundle)


def test_no_proxy_exempts_the_upstream(monkeypatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "llm.internal")
    assert "https" not in make_session("https://llm.internal/v1").proxies
    assert make_session("https://api.openai.com/v1").proxies["https"]
