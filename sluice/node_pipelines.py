"""The replicated watermark's round trip on a Redis Cluster: one pipeline per master, each
on that master's own connection, ending with a write and ``WAIT`` (``sluice.replication``).

``WAIT`` counts the replicas that have everything written *on its connection*, and it goes
to one node: redis-py's ``ClusterPipeline`` sends a keyless ``WAIT`` to some node, and
retries a failed command alone on another connection, where a ``WAIT`` covers nothing. So
the commands are grouped here by the master that owns their slot (the client's slot map),
and each group goes out on a connection of that master's own pool: its commands, a write
of a probe key in a slot that master owns (the bucket tag of one of its jobs), then
``WAIT``. The groups are written to every master first and their replies read after, so
the masters work at once and the round trip lasts as long as the slowest one.

A group that meets MOVED, ASK, TRYAGAIN, CLUSTERDOWN (a slot moved, a failover) or a
connection error refreshes the slot map and is sent again, its write and ``WAIT`` with it:
the appends are fenced (``expect_last``) and ``COMMIT`` never lowers a watermark, so a
resend is harmless. A job's ``WAIT`` counts only when its group's commands all came back
from the master that answered it. What still fails after a few attempts comes back to the
writer as a lost connection (it resends through an outage, ``worker/event_log.py``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import (
    AskError,
    ClusterDownError,
    MovedError,
    NoScriptError,
    ResponseError,
    TryAgainError,
)

log = logging.getLogger("sluice.store")

# what sends a call again: after a slot-map refresh, or (NOSCRIPT) once its master loaded it
RESEND = (MovedError, AskError, TryAgainError, ClusterDownError, NoScriptError)
ATTEMPTS = 4  # backing off 0.1, 0.2, 0.4 s between them


@dataclass
class Group:
    """The commands for one master, and the jobs its WAIT covers."""

    node: ClusterNode
    indexes: list[int] = field(default_factory=list)  # into the calls
    jobs: set[str] = field(default_factory=set)
    probe: str = ""  # a key in a slot this master owns


@dataclass
class Waited:
    """Each call's reply (or its error), the jobs whose master's WAIT said enough replicas
    have everything written so far, and each master's WAIT reply (for the log)."""

    replies: list[object]
    covered: set[str]
    acks: dict[str, object]


def send_and_wait(
    cluster: RedisCluster,
    calls: Sequence[tuple[str, Any]],
    waiting: set[str],
    *,
    job_key: Callable[[str], str],
    probe_key: Callable[[str], str],
    wait: tuple[str, ...],
    enough: int,
    pack: Callable[[Any], tuple[Any, ...]],
) -> Waited:
    """Send ``calls`` (each with the id of the job whose slot it touches), and a probe
    write and ``wait`` on each master of those jobs and of ``waiting``'s.

    ``pack`` turns a call into its command's arguments; ``job_key`` names a key of a job
    (its slot), ``probe_key`` the probe key in that job's slot."""
    replies: list[object] = [None] * len(calls)
    covered: set[str] = set()
    acks: dict[str, object] = {}
    todo = list(range(len(calls)))
    jobs = {job_id for job_id, _ in calls} | waiting
    refreshes = 0  # (a NOSCRIPT alone is sent again at once, without counting)
    for _ in range(2 * ATTEMPTS):
        groups = _group(cluster, calls, todo, jobs, job_key, probe_key)
        results = _round_trip(cluster, groups, calls, wait, pack)
        todo, jobs = [], set()
        refresh = False
        for name, group in groups.items():
            result = results[name]
            if isinstance(result, Exception):  # the whole group: a lost connection
                refresh = True
                todo += group.indexes
                jobs |= group.jobs
                for i in group.indexes:
                    replies[i] = result
                acks[name] = result
                continue
            *answers, probe, acked = result
            again = set()
            for i, answer in zip(group.indexes, answers, strict=True):
                replies[i] = answer
                if isinstance(answer, RESEND):
                    again.add(calls[i][0])
                    todo.append(i)
                    refresh = refresh or not isinstance(answer, NoScriptError)
            if again:
                jobs |= again & group.jobs
                _load_lost_scripts(cluster, group, calls, replies)
            acks[name] = acked
            if isinstance(probe, Exception):  # (MOVED) its WAIT may cover nothing written
                refresh = True
                jobs |= group.jobs
            elif isinstance(acked, int) and acked >= enough:
                covered |= group.jobs - again
        if (not todo and not jobs) or (refresh and refreshes + 1 >= ATTEMPTS):
            break
        if refresh:
            _refresh(cluster, refreshes)
            refreshes += 1
    for i in todo:  # still redirected, or the cluster down: to the writer, an outage
        if isinstance(replies[i], RESEND):
            replies[i] = redis.ConnectionError(f"the cluster did not take it: {replies[i]}")
    return Waited(replies, covered, acks)


