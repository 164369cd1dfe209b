"""The worker's upstream session reads the environment's proxy and CA settings once."""

from __future__ import annotations

import socket
import threading

import pytest

from sluice.settings import Settings
from worker.upstream import Upstream, make_session

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


class RecordingProxy:
    """Answers any request with a finished SSE stream and keeps the request line."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.request_line = ""
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            self.request_line = data.split(b"\r\n", 1)[0].decode()
            body = b"data: [DONE]\n\n"
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
            )


def test_streams_go_through_the_proxy_the_environment_names(monkeypatch) -> None:
    proxy = RecordingProxy()
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
    settings = Settings.from_env(openai_base_url="http://llm.example/v1")
    upstream = Upstream(settings)
    response = upstream.open_stream({"model": "m", "messages": []}, "sk-test")
    assert response.status_code == 200
    response.close()
    assert proxy.request_line == "POST http://llm.example/v1/chat/completions HTTP/1.1"
