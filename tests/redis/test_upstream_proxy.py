"""The worker's upstream session sends its streams through the proxy the environment names
(a proxy of the test's own, on 127.0.0.1)."""

from __future__ import annotations

import socket
import threading

import pytest

from sluice.settings import Settings
from worker.upstream import Upstream

pytestmark = pytest.mark.usefixtures("without_proxy_env")


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
