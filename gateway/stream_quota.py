"""How many event streams each client holds open on this gateway process, and the limit.

Why: a stream costs its gateway process a socket, a greenlet and a subscription for as
long as it lasts, and gunicorn gives a process ``SLUICE_WORKER_CONNECTIONS`` of them in
all. Without a bound, one client (one access key, or one address when keys are off) could
open them all and starve everyone else; the rate limit does not help, since it counts
requests started, not streams held. ``SLUICE_MAX_STREAMS_PER_CLIENT`` bounds what one
client holds: one stream more gets a ``429`` with ``Retry-After`` (``TooManyStreams``),
before any job is created for a request that would start one.

The count is per gateway process, in memory, on purpose: what it protects is the
process's own sockets and memory, and a counter in Redis would be left too high by every
process that dies with streams open. Behind N gateway processes one client can hold N
times the limit.

A route claims a place (``reserve``) before its stream or its job exists; the place goes
with the response's body (``take``, in ``gateway.wire.stream_response``), which gives it
back when the server closes the body: at its end, or when the client went away (the
server notices on its next write, a heartbeat at the latest). A request that ends without
a stream (an error, a ``204``) gives it back when its request context ends (``install``).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from flask import Flask, g

from sluice.errors import TooManyStreams

RETRY_AFTER = 5  # seconds: a place frees when one of the client's streams ends


class StreamQuota:
    """Open streams per client on this process, at most ``limit`` each (0: no limit)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: dict[str, int] = {}
        self._lock = threading.Lock()

    def claim(self, client: str) -> Place:
        """A place for one more stream of ``client``, or ``TooManyStreams``."""
        with self._lock:
            held = self._open.get(client, 0)
            if self.limit and held >= self.limit:
                raise TooManyStreams(
                    f"this client already holds {held} open streams on this gateway process "
                    f"(the limit is {self.limit}); close one, then retry",
                    retry_after=RETRY_AFTER,
                )
            self._open[client] = held + 1
        return Place(self, client)

    def _release(self, place: Place) -> None:
        with self._lock:
            if place.released:
                return
            place.released = True
            held = self._open.get(place.client, 0) - 1
            if held > 0:
                self._open[place.client] = held
            else:
                self._open.pop(place.client, None)

    def held(self, client: str) -> int:
        """The streams ``client`` holds now (for tests and metrics)."""
        with self._lock:
            return self._open.get(client, 0)


@dataclass
class Place:
    """One claimed stream; ``release`` gives it back, once however often it is called."""

    quota: StreamQuota
    client: str
    released: bool = False

    def release(self) -> None:
        self.quota._release(self)


# -- a request's place, from the route that claims it to the body that holds it ----------

_KEY = "sluice_stream_place"


def reserve(quota: StreamQuota, client: str) -> None:
    """Claim this request's stream's place now (raises ``TooManyStreams``); call it
    before the job or the feed exists. Idempotent within a request."""
    if g.get(_KEY) is None:
        setattr(g, _KEY, quota.claim(client))


def take() -> Place | None:
    """The request's place, handed over to the response body that will release it."""
    place: Place | None = g.pop(_KEY, None)
    return place


def install(app: Flask) -> None:
    """Give back a place that no stream took (the request failed, or answered without
    a stream) when the request ends. A streamed response's body took its place before."""

    @app.teardown_request
    def _release_untaken(_exc: BaseException | None) -> None:
        place = take()
        if place is not None:
            place.release()
