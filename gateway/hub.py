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
* The reading thread owns the connection and never dies: whatever breaks it (Redis
  restarting, a failover, ``CLIENT KILL``, a proxy's idle timeout, or redis-py raising
  something other than a ``RedisError`` on a socket closed under it), it opens a new
  connection and subscribes again to every channel that has listeners. Messages
  published meanwhile are lost, so each listener is marked ``stale`` once its channel's
  new subscription is confirmed, and its feed re-reads the log from there. ``healthy``
  is False while the hub cannot subscribe (``/readyz`` reports it).
* redis-py's own silent reconnect is off for this connection (no retries): a reconnect
  it made inside a read would lose messages without anyone marking listeners stale.
"""

from __future__ import annotations

import collections
import contextlib
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
        self._pubsub: redis.client.PubSub | None = None  # the reading thread's current one
        self._listeners: dict[str, set[Listener]] = {}
        self._pending: dict[str, threading.Event] = {}  # first subscriptions awaited
        self._resubscribed: set[str] = set()  # channels subscribed again after a break
        self._lock = threading.Lock()  # the state above
        self._send_lock = threading.Lock()  # one writer at a time on the connection
        self._thread: threading.Thread | None = None
        self._up = False  # subscribed and reading
        self.last_error: str | None = None

    @property
    def healthy(self) -> bool:
        """True unless the hub has lost Redis and not subscribed again yet (a hub that has
        not started, having had no stream yet, is healthy)."""
        return self._thread is None or self._up

    def subscribe(self, channel: str, timeout: float = 10.0) -> Listener:
        """A listener on ``channel``, returned once Redis confirmed the subscription (at
        once if another listener already had it); ``redis.TimeoutError`` after
        ``timeout`` (Redis down longer than that)."""
        listener = Listener(self, channel)
        send = None
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="sluice-hub", daemon=True)
                self._thread.start()
            peers = self._listeners.setdefault(channel, set())
            peers.add(listener)
            confirmed = self._pending.get(channel)
            if len(peers) == 1 and confirmed is None:
                confirmed = self._pending[channel] = threading.Event()
                send = self._pubsub if self._up else None  # else: the reconnect sends it
        if send is not None:
            try:
                with self._send_lock:
                    send.subscribe(channel)
            except Exception as exc:  # the connection broke: the thread reconnects
                log.debug("subscribe %s failed (%r); waiting for the reconnect", channel, exc)
        if confirmed is not None and not confirmed.wait(timeout):
            self.unsubscribe(listener)
            raise redis.TimeoutError(f"no subscription confirmation for {channel}")
        return listener

    def _forget(self, listener: Listener) -> bool:
        """Drop the listener (under ``self._lock``); True when it was its channel's last, so
        the channel's subscription goes too."""
        peers = self._listeners.get(listener.channel)
        if peers is None:
            return False
        peers.discard(listener)
        if peers:
            return False
        del self._listeners[listener.channel]
        self._pending.pop(listener.channel, None)
        return True

    def unsubscribe(self, listener: Listener) -> None:
        with self._lock:
            if not self._forget(listener):
                return
            pubsub = self._pubsub if self._up else None
        if pubsub is not None:
            try:
                with self._send_lock:
                    pubsub.unsubscribe(listener.channel)
            except Exception as exc:  # a broken connection: the reconnect leaves it out
                log.debug("unsubscribe %s failed: %r", listener.channel, exc)

    def wake_all(self) -> None:
        """Wake every listener (the process is draining: feeds check and end)."""
        for peers in list(self._listeners.values()):
            for listener in list(peers):
                listener._ready.set()

    @property
    def channels(self) -> int:
        return len(self._listeners)

    # -- the reading thread -----------------------------------------------------------------

    def _run(self) -> None:
        """Connect, subscribe, read; on any failure start again, with backoff."""
        failures = 0
        while True:
            pubsub = None
            try:
                pubsub = self._connect()
                failures = 0
                self._read(pubsub)
            except Exception as exc:
                failures += 1
                self._up = False
                self.last_error = f"{type(exc).__name__}: {exc}"
                if failures == 1 or failures % 20 == 0:
                    log.warning("hub lost Redis (%s); reconnecting", self.last_error)
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        pubsub.close()
                time.sleep(min(2.0, 0.05 * 2**failures))

    def _connect(self) -> redis.client.PubSub:
        """A new connection, subscribed to the control channel and every channel that has
        listeners; from the moment it is published here, ``subscribe`` sends on it."""
        pubsub: redis.client.PubSub = self.client.pubsub()
        pubsub.subscribe(self.control_channel)  # opens the connection
        with self._lock:
            reconnect = self._pubsub is not None
            self._pubsub = pubsub
            channels = list(self._listeners)
            if reconnect:  # (a channel whose listeners left meanwhile is forgotten)
                self._resubscribed = {c for c in channels if c not in self._pending}
            self._up = True
        if channels:
            with self._send_lock:
                pubsub.subscribe(*channels)
        if reconnect:
            log.info("hub subscribed again to %d channel(s)", len(channels))
        return pubsub

    def _read(self, pubsub: redis.client.PubSub) -> None:
        while True:
            # block in the read itself: a timeout makes redis-py poll the socket
            # first, one more system call per message (≈ 10 % of the relay's CPU)
            message = pubsub.get_message(timeout=None)  # type: ignore[arg-type]  # (blocks)
            if message is None:
                continue
            kind, channel = message["type"], message["channel"]
            if kind == "message":
                for listener in list(self._listeners.get(channel, ())):
                    listener.push(message["data"])
            elif kind == "subscribe":
                self._confirmed(channel)

    def _confirmed(self, channel: str) -> None:
        with self._lock:
            first = self._pending.pop(channel, None)
            again = channel in self._resubscribed
            self._resubscribed.discard(channel)
            peers = list(self._listeners.get(channel, ())) if again else []
        if first is not None:
            first.set()
        for listener in peers:  # live again: what was published meanwhile is in the log
            listener.mark_stale()
