"""The only place that knows Redis key and channel names (as python-rq's ``keys.py``).

All keys of one job share a hash tag, so a Lua script that touches them runs in one Redis
Cluster slot. Two layouts, chosen by ``SLUICE_REDIS_CLUSTER``:

* **one Redis** (the default): a job's tag is its id (``sluice:job:{<id>}``), and the lease
  index and the queued index are one key each (``sluice:leases``, ``sluice:queued``);
* **sharded** (a Redis Cluster): jobs fall into ``BUCKETS`` buckets by their id (CRC-32
  modulo 64); a job's tag is its bucket's (``sluice:job:{b17}:<id>``), and each bucket has
  its own lease index and queued index under the same tag (``sluice:leases:{b17}``), so a
  script touches the job's keys and its bucket's indexes: one slot. The reaper reads every
  bucket (``lease_indexes``, ``queued_indexes``).

Worker presence, idempotency keys and conversation keys are single-key operations in both.
"""

from __future__ import annotations

import zlib

# buckets of the sharded layout: enough to spread jobs over a cluster of up to ~16 masters
# evenly (b0…b63 fall 22/22/20 on three masters of equal slot ranges), few enough that a
# reaper sweep of every bucket is 128 cheap reads (one pipeline per node)
BUCKETS = 64


def bucket_of(job_id: str) -> int:
    """The job's bucket in the sharded layout (stable across processes and versions)."""
    return zlib.crc32(job_id.encode()) % BUCKETS


class Keys:
    def __init__(self, prefix: str, *, sharded: bool = False) -> None:
        self.prefix = prefix
        self.sharded = sharded

    def tag(self, job_id: str) -> str:
        """The hash tag (between the braces) of the job's keys and of its indexes."""
        return f"b{bucket_of(job_id)}" if self.sharded else job_id

    def job(self, job_id: str) -> str:
        """Hash: the job's state (status, model, timestamps, request, usage…)."""
        if self.sharded:
            return f"{self.prefix}:job:{{{self.tag(job_id)}}}:{job_id}"
        return f"{self.prefix}:job:{{{job_id}}}"

    def events(self, job_id: str) -> str:
        """List: the job's event log; the event with id N sits at index N-1."""
        return f"{self.job(job_id)}:events"

    def channel(self, job_id: str) -> str:
        """Pub/sub channel that carries the job's events live (a shard channel, with
        SPUBLISH and SSUBSCRIBE, in the sharded layout)."""
        return f"{self.job(job_id)}:live"

    def idempotency(self, key: str) -> str:
        """String: the job id an Idempotency-Key was first used for."""
        return f"{self.prefix}:idem:{key}"

    def conversation(self, owner: str, conversation_id: str) -> str:
        """String: the id of the conversation's latest job (one owner's conversations
        only: the same id under another access key is another conversation)."""
        return f"{self.prefix}:conv:{owner}:{conversation_id}"

    @property
    def workers(self) -> str:
        """Sorted set: worker processes by the time they last said they were alive."""
        return f"{self.prefix}:workers"

    def leases_of(self, job_id: str) -> str:
        """Sorted set: running jobs (of the job's bucket) by the time their worker's lease
        runs out."""
        return self._index("leases", job_id)

    def queued_of(self, job_id: str) -> str:
        """Sorted set: queued jobs (of the job's bucket) by the time their message was last
        sent to the broker (the reaper sends it again for a job whose message was lost)."""
        return self._index("queued", job_id)

    @property
    def lease_indexes(self) -> list[str]:
        """Every lease index: one key, or one per bucket."""
        return self._indexes("leases")

    @property
    def queued_indexes(self) -> list[str]:
        """Every queued index: one key, or one per bucket."""
        return self._indexes("queued")

    def _index(self, name: str, job_id: str) -> str:
        if self.sharded:
            return f"{self.prefix}:{name}:{{{self.tag(job_id)}}}"
        return f"{self.prefix}:{name}"

    def _indexes(self, name: str) -> list[str]:
        if self.sharded:
            return [f"{self.prefix}:{name}:{{b{bucket}}}" for bucket in range(BUCKETS)]
        return [f"{self.prefix}:{name}"]
