"""The gateway's shared subscriber on a Redis Cluster: one connection per shard.

With ``SLUICE_REDIS_CLUSTER`` the scripts publish a job's events with SPUBLISH, and a
sharded message reaches only the clients of the shard (master and replicas) that owns the
channel's slot. So a gateway process holds one subscriber connection per master that
owns a channel some listener follows (``_Shard``, created when first needed, with a
reading thread of its own), and routes each SSUBSCRIBE to the master that owns the
channel's slot. Everything ``gateway/hub.py`` promises holds per shard: ``subscribe``
returns once the owner confirmed, listeners with full inboxes are marked stale, redis-py's
retries and health checks are off on these connections, and a listener whose channel was
subscribed again after a break is marked stale once that is confirmed (its feed re-reads
the log).

What moves a channel to another shard, and how the hub follows:

* **a failover or a crash**: the shard's connection breaks. The shard refreshes the
  cluster's slot map and hands every channel whose slot another master now owns to that
  master's shard; the rest it subscribes again itself once its node answers (a restart).
  Until the cluster has promoted a replica the map still names the dead master, so it
  retries with backoff (``healthy`` is False meanwhile; ``/readyz`` says so).
* **a slot migrated** (resharding): the old owner ends the subscriptions of the slot's
  channels itself (a SUNSUBSCRIBE this hub did not ask for), or answers an SSUBSCRIBE sent
  on a stale map with MOVED: the shard refreshes the map and re-homes as above, on the
  same connection.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
import time
from typing import Any

import redis
from redis.client import PubSub
from redis.cluster import RedisCluster

from gateway.hub import Hub, Listener

log = logging.getLogger("sluice.gateway.hub")


class ShardedHub(Hub):
    """``Hub``'s interface and listener bookkeeping; one ``_Shard`` per master."""

    def __init__(self, cluster: RedisCluster, control_channel: str) -> None:
        super().__init__(cluster, control_channel)  # type: ignore[arg-type]
        self.cluster = cluster  # its slot map routes channels; its nodes' settings connect
        self._shards: dict[str, _Shard] = {}  # node name ("host:port") -> its shard
        self._home: dict[str, _Shard] = {}  # channel -> the shard it is subscribed on

    @property
    def healthy(self) -> bool:
        with self._lock:
            shards = [shard for shard in self._shards.values() if shard.channels]
        return all(shard.up for shard in shards)

    @property
    def shards(self) -> dict[str, int]:
        """Channels per shard (node name), for tests and logs."""
        with self._lock:
            return {name: len(shard.channels) for name, shard in self._shards.items()}

    def subscribe(self, channel: str, timeout: float = 10.0) -> Listener:
        listener = Listener(self, channel)
        send: tuple[_Shard, PubSub] | None = None
        with self._lock:
            peers = self._listeners.setdefault(channel, set())
            peers.add(listener)
            confirmed = self._pending.get(channel)
            if len(peers) == 1 and confirmed is None:
                confirmed = self._pending[channel] = threading.Event()
                try:
                    shard = self._shard_of(channel)
                except redis.RedisError as exc:  # the slot is not covered (a failover)
                    log.debug("no shard for %s yet (%r)", channel, exc)
                    shard = None
                if shard is not None:
                    pubsub = shard.adopt(channel)
                    send = (shard, pubsub) if pubsub is not None else None
        if send is not None:
            send[0].ssubscribe(send[1], [channel])
        if confirmed is not None and not confirmed.wait(timeout):
            self.unsubscribe(listener)
            raise redis.TimeoutError(f"no subscription confirmation for {channel}")
        return listener

    def unsubscribe(self, listener: Listener) -> None:
        with self._lock:
            if not self._forget(listener):
                return
            shard = self._home.pop(listener.channel, None)
            pubsub = shard.release(listener.channel) if shard is not None else None
        if shard is not None and pubsub is not None:
            shard.sunsubscribe(pubsub, listener.channel)

    # -- routing (under self._lock) ---------------------------------------------------------

    def _shard_of(self, channel: str) -> _Shard:
        """The shard of the master that owns the channel's slot, by the current map."""
        node = self.cluster.nodes_manager.get_node_from_slot(self.cluster.keyslot(channel))
        shard = self._shards.get(node.name)
        if shard is None:
            shard = self._shards[node.name] = _Shard(self, node.host, node.port)
        return shard

    def _rehome(self, shard: _Shard, failed: bool, kicked: str | None = None) -> bool:
        """Refresh the slot map and move the shard's channels that another master owns now
        to that master's shard; True if the map could be read. ``failed``: the shard's
        node did not answer (tried last for the map). ``kicked``: a channel whose
        subscription the node ended; if the node still owns its slot (a ``CLUSTER SETSLOT
        … NODE`` sent to the owner itself ends them too), it is subscribed there again."""
        try:
            self.cluster.nodes_manager.initialize(
                last_failed_node_name=shard.name if failed else None
            )
        except Exception as exc:  # the cluster is reorganising: try again later
            self.last_error = f"{type(exc).__name__}: {exc}"
            return False
        sends: list[tuple[_Shard, PubSub, list[str]]] = []
        with self._lock:
            moves: dict[_Shard, list[str]] = collections.defaultdict(list)
            for channel in list(shard.channels):
                try:
                    target = self._shard_of(channel)
                except redis.RedisError:
                    continue  # not covered yet; the next attempt moves it
                if target is shard:
                    if channel == kicked:
                        self._resubscribed.add(channel)
                        moves[shard].append(channel)
                    continue
                shard.release(channel, unsubscribe=False)  # (ended, or the link is down)
                if channel not in self._pending:
                    self._resubscribed.add(channel)  # stale once the new home confirms
                moves[target].append(channel)
            for target, channels in moves.items():
                pubsub = None
                for channel in channels:
                    pubsub = target.adopt(channel) or pubsub
                if pubsub is not None:
                    sends.append((target, pubsub, channels))
            if moves:
                log.info("hub moved %d channel(s) from %s",
                         sum(len(c) for c in moves.values()), shard.name)  # fmt: skip
            if not shard.channels and shard.name in self._shards:
                self._shards.pop(shard.name)
                shard.retired = True
        for target, pubsub, channels in sends:
            target.ssubscribe(pubsub, channels)
        return True


