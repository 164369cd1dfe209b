"""The only place that knows Redis key and channel names (as python-rq's ``keys.py``).

All keys of one job share the ``{<job id>}`` hash tag, so a Lua script that touches them
runs in one Redis Cluster slot.
"""

from __future__ import annotations


class Keys:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def job(self, job_id: str) -> str:
        """Hash: the job's state (status, model, timestamps, request, usage…)."""
        return f"{self.prefix}:job:{{{job_id}}}"

    def events(self, job_id: str) -> str:
        """List: the job's event log; the event with id N sits at index N-1."""
        return f"{self.prefix}:job:{{{job_id}}}:events"

    def channel(self, job_id: str) -> str:
        """Pub/sub channel that carries the job's events live."""
        return f"{self.prefix}:job:{{{job_id}}}:live"

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

    @property
    def leases(self) -> str:
        """Sorted set: running jobs by the time their worker's lease runs out."""
        return f"{self.prefix}:leases"

    @property
    def queued(self) -> str:
        """Sorted set: queued jobs by the time their message was last sent to the broker
        (the reaper sends it again for a job whose message was lost)."""
        return f"{self.prefix}:queued"
