"""Enough open files for the streams a process is configured to hold.

Every open stream costs a gateway process one socket (its client's) and a worker one
socket per running job (its upstream's), plus a few for Redis and the broker. Linux
starts most processes with a soft limit of 1,024 open files, so a gateway set up for
10,000 streams (``SLUICE_WORKER_CONNECTIONS``) would refuse connections past about a
thousand with "Too many open files" — an error that reaches the client as a reset, far
from its cause. The soft limit may be raised up to the hard limit by the process itself,
so each process does that at start, and says so when even the hard limit is too low for
what it was asked to hold (raise it with ``ulimit -n``, systemd's ``LimitNOFILE``, or
docker's ``ulimits: nofile``, as docs/performance.md shows).
"""

from __future__ import annotations

import contextlib
import logging
import resource

log = logging.getLogger("sluice.limits")
SPARE = 256  # descriptors beyond the streams: Redis, the broker, logs, metrics, libraries


def raise_open_file_limit(streams: int, per_stream: int = 1) -> tuple[int, int]:
    """Raise the soft open-file limit to the hard one (a root process may also raise the
    hard one to what ``streams`` need); warn when that is still short. Returns the
    (soft, hard) limits now in force."""
    needed = streams * per_stream + SPARE
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed:
        # only a process allowed to (CAP_SYS_RESOURCE) may raise the hard limit
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, needed))
            hard = needed
    target = max(soft, needed) if hard == resource.RLIM_INFINITY else hard
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        log.info("open-file limit raised from %d to %d", soft, target)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        log.warning(
            "open-file limit %d is below the %d that %d streams need: connections past "
            "that fail with 'Too many open files' (raise the hard limit: ulimit -n, "
            "LimitNOFILE, docker ulimits)",
            soft, needed, streams,
        )  # fmt: skip
    return soft, hard
