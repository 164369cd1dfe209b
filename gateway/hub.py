"""One Redis pub/sub connection per gateway process, fanned out to its SSE clients.

Without it each open stream holds its own Redis connection (as flask-sse does): a
gateway with 1,000 streams holds 1,000 connections, and Redis pays for each. The hub
subscribes once per job channel, whatever the number of local listeners, and hands
every message to each listener's bounded inbox.

Deliberate choices (read before changing):

* ``subscribe`` returns only after Redis confirmed the SUBSCRIBE, so the caller can read
  the log afterwards without a race (see ``gateway/feed.py``).
* A listener whose inbox is full (a client slower than its stream) is not given more: it
  is marked ``stale`` and its feed re-reads the durable log, so a slow client costs
  memory for at most ``INBOX_LIMIT`` messages and ``INBOX_LIMIT_CHARS`` characters (one
  message carries all the events of one append, up to 1,000 in a token storm), never for
  the whole stream.
* When the connection breaks, redis-py reconnects and re-subscribes on the next read;
  messages published meanwhile are lost, so every listener is marked ``stale``.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
import weakref
from typing import ClassVar

import redis

log = logging.getLogger("sluice.gateway.hub")
INBOX_LIMIT = 256
INBOX_LIMIT_CHARS = 256 * 1024


class Listener:
    """One SSE client's view of a channel: a bounded inbox of raw messages."""

    def __init__(self, hub: Hub, channel: str) -> None:
        self.hub = hub
        self.channel = channel
        self.stale = False  # messages were dropped: re-read the log
        self._inbox: collections.deque[str] = collections.deque()
        self._chars = 0  # held in the inbox
        self._ready = threading.Event()

    def push(self, message: str) -> None:
        if self._inbox and (
            len(self._inbox) >= INBOX_LIMIT or self._chars + len(message) > INBOX_LIMIT_CHARS
        ):
            self.stale = True
        else:
            self._inbox.append(message)
            self._chars += len(message)
        self._ready.set()

    def mark_stale(self) -> None:
        self.stale = True
        self._ready.set()

    def get(self, timeout: float) -> list[str] | None:
        """The messages received so far, waiting up to ``timeout``; None if none came."""
        if not self._inbox and not self.stale:
            self._ready.wait(timeout)
        self._ready.clear()
        if not self._inbox:
            return [] if self.stale else None
        messages = list(self._inbox)
        self._inbox.clear()
        self._chars = 0
        return messages

    def close(self) -> None:
        self.hub.unsubscribe(self)


class Hub:
    instances: ClassVar[weakref.WeakSet[Hub]] = weakref.WeakSet()

    def __init__(self, client: redis.Redis, control_channel: str) -> None:
        Hub.instances.add(self)
        self.client = client
        self.control_channel = control_channel
        self._pubsub: redis.client.PubSub | None = None
        self._listeners: dict[str, set[Listener]] = {}
        self._pending: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def _start(self) -> redis.client.PubSub:
        if self._pubsub is None:
            pubsub = self.client.pubsub()
            pubsub.subscribe(self.control_channel)  # opens the connection
            self._pubsub = pubsub
            threading.Thread(target=self._listen, name="sluice-hub", daemon=True).start()
        return self._pubsub

    def subscribe(self, channel: str, timeout: float = 10.0) -> Listener:
        listener = Listener(self, channel)
        with self._lock:
            pubsub = self._start()
            peers = self._listeners.setdefault(channel, set())
            peers.add(listener)
            confirmed = self._pending.get(channel)
            if len(peers) == 1 and confirmed is None:
                confirmed = self._pending[channel] = threading.Event()
                pubsub.subscribe(channel)
        if confirmed is not None and not confirmed.wait(timeout):
            self.unsubscribe(listener)
            raise redis.TimeoutError(f"no subscription confirmation for {channel}")
        return listener

    def unsubscribe(self, listener: Listener) -> None:
        with self._lock:
            peers = self._listeners.get(listener.channel)
            if peers is None:
                return
            peers.discard(listener)
            if not peers:
                del self._listeners[listener.channel]
                if self._pubsub is not None:
                    try:
                        self._pubsub.unsubscribe(listener.channel)
                    except redis.RedisError as exc:
                        log.debug("unsubscribe %s failed: %s", listener.channel, exc)

    def wake_all(self) -> None:
        """Wake every listener (the process is draining: feeds check and end)."""
        for peers in list(self._listeners.values()):
            for listener in list(peers):
                listener._ready.set()

    @property
    def channels(self) -> int:
        return len(self._listeners)

    def _listen(self) -> None:
        assert self._pubsub is not None
        failures = 0
        while True:
            try:
                # block in the read itself: a timeout makes redis-py poll the socket
                # first, one more system call per message (≈ 10 % of the relay's CPU)
                message = self._pubsub.get_message(timeout=None)
                failures = 0
            except (redis.RedisError, OSError) as exc:
                failures += 1
                log.warning("hub lost Redis (%s); reconnecting", exc)
                for peers in list(self._listeners.values()):
                    for listener in list(peers):
                        listener.mark_stale()
                time.sleep(min(2.0, 0.1 * 2**failures))
                continue
            if message is None:
                continue
            kind, channel = message["type"], message["channel"]
            if kind == "message":
                for listener in list(self._listeners.get(channel, ())):
                    listener.push(message["data"])
            elif kind == "subscribe":
                confirmed = self._pending.pop(channel, None)
                if confirmed is not None:
                    confirmed.set()
