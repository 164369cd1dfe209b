"""The job store: the only code that writes job state and events to Redis.

A job is a Redis hash (status, model, timestamps, the upstream request) plus an event
log (a list; the event with id N is element N-1) and a pub/sub channel for live delivery.
Every state change goes through one Lua script call (see ``sluice.scripts``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import redis
from redis.cluster import RedisCluster
from redis.commands.core import Script
from redis.exceptions import NoScriptError

from sluice import node_pipelines, scripts
from sluice.errors import (
    AttemptSuperseded,
    JobAlreadyEnded,
    JobGone,
    JobStopped,
    NotFound,
    OutOfSequence,
    WorkerLost,
)
from sluice.events import CANCELLED, ERROR, TERMINAL_EVENTS, Event, Transcript, fold
from sluice.keys import Keys
from sluice.node_pipelines import Waited
from sluice.replication import WATERMARK_FIELD, min_replicas, wait_timeout_ms
from sluice.settings import Settings

log = logging.getLogger("sluice.store")

QUEUED, RUNNING, SUCCEEDED, FAILED = "queued", "running", "succeeded", "failed"
TERMINAL_STATUSES = frozenset({SUCCEEDED, FAILED, CANCELLED})
STATUS_OF_TERMINAL_EVENT = {"done": SUCCEEDED, "error": FAILED, CANCELLED: CANCELLED}


# APPEND's negative replies (``sluice.scripts``), the one place they are decoded
_APPEND_REFUSALS: dict[int, type[NotFound | JobStopped]] = {
    -1: JobGone,
    -2: JobAlreadyEnded,
    -3: AttemptSuperseded,
    -4: OutOfSequence,  # the log does not end where the write expected
}


@dataclass(frozen=True)
class ScriptCall:
    """One call of a registered Lua script, ready to send alone or in a pipeline."""

    script: Script
    keys: list[str]
    args: list[Any]


def append_result(job_id: str, result: object) -> int:
    """The id of the last appended event, from the APPEND script's reply; raises the
    refusal it stands for: ``JobGone``, ``JobAlreadyEnded``, ``AttemptSuperseded``, or
    ``OutOfSequence`` (an ``AttemptSuperseded``: a writer that sends again after a lost
    reply tells "an earlier write was lost" from "the log moved on" by catching it)."""
    if not isinstance(result, int | str | bytes):
        raise TypeError(f"job {job_id}: APPEND replied {result!r}, not an integer")
    last = int(result)
    if last < 0:
        raise _APPEND_REFUSALS[last](f"job {job_id}: event refused ({last})")
    return last


# several commands in one round trip, script calls among them (the worker's group commit
# and its watcher send the calls of many jobs together)
Command = ScriptCall | tuple[str, ...]


def send_together(client: redis.Redis, commands: Sequence[Command]) -> list[object]:
    """Each command's reply, or the error it alone raised, in order; raises only what
    fails the whole round trip (a connection error).

    A script call goes as EVALSHA; if Redis lost its script cache (a restart, SCRIPT
    FLUSH), the scripts are loaded and the calls that met NOSCRIPT are sent again.
    """
    replies = _pipeline(client, commands)
    missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
    if missing:
        lost: dict[str, Script] = {}
        for i in missing:
            call = commands[i]
            assert isinstance(call, ScriptCall)  # only EVALSHA meets NOSCRIPT
            lost[call.script.sha] = call.script
        for script in lost.values():  # each once, however many calls met NOSCRIPT
            client.script_load(script.script)
        again = _pipeline(client, [commands[i] for i in missing])
        for i, reply in zip(missing, again, strict=True):
            replies[i] = reply
    return replies


def _pipeline(client: redis.Redis, commands: Sequence[Command]) -> list[object]:
    # (on a Redis Cluster this is redis-py's ClusterPipeline: one pipeline per node, each
    # call routed by its keys' slot; it refuses ``pipe.evalsha``, not the command itself)
    pipe = client.pipeline(transaction=False)
    for command in commands:
        pipe.execute_command(*packed(command))
    return pipe.execute(raise_on_error=False)


def packed(command: Command) -> tuple[Any, ...]:
    """The command's arguments (a script call as EVALSHA)."""
    if isinstance(command, ScriptCall):
        keys = command.keys
        return ("EVALSHA", command.script.sha, len(keys), *keys, *command.args)
    return command