def _group(
    cluster: RedisCluster,
    calls: Sequence[tuple[str, Any]],
    todo: list[int],
    jobs: set[str],
    job_key: Callable[[str], str],
    probe_key: Callable[[str], str],
) -> dict[str, Group]:
    groups: dict[str, Group] = {}

    def group_of(job_id: str) -> Group:
        node = cluster.nodes_manager.get_node_from_slot(cluster.keyslot(job_key(job_id)))
        group = groups.get(node.name)
        if group is None:
            group = groups[node.name] = Group(node, probe=probe_key(job_id))
        return group

    for i in todo:
        group = group_of(calls[i][0])
        group.indexes.append(i)
        group.jobs.add(calls[i][0])
    for job_id in sorted(jobs):
        group_of(job_id).jobs.add(job_id)
    return groups


def _round_trip(
    cluster: RedisCluster,
    groups: dict[str, Group],
    calls: Sequence[tuple[str, Any]],
    wait: tuple[str, ...],
    pack: Callable[[Any], tuple[Any, ...]],
) -> dict[str, list[object] | Exception]:
    """Write every group to its master, then read each one's replies."""
    results: dict[str, list[object] | Exception] = {}
    sent: list[tuple[str, redis.Redis, Any, list[tuple[Any, ...]]]] = []
    try:
        for name, group in groups.items():
            node_client: redis.Redis = cluster.get_redis_connection(group.node)
            commands = [pack(calls[i][1]) for i in group.indexes]
            commands += [("SET", group.probe, "1"), wait]
            try:
                connection = node_client.connection_pool.get_connection()
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                results[name] = exc
                continue
            sent.append((name, node_client, connection, commands))
            try:
                connection.send_packed_command(connection.pack_commands(commands))
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                results[name] = exc
        for name, node_client, connection, commands in sent:
            if name in results:
                continue
            try:
                results[name] = _read(node_client, connection, commands)
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                results[name] = exc
    finally:
        for name, node_client, connection, _commands in sent:
            if isinstance(results.get(name), Exception) or name not in results:
                connection.disconnect()  # unread replies, or a broken connection
            node_client.connection_pool.release(connection)
    return results


def _read(
    node_client: redis.Redis, connection: Any, commands: list[tuple[Any, ...]]
) -> list[object]:
    answers: list[object] = []
    for command in commands:
        try:
            answers.append(node_client.parse_response(connection, command[0]))
        except ResponseError as exc:
            answers.append(exc)
    return answers


def _load_lost_scripts(
    cluster: RedisCluster, group: Group, calls: Sequence[tuple[str, Any]], replies: list[object]
) -> None:
    """Load on the group's master the scripts it answered NOSCRIPT for (a promoted replica
    has an empty script cache)."""
    lost = {calls[i][1].script for i in group.indexes if isinstance(replies[i], NoScriptError)}
    node_client: redis.Redis = cluster.get_redis_connection(group.node)
    for script in lost:
        try:
            node_client.script_load(script.script)
        except redis.RedisError as exc:
            log.warning("event=redis.script_load node=%s error=%r", group.node.name, exc)


def _refresh(cluster: RedisCluster, attempt: int) -> None:
    """Before a resend after a redirection or a lost connection: refresh the slot map,
    backing off a little (a failover takes seconds)."""
    time.sleep(0.1 * 2**attempt)
    try:
        cluster.nodes_manager.initialize()
    except redis.RedisError as exc:
        log.warning("event=redis.slots_refresh error=%r", exc)
