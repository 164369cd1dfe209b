"""The replicated watermark: clients see only events a replica has (issue #17 point 4).

Redis replicates asynchronously: a master acknowledges a write before any replica has it,
so a master that dies (and is replaced by its replica, Sentinel's failover) may take its
last writes with it. Events a client already received would then be missing from the
surviving log, and the restarted job would write other events under those same ids.

With ``SLUICE_REDIS_MIN_REPLICAS`` = n > 0 (default 1 with ``REDIS_SENTINELS``, else 0),
a new job's hash carries a ``replicated`` field (its watermark, 0), and then:

* the scripts that write its log (``APPEND``, ``CLAIM``, ``REAP``) append without
  publishing (``sluice.scripts.push``);
* the worker's group commit (``worker/event_log.py``) sends its appends, a write of its
  own, and ``WAIT n SLUICE_REDIS_WAIT_TIMEOUT_MS`` in one round trip; only when WAIT
  says n replicas have everything does it send ``COMMIT`` (in the next round trip,
  ahead of the next appends), which raises the watermark and publishes the events;
* on a Redis Cluster WAIT is per master and per connection: that round trip is one
  pipeline per master, on the master's own connection, each with its jobs' appends and
  COMMITs, a probe write in a slot the master owns (one of its jobs' bucket) and its own
  WAIT, which covers only that master's jobs (``sluice.node_pipelines``); a MOVED, ASK or
  lost connection refreshes the slot map and sends the group again;
* the writes outside the group commit (a cancel, a reaper's reset) and a reader that
  finds an ended job's watermark behind (``JobStore.replicate``) WAIT the same way, on
  the job's master;
* every reader (``JobStore.read_events``: the feed's replay, the poll, the projections)
  reads the log only up to the watermark.

While fewer than n replicas acknowledge, appends go on and nothing more is published:
streams pause rather than show what a failover could take back. The default is on only
with Sentinel: on a Redis Cluster set ``SLUICE_REDIS_MIN_REPLICAS=1`` for the same
guarantee (docs/reliability.md, "Failover").
"""

from __future__ import annotations

from sluice.settings import Settings

WATERMARK_FIELD = "replicated"


def min_replicas(settings: Settings) -> int:
    """``SLUICE_REDIS_MIN_REPLICAS``: replicas that must have an event before a client sees
    it (0: off; -1, the default: 1 with ``REDIS_SENTINELS``, else 0, a Redis Cluster
    included, where it is set explicitly)."""
    if settings.redis_min_replicas >= 0:
        return settings.redis_min_replicas
    return 1 if settings.redis_sentinels else 0


def wait_timeout_ms(settings: Settings) -> int:
    """``SLUICE_REDIS_WAIT_TIMEOUT_MS``: how long one WAIT waits for the replicas."""
    return max(1, settings.redis_wait_timeout_ms)
