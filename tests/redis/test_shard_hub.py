"""The gateway's per-shard subscriber (``gateway/shard_hub.py``) on a real Redis Cluster
(three masters, three replicas on loopback): it subscribes on the master that owns each
channel's slot, and follows a slot that migrates to another master, whether the old owner
ends the subscription itself or answers MOVED to a subscription sent on a stale map."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster as ClusterClient
from redis.retry import Retry

from gateway.hub import Listener
from gateway.shard_hub import ShardedHub
from sluice.redis_client import make_redis
from sluice.settings import Settings
from tests.helpers.cluster import RedisCluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    nodes = RedisCluster(Path(tmp_path_factory.mktemp("shard-hub")))
    try:
        yield nodes.start()
    finally:
        nodes.stop()


@pytest.fixture
def publisher(cluster: RedisCluster) -> Iterator[ClusterClient]:
    client = ClusterClient.from_url(cluster.url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def make_hub(cluster: RedisCluster) -> Iterator[Callable[[], ShardedHub]]:
    """Hubs as ``gateway/services.py`` builds them (their slot map read now)."""
    settings = Settings.from_env(redis_url=cluster.url, redis_cluster=True)

    def make() -> ShardedHub:
        client = make_redis(settings, health_check_interval=0, retry=Retry(NoBackoff(), 0))
        return ShardedHub(client, f"shard-hub-{secrets.token_hex(3)}:hub")  # type: ignore[arg-type]

    yield make


def empty_slot_channel(publisher: ClusterClient) -> tuple[str, int, int]:
    """A channel whose slot holds no key, its slot, and the port of the master owning it."""
    while True:
        channel = f"shard-hub:{{{secrets.token_hex(4)}}}:live"
        slot = publisher.keyslot(channel)
        node = publisher.nodes_manager.get_node_from_slot(slot)
        if not publisher.get_redis_connection(node).cluster("countkeysinslot", slot):
            return channel, slot, node.port


def migrate(cluster: RedisCluster, slot: int, source: int, target: int) -> None:
    """Move an empty slot from one master to another, as a resharding does."""
    source_id, target_id = (
        cluster.cli(source, "cluster", "myid"),
        cluster.cli(target, "cluster", "myid"),
    )
    cluster.cli(target, "cluster", "setslot", str(slot), "importing", source_id)
    cluster.cli(source, "cluster", "setslot", str(slot), "migrating", target_id)
    for port in (target, source, *cluster.master_ports()):
        cluster.cli(port, "cluster", "setslot", str(slot), "node", target_id)


def received(listener: Listener, publisher: ClusterClient, channel: str) -> bool:
    """A message published now reaches the listener (within 5 s)."""
    listener.get(0)  # (drain)
    marker = f"1 delta {secrets.token_hex(3)}"
    publisher.spublish(channel, marker)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if marker in (listener.get(0.2) or []):
            return True
    return False


def test_channels_are_subscribed_on_the_master_of_their_slot(
    make_hub: Callable[[], ShardedHub], publisher: ClusterClient, cluster: RedisCluster
) -> None:
    hub = make_hub()
    channels = [f"shard-hub:{{b{bucket}}}:job:live" for bucket in range(64)]
    listeners = [hub.subscribe(channel) for channel in channels]
    assert set(hub.shards) == {f"127.0.0.1:{port}" for port in cluster.master_ports()}
    assert sum(hub.shards.values()) == 64 and hub.healthy
    assert all(received(listener, publisher, listener.channel) for listener in listeners[:6])
    for listener in listeners:
        listener.close()
    assert hub.channels == 0 and sum(hub.shards.values()) == 0


def test_a_channel_follows_its_slot_to_another_master(
    make_hub: Callable[[], ShardedHub], publisher: ClusterClient, cluster: RedisCluster
) -> None:
    """The old owner ends the subscription (SUNSUBSCRIBE) when the slot leaves it: the hub
    subscribes on the new owner and marks the listener stale (its feed re-reads the log)."""
    hub = make_hub()
    channel, slot, owner = empty_slot_channel(publisher)
    listener = hub.subscribe(channel)
    assert received(listener, publisher, channel)
    target = next(port for port in cluster.master_ports() if port != owner)
    migrate(cluster, slot, owner, target)
    deadline = time.monotonic() + 10
    while not listener.stale and time.monotonic() < deadline:
        time.sleep(0.05)
    assert listener.stale and hub.shards[f"127.0.0.1:{target}"] == 1
    listener.stale = False
    publisher.nodes_manager.initialize()
    assert received(listener, publisher, channel)


def test_a_subscription_sent_on_a_stale_map_follows_moved(
    make_hub: Callable[[], ShardedHub], publisher: ClusterClient, cluster: RedisCluster
) -> None:
    hub = make_hub()  # its slot map is read now; the slot moves after
    channel, slot, owner = empty_slot_channel(publisher)
    target = next(port for port in cluster.master_ports() if port != owner)
    migrate(cluster, slot, owner, target)
    listener = hub.subscribe(channel, timeout=10)  # sent to the old owner, which says MOVED
    assert hub.shards.get(f"127.0.0.1:{target}") == 1
    publisher.nodes_manager.initialize()
    assert received(listener, publisher, channel)