class _Shard:
    """One master's subscriber connection and its reading thread."""

    def __init__(self, hub: ShardedHub, host: str, port: int) -> None:
        self.hub = hub
        self.host, self.port = host, port
        self.name = f"{host}:{port}"
        self.channels: set[str] = set()  # homed here (the hub's lock)
        self.pubsub: PubSub | None = None
        self.up = False
        self.retired = False  # its channels all moved: the thread ends
        self._leaving: collections.Counter[str] = collections.Counter()  # our SUNSUBSCRIBEs
        self._send_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"sluice-hub-{port}", daemon=True)
        self._thread.start()

    # (under the hub's lock)
    def adopt(self, channel: str) -> PubSub | None:
        """Home ``channel`` here; the connection to send its SSUBSCRIBE on, or None when
        the reconnect will (it subscribes every channel homed here)."""
        self.channels.add(channel)
        self.hub._home[channel] = self
        return self.pubsub if self.up else None

    def release(self, channel: str, unsubscribe: bool = True) -> PubSub | None:
        """Home ``channel`` here no more; the connection to send its SUNSUBSCRIBE on, if
        ``unsubscribe`` and the connection is up."""
        self.channels.discard(channel)
        if self.hub._home.get(channel) is self:
            del self.hub._home[channel]
        if unsubscribe and self.up and self.pubsub is not None:
            self._leaving[channel] += 1
            return self.pubsub
        return None

    def ssubscribe(self, pubsub: PubSub, channels: list[str]) -> None:
        try:
            self._ssubscribe(pubsub, channels)
        except Exception as exc:  # the connection broke: its reconnect sends them
            log.debug("ssubscribe on %s failed (%r); waiting for the reconnect", self.name, exc)

    def _ssubscribe(self, pubsub: PubSub, channels: list[str]) -> None:
        """One SSUBSCRIBE per slot (Redis refuses one whose channels span slots)."""
        by_slot: dict[int, list[str]] = collections.defaultdict(list)
        for channel in channels:
            by_slot[self.hub.cluster.keyslot(channel)].append(channel)
        with self._send_lock:
            for group in by_slot.values():
                pubsub.ssubscribe(*group)

    def sunsubscribe(self, pubsub: PubSub, channel: str) -> None:
        try:
            with self._send_lock:
                pubsub.sunsubscribe(channel)
        except Exception as exc:  # a broken connection: the reconnect leaves it out
            log.debug("sunsubscribe %s failed: %r", channel, exc)

    # -- the reading thread -----------------------------------------------------------------

    def _run(self) -> None:
        failures = 0
        connected_before = False
        while not self.retired:
            pubsub = None
            try:
                pubsub = self._connect(connected_before)
                connected_before = True
                failures = 0
                self._read(pubsub)
                pubsub.close()  # retired: its channels all live on other shards now
            except Exception as exc:
                failures += 1
                self.up = False
                self.hub.last_error = f"{type(exc).__name__}: {exc}"
                if failures == 1 or failures % 20 == 0:
                    log.warning("hub lost shard %s (%s); reconnecting", self.name, exc)
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        pubsub.close()
                # a failover moves this node's slots to a replica: follow the channels
                self.hub._rehome(self, failed=True)
                if self.retired:
                    return
                time.sleep(min(2.0, 0.05 * 2**failures))

    def _connect(self, reconnect: bool) -> PubSub:
        manager = self.hub.cluster.nodes_manager
        client: Any = manager.create_redis_node(self.host, self.port, **manager.connection_kwargs)
        pubsub: PubSub = client.pubsub()
        # a classic channel keeps the connection in subscribed mode whatever it follows, so
        # the reader always blocks on the socket (no one publishes to it)
        pubsub.subscribe(self.hub.control_channel)
        with self.hub._lock:
            self.pubsub = pubsub
            channels = sorted(self.channels)
            self._leaving.clear()
            if reconnect:
                self.hub._resubscribed.update(c for c in channels if c not in self.hub._pending)
            self.up = True
        self._ssubscribe(pubsub, channels)
        if reconnect:
            log.info("hub subscribed again to %d channel(s) on %s", len(channels), self.name)
        return pubsub

    def _read(self, pubsub: PubSub) -> None:
        hub = self.hub
        while not self.retired:
            try:
                message = pubsub.get_message(timeout=None)  # type: ignore[arg-type]  # (blocks)
            except redis.ResponseError as exc:  # MOVED: an SSUBSCRIBE sent on a stale map
                log.info("shard %s refused a subscription (%s); refreshing the map", self.name, exc)
                hub._rehome(self, failed=False)
                continue
            if message is None:
                continue
            kind, channel = message["type"], message["channel"]
            if kind == "smessage":
                for listener in list(hub._listeners.get(channel, ())):
                    listener.push(message["data"])
            elif kind == "ssubscribe":
                if hub._home.get(channel) is self:
                    hub._confirmed(channel)
            elif kind == "sunsubscribe":
                with hub._lock:
                    ours = self._leaving[channel] > 0
                    if ours:
                        self._leaving[channel] -= 1
                    kicked = not ours and hub._home.get(channel) is self
                if kicked:  # its slot left this master (resharding, or it became a replica)
                    log.info("shard %s ended the subscription of %s", self.name, channel)
                    hub._rehome(self, failed=False, kicked=channel)
