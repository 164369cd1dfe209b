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
* every reader (``JobStore.read_events``: the feed's replay, the poll, the projections)
  reads the log only up to the watermark.

While fewer than n replicas acknowledge, appends go on and nothing more is published:
streams pause rather than show what a failover could take back.
"""

from __future__ import annotations

from sluice.settings import Settings

WATERMARK_FIELD = "replicated"


def min_replicas(settings: Settings) -> int:
    """``SLUICE_REDIS_MIN_REPLICAS``: replicas that must have an event before a client sees
    it (0: off; -1, the default: 1 with ``REDIS_SENTINELS``, else 0, a Redis Cluster
    included: there it is chosen, ``SLUICE_REDIS_MIN_REPLICAS=1``)."""
    if settings.redis_min_replicas >= 0:
        return settings.redis_min_replicas
    return 1 if settings.redis_sentinels else 0


def wait_timeout_ms(settings: Settings) -> int:
    """``SLUICE_REDIS_WAIT_TIMEOUT_MS``: how long one WAIT waits for the replicas."""
    return max(1, settings.redis_wait_timeout_ms)
