"""The per-client open-stream counter (``gateway.stream_quota``), and the way a request's
place travels from the route that claims it to the response body that gives it back.

The running server's side (a real gunicorn gateway refusing the third stream of a client
with a limit of 2) is ``tests/integration/test_security_bounds.py``; here, the rules the
counter keeps, in a Flask app of the test's own (no Redis, no socket)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

import pytest
from flask import Flask, Response

from gateway import stream_quota
from gateway.feed import JobFeed
from gateway.stream_quota import StreamQuota
from gateway.wire import stream_response
from sluice.errors import RateLimited, TooManyStreams


def test_a_client_gets_its_limit_of_places_and_one_more_is_refused_with_retry_after() -> None:
    quota = StreamQuota(2)
    first, _second = quota.claim("addr:a"), quota.claim("addr:a")
    with pytest.raises(TooManyStreams) as refused:
        quota.claim("addr:a")
    assert refused.value.status == 429 and refused.value.retry_after > 0
    assert isinstance(refused.value, RateLimited)  # a client's 429, rendered as the others
    assert "limit is 2" in refused.value.message
    first.release()
    quota.claim("addr:a")  # a closed stream frees its place
    assert quota.held("addr:a") == 2


def test_clients_are_counted_apart() -> None:
    quota = StreamQuota(1)
    quota.claim("key:owner-a")
    quota.claim("key:owner-b")
    with pytest.raises(TooManyStreams):
        quota.claim("key:owner-a")


def test_a_place_released_twice_frees_one_place_only() -> None:
    quota = StreamQuota(2)
    place = quota.claim("addr:a")
    quota.claim("addr:a")
    place.release()
    place.release()
    assert quota.held("addr:a") == 1


def test_zero_means_no_limit_and_nothing_is_left_behind() -> None:
    quota = StreamQuota(0)
    places = [quota.claim("addr:a") for _ in range(5000)]
    assert quota.held("addr:a") == 5000
    for place in places:
        place.release()
    assert quota.held("addr:a") == 0 and not quota._open  # no empty entries kept


class _StubFeed:
    """What ``stream_response``'s body reads of a feed: ``more`` and ``close``."""

    more = False
    closed = False

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def app() -> Flask:
    """Routes that claim a place and then stream, fail, or answer without a stream."""
    app = Flask(__name__)
    quota = StreamQuota(1)
    app.extensions["quota"] = quota
    stream_quota.install(app)

    @app.get("/stream")
    def stream() -> Response:
        stream_quota.reserve(quota, "addr:a")
        frames: Iterator[bytes] = iter([b": one\n", b": two\n"])
        return stream_response(frames, cast(JobFeed, _StubFeed()))

    @app.get("/fails")
    def fails() -> Response:
        stream_quota.reserve(quota, "addr:a")
        raise ValueError("any error after the claim")

    @app.get("/no-stream")
    def no_stream() -> Response:
        stream_quota.reserve(quota, "addr:a")
        return Response(status=204)

    return app


def held(app: Flask) -> int:
    quota: StreamQuota = app.extensions["quota"]
    return quota.held("addr:a")


def test_a_streamed_body_holds_its_place_until_the_server_closes_it(app: Flask) -> None:
    client = app.test_client()
    response = client.get("/stream", buffered=False)
    assert held(app) == 1  # the request ended; the stream (its body) still holds it
    body: Any = response.response
    next(iter(body))  # the client read one frame, then went away: the server closes
    response.close()
    assert held(app) == 0


def test_a_body_the_server_never_started_still_gives_its_place_back(app: Flask) -> None:
    response = app.test_client().get("/stream", buffered=False)
    response.close()
    assert held(app) == 0


@pytest.mark.parametrize("path", ["/fails", "/no-stream"])
def test_a_request_that_ends_without_a_stream_gives_its_place_back(app: Flask, path: str) -> None:
    client = app.test_client()
    client.get(path)
    assert held(app) == 0
    client.get(path)  # the limit is 1: the place really was given back
    assert held(app) == 0