def new_job_id() -> str:
    """An unguessable id: 128 random bits."""
    return "job_" + secrets.token_urlsafe(16)


@dataclass(frozen=True)
class Job:
    id: str
    status: str
    model: str
    created_at: float
    started_at: float | None
    finished_at: float | None
    attempt: int
    last_event_id: int
    prompt_tokens: int
    truncated_messages: int
    request: dict[str, Any]
    owner: str
    queue: str = ""
    # the prompt count includes an estimate (an image whose size is unknown, a file)
    prompt_tokens_estimated: bool = False
    # a user's own upstream key, encrypted (sluice.keyvault); None: use the server's key
    sealed_upstream_key: str | None = field(default=None, repr=False)
    # what a projection keeps with the job to render it later (the Responses API's
    # request echo and input items, a chat's UI messages); never read by the worker
    meta: dict[str, Any] = field(default_factory=dict, repr=False)
    conversation: str | None = None  # the conversation this job is a turn of

    @property
    def ended(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @classmethod
    def from_hash(cls, job_id: str, h: dict[str, str]) -> Job:
        def opt_float(name: str) -> float | None:
            return float(h[name]) if h.get(name) else None

        return cls(
            id=job_id,
            status=h["status"],
            model=h.get("model", ""),
            created_at=float(h.get("created_at", 0)),
            started_at=opt_float("started_at"),
            finished_at=opt_float("finished_at"),
            attempt=int(h.get("attempt", 0)),
            last_event_id=int(h.get("last_event_id", 0)),
            prompt_tokens=int(h.get("prompt_tokens", 0)),
            truncated_messages=int(h.get("truncated_messages", 0)),
            request=json.loads(h.get("request", "{}")),
            owner=h.get("owner", ""),
            queue=h.get("queue", ""),
            prompt_tokens_estimated=h.get("prompt_tokens_estimated") == "1",
            sealed_upstream_key=h.get("upstream_key") or None,
            meta=json.loads(h["meta"]) if h.get("meta") else {},
            conversation=h.get("conversation") or None,
        )


class JobStore:
    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.redis = client
        self.settings = settings
        # a Redis Cluster: the sharded key layout, and scripts that SPUBLISH
        self.sharded = settings.redis_cluster
        self.keys = Keys(settings.key_prefix, sharded=self.sharded)
        variant = scripts.sharded if self.sharded else str
        self._append = client.register_script(variant(scripts.APPEND))
        self._claim = client.register_script(variant(scripts.CLAIM))
        self._renew = client.register_script(scripts.RENEW)
        self._reap = client.register_script(variant(scripts.REAP))
        self._release = client.register_script(scripts.RELEASE)
        self._withdraw = client.register_script(scripts.WITHDRAW)
        self._point_conversation = client.register_script(scripts.POINT_CONVERSATION)
        self._delete_if = client.register_script(scripts.DELETE_IF)
        self._commit = client.register_script(variant(scripts.COMMIT))
        # > 0: clients see a job's events once this many replicas have them
        self.min_replicas = min_replicas(settings)

    def _log_keys(self, job_id: str) -> list[str]:
        """The keys of the scripts that write a job's log (``APPEND``, ``REAP``)."""
        return [
            self.keys.job(job_id),
            self.keys.events(job_id),
            self.keys.channel(job_id),
            self.keys.leases_of(job_id),
            self.keys.queued_of(job_id),
        ]

    # -- creating and reading -------------------------------------------------------------

    def create(
        self,
        *,
        model: str,
        request: dict[str, Any],
        prompt_tokens: int,
        truncated_messages: int,
        owner: str = "",
        idempotency_key: str | None = None,
        sealed_upstream_key: str | None = None,
        prompt_tokens_estimated: bool = False,
        meta: dict[str, Any] | None = None,
        conversation: str | None = None,
        job_id: str | None = None,
    ) -> tuple[Job, bool]:
        """Store a new queued job (under ``job_id``, made by ``new_job_id``, when the
        caller needed it first); returns ``(job, created)``.

        With an idempotency key, a second create with the same key returns the first job
        (``created`` False) instead of starting another generation.
        """
        job_id = job_id or new_job_id()
        if idempotency_key is not None:
            idem = self.keys.idempotency(f"{owner}:{idempotency_key}")
            if not self.redis.set(idem, job_id, nx=True, ex=self.settings.job_ttl):
                existing_id = cast("str | None", self.redis.get(idem))
                existing = self.get(existing_id) if existing_id else None
                if existing is not None:
                    return existing, False
                self.redis.set(idem, job_id, ex=self.settings.job_ttl)
        now = time.time()
        mapping: dict[str, str | int | float] = {
            "status": QUEUED,
            "model": model,
            "created_at": repr(now),
            "attempt": 0,
            "last_event_id": 0,
            "prompt_tokens": prompt_tokens,
            "truncated_messages": truncated_messages,
            "prompt_tokens_estimated": int(prompt_tokens_estimated),
            "request": json.dumps(request, ensure_ascii=False),
            "owner": owner,
            "queue": self.settings.queue,
        }
        if sealed_upstream_key:
            mapping["upstream_key"] = sealed_upstream_key
        if meta:
            mapping["meta"] = json.dumps(meta, ensure_ascii=False)
        if conversation:
            mapping["conversation"] = conversation
        if self.min_replicas:
            mapping[WATERMARK_FIELD] = 0
        key = self.keys.job(job_id)
        with self.redis.pipeline() as pipe:
            pipe.hset(key, mapping=cast("dict[Any, Any]", mapping))
            pipe.expire(key, self.settings.max_job_age)
            pipe.zadd(self.keys.queued_of(job_id), {job_id: now})  # (the job's slot)
            pipe.execute()
        return Job.from_hash(job_id, {k: str(v) for k, v in mapping.items()}), True

    def get(self, job_id: str) -> Job | None:
        h = cast("dict[str, str]", self.redis.hgetall(self.keys.job(job_id)))
        return Job.from_hash(job_id, h) if h else None

    def progress(self, job_id: str) -> tuple[str, int] | None:
        """The job's status and last event id, or None when it is gone: what a stream
        checks at each heartbeat, without fetching the request and ``meta`` (images sent
        as data URLs make them megabytes)."""
        status, last, mark = cast(
            "list[str | None]",
            self.redis.hmget(self.keys.job(job_id), "status", "last_event_id", WATERMARK_FIELD),
        )
        if status is None:
            return None
        if mark is not None and int(mark) < int(last or 0):
            if status not in TERMINAL_STATUSES:
                # its last events are not replicated yet: to a client it has not got there
                return RUNNING, int(mark)
            # Ended, and no writer is left to raise the watermark: its last COMMIT is in
            # flight, or died with a master (replicated after its WAIT, while the raise was
            # not). Anyone may raise it after a WAIT of their own: everything in the log now
            # is then on the replicas.
            self.replicate(job_id)
        return status, int(last or 0)

    def read_events(
        self, job_id: str, after: int = 0, limit: int | None = None
    ) -> list[tuple[int, str]]:
        """The log entries with ids greater than ``after`` (at most ``limit``), as
        ``(id, entry)``."""
        end = -1 if limit is None else after + limit - 1
        if not self.min_replicas:
            entries = cast("list[str]", self.redis.lrange(self.keys.events(job_id), after, end))
            return [(after + i + 1, entry) for i, entry in enumerate(entries)]
        # only up to the replicated watermark: what a failover cannot take back
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.hget(self.keys.job(job_id), WATERMARK_FIELD)
            pipe.lrange(self.keys.events(job_id), after, end)
            mark, entries = pipe.execute()
        if mark is not None:
            entries = entries[: max(0, int(mark) - after)]
        return [(after + i + 1, entry) for i, entry in enumerate(entries)]

    def transcript(self, job_id: str) -> Transcript:
        return fold(self.read_events(job_id))

    def log_length(self, job_id: str) -> int:
        """How many events the job's log holds (fewer than its ``last_event_id`` when the
        log expired or lost its tail)."""
        return int(self.redis.llen(self.keys.events(job_id)))

    def delete(self, job_id: str) -> None:
        """Forget a job: its state and its log (an ended job; cancel a running one
        first, or its worker's next write finds it gone and stops)."""
        self.redis.delete(self.keys.job(job_id), self.keys.events(job_id))

    # -- conversations ----------------------------------------------------------------------

    def conversation_job_id(self, owner: str, conversation_id: str) -> str:
        """The id of the conversation's latest job ('' when it has none)."""
        value = self.redis.get(self.keys.conversation(owner, conversation_id))
        return cast("str", value) if value else ""

    def conversation_job(self, owner: str, conversation_id: str) -> Job | None:
        """The conversation's latest job, if it has one that has not expired."""
        job_id = self.conversation_job_id(owner, conversation_id)
        return self.get(job_id) if job_id else None

    def point_conversation(
        self, owner: str, conversation_id: str, job_id: str, expected: str
    ) -> bool:
        """Make ``job_id`` the conversation's latest job if its latest is still
        ``expected`` (compare and set); False when another submit got there first."""
        key = self.keys.conversation(owner, conversation_id)
        ttl = self.settings.max_job_age + self.settings.job_ttl
        return bool(self._point_conversation(keys=[key], args=[expected, job_id, ttl]))

    # -- state changes --------------------------------------------------------------------

    def claim(self, job_id: str) -> Job | None:
        """Start a queued job in one round trip: mark it running, take its lease, append
        its ``started`` event; returns the job as claimed (``attempt`` is this attempt's
        number), or None if it is not queued (a duplicate delivery, or it ended or
        expired)."""
        now = time.time()
        keys = [
            self.keys.job(job_id),
            self.keys.leases_of(job_id),
            self.keys.events(job_id),
            self.keys.channel(job_id),
            self.keys.queued_of(job_id),
        ]
        args: list[str | float] = [
            job_id,
            repr(now),
            now + self.settings.lease_ttl,
            self.settings.max_job_age,
        ]
        pairs = self._claim(keys=keys, args=args)
        if not pairs:
            return None
        return Job.from_hash(job_id, dict(zip(pairs[::2], pairs[1::2], strict=True)))

    def renew_call(self, job_id: str, attempt: int) -> ScriptCall:
        """The RENEW script call that extends this attempt's lease (sent with the other
        jobs' checks, ``worker/watcher.py``); its reply: 1 renewed, 0 the job is no longer
        this attempt's."""
        until = time.time() + self.settings.lease_ttl
        keys = [self.keys.job(job_id), self.keys.leases_of(job_id)]
        return ScriptCall(self._renew, keys, [job_id, attempt, until])

    def release(self, job_id: str, attempt: int, reason: str = "worker_shutdown") -> bool:
        """Give a running job back (a worker shutting down): end its lease now, so a
        reaper restarts it with a ``reset`` event saying ``reason``."""
        keys = [self.keys.job(job_id), self.keys.leases_of(job_id)]
        return bool(self._release(keys=keys, args=[job_id, attempt, reason]))

    def expired_leases(self, limit: int = 100) -> list[str]:
        """Ids of running jobs whose lease has run out (their worker is presumably dead),
        soonest expired first, from every lease index (one round trip: on a cluster, one
        pipeline per node)."""
        now = time.time()
        per_index = self._read_indexes(
            [("ZRANGEBYSCORE", key, "-inf", repr(now), "WITHSCORES", "LIMIT", "0", str(limit))
             for key in self.keys.lease_indexes]
        )  # fmt: skip
        return [job_id for job_id, _ in _earliest(per_index, limit)]

    def _read_indexes(self, commands: list[tuple[str, ...]]) -> list[list[tuple[str, float]]]:
        """The ``(member, score)`` pairs each ZRANGEBYSCORE … WITHSCORES read."""
        if len(commands) == 1:
            raw: list[object] = [self.redis.execute_command(*commands[0])]
        else:
            raw = send_together(self.redis, cast("list[Command]", commands))
        out = []
        for reply in raw:
            if isinstance(reply, Exception):
                raise reply
            pairs = cast("list[Any]", reply)
            if pairs and not isinstance(pairs[0], list | tuple):  # a flat [m, s, m, s]
                pairs = list(zip(pairs[::2], pairs[1::2], strict=True))
            out.append([(str(member), float(score)) for member, score in pairs])
        return out

    def reap(self, job_id: str) -> int:
        """Restart (or, at the attempt limit, fail) a job whose lease ran out.

        Returns the next attempt number when the job went back to the queue (the caller
        enqueues it), -1 when it failed with ``worker_lost``, 0 when nothing was due.
        """
        error = WorkerLost(
            f"the worker running this job was lost ({self.settings.max_attempts} attempts)"
        ).to_dict()
        keys = self._log_keys(job_id)
        args: list[str | int] = [
            job_id,
            repr(time.time()),
            self.settings.max_attempts,
            self.settings.job_ttl,
            self.settings.max_job_age,
            Event(ERROR, {"error": error}).entry(),
        ]
        outcome = int(self._reap(keys=keys, args=args))
        if outcome and self.min_replicas:
            self.replicate(job_id)
        return outcome

    def append(self, job_id: str, events: list[Event], **options: Any) -> int:
        """Append events (one round trip); returns the id of the last one.

        A terminal event as the last element ends the job: its status is set and its keys
        get the finished-job TTL. ``expect_last`` (with ``attempt``) is the id of the last
        event this writer knows of: a retried call whose first try was applied returns the
        same ids instead of writing twice. Raises the refusal ``append_result`` decodes
        when the write is refused. ``options`` are those of ``append_call``.
        """
        call = self.append_call(job_id, events, **options)
        last = append_result(job_id, self._append(keys=call.keys, args=call.args))
        if self.min_replicas:
            self.replicate(job_id, last, options.get("attempt"))
        return last

    def append_call(
        self,
        job_id: str,
        events: list[Event],
        *,
        attempt: int | None = None,
        expect_last: int | None = None,
        status: str | None = None,
        fields: dict[str, str | int | float] | None = None,
    ) -> ScriptCall:
        """The APPEND script call ``append`` makes, for a caller that sends several
        together (the worker's ``EventLog``); ``append_result`` reads its reply."""
        if not events:
            raise ValueError("append needs at least one event")
        last = events[-1]
        ttl = 0
        if last.type in TERMINAL_EVENTS:
            status = STATUS_OF_TERMINAL_EVENT[last.type]
            ttl = self.settings.job_ttl
        args: list[Any] = [
            job_id,
            "" if attempt is None else str(attempt),
            "" if expect_last is None else str(expect_last),
            status or "",
            repr(time.time()),
            ttl,
            self.settings.max_job_age,
            len(events),
            *(event.entry() for event in events),
        ]
        for name, value in (fields or {}).items():
            args += [name, value]
        keys = self._log_keys(job_id)
        return ScriptCall(self._append, keys, args)

    # -- the replicated watermark (sluice.replication) ----------------------------------

    def wait_calls(self) -> list[Command]:
        """A write on the round trip's own connection, then WAIT: WAIT covers what was
        written on its connection, and the write makes that "everything so far" even when
        the round trip's appends wrote nothing (refused, or already in the log). (One
        Redis; on a cluster each master gets its own, ``sluice.node_pipelines``.)"""
        return [
            ("SET", f"{self.keys.prefix}:replication-probe", "1"),
            self._wait_command(),
        ]

    def _wait_command(self) -> tuple[str, ...]:
        return ("WAIT", str(self.min_replicas), str(wait_timeout_ms(self.settings)))

    def send_and_wait(
        self, calls: Sequence[tuple[str, Command]], waiting: Collection[str] = ()
    ) -> Waited:
        """Send ``calls`` (each with the id of the job whose keys it touches) and, in the
        same round trip, a write and WAIT on the connection that wrote them: on a cluster,
        one pipeline per master of those jobs and of ``waiting``'s. Returns each call's
        reply or error, and the jobs whose replicas (``min_replicas``) have everything
        written so far; raises only what fails the whole round trip on one Redis."""
        jobs = {job_id for job_id, _ in calls} | set(waiting)
        if not self.sharded:
            replies = send_together(self.redis, [call for _, call in calls] + self.wait_calls())
            *answers, probe, acked = replies
            enough = not isinstance(probe, Exception)
            enough = enough and isinstance(acked, int) and acked >= self.min_replicas
            return Waited(answers, jobs if enough else set(), {"redis": acked})
        return node_pipelines.send_and_wait(
            cast("RedisCluster", self.redis),
            calls,
            jobs,
            job_key=self.keys.job,
            probe_key=lambda job_id: (
                f"{self.keys.prefix}:replication-probe:{{{self.keys.tag(job_id)}}}"
            ),
            wait=self._wait_command(),
            enough=self.min_replicas,
            pack=packed,
        )

    def commit_call(self, job_id: str, upto: int, attempt: int | None = None) -> ScriptCall:
        """The COMMIT call: raise the job's watermark to ``upto`` and publish the events
        it passes (after a WAIT confirmed the replicas have them)."""
        keys = [self.keys.job(job_id), self.keys.events(job_id), self.keys.channel(job_id)]
        return ScriptCall(self._commit, keys, [upto, "" if attempt is None else str(attempt)])

    def replicate(self, job_id: str, upto: int | None = None, attempt: int | None = None) -> None:
        """WAIT, then COMMIT (two round trips), for the writes outside the worker's group
        commit: a cancel, a reaper's reset or worker_lost. Each ends a stretch of the log no
        later write would publish, so when WAIT times out it is published anyway, and
        logged (these writes are rare; the worker's appends never take this path). On a
        cluster the WAIT goes to the job's master, on the connection of its probe write."""
        waited = self.send_and_wait([], [job_id])
        for acked in waited.acks.values():
            if isinstance(acked, Exception):
                raise acked
        if job_id not in waited.covered:
            acks = ",".join(str(acked) for acked in waited.acks.values())
            log.warning("event=redis.unreplicated job=%s replicas=%s", job_id, acks)
        send_together(self.redis, [self.commit_call(job_id, upto or 2**53, attempt)])

    # -- jobs whose message went missing -------------------------------------------------

    def sent_before(self, moment: float, limit: int = 100) -> list[tuple[str, float]]:
        """Queued jobs whose message was last sent before ``moment`` (a Unix time), oldest
        first, as ``(job id, sent at)``: either still waiting their turn in the broker, or
        stranded (their message lost, or held by a worker that died before claiming)."""
        per_index = self._read_indexes(
            [("ZRANGEBYSCORE", key, "-inf", f"({moment!r}", "WITHSCORES", "LIMIT", "0", str(limit))
             for key in self.keys.queued_indexes]
        )  # fmt: skip
        return _earliest(per_index, limit)

    def sent_at(self, job_id: str) -> float | None:
        """When the message of this queued job was last sent (None: not queued)."""
        score = self.redis.zscore(self.keys.queued_of(job_id), job_id)
        return None if score is None else float(score)

    def mark_sent(self, job_id: str) -> bool:
        """Record that the job's message was sent again now; False if it is no longer
        queued (a worker claimed it meanwhile)."""
        queued = self.keys.queued_of(job_id)
        return bool(self.redis.zadd(queued, {job_id: time.time()}, xx=True, ch=True))

    def forget_queued(self, job_id: str) -> None:
        """Drop a queued-index entry whose job is gone (expired before it ever ran)."""
        self.redis.zrem(self.keys.queued_of(job_id), job_id)

    def withdraw(self, job_id: str, idempotency_key: str | None, owner: str = "") -> bool:
        """Take back a job whose message could not be sent: it, its queued-index entry and
        its ``Idempotency-Key`` are deleted, so that a retry starts a job that runs. Only a
        job no worker has claimed; returns whether it was withdrawn."""
        idem = self.keys.idempotency(f"{owner}:{idempotency_key}") if idempotency_key else ""
        keys = [self.keys.job(job_id), self.keys.queued_of(job_id)]
        if not self.sharded:
            return bool(self._withdraw(keys=[*keys, idem], args=[job_id]))
        # on a cluster the Idempotency-Key is in another slot: deleted after the job (a
        # crash in between leaves a key naming a job that is gone, which ``create``
        # replaces)
        withdrawn = bool(self._withdraw(keys=keys, args=[job_id]))
        if withdrawn and idem:
            self._delete_if(keys=[idem], args=[job_id])
        return withdrawn

    def cancel(self, job_id: str, usage: dict[str, Any] | None) -> Job:
        """End a job with ``cancelled``; idempotent: an ended job is returned as it is."""
        data: dict[str, Any] = {"usage": usage, "usage_estimated": True}
        with contextlib.suppress(JobAlreadyEnded):
            self.append(job_id, [Event(CANCELLED, data)])
        job = self.get(job_id)
        if job is None:
            raise JobGone(f"job {job_id} does not exist")
        return job


def _earliest(per_index: list[list[tuple[str, float]]], limit: int) -> list[tuple[str, float]]:
    """The ``limit`` lowest-scored ``(member, score)`` pairs of several indexes."""
    merged = [pair for pairs in per_index for pair in pairs]
    merged.sort(key=lambda pair: pair[1])
    return merged[:limit]
