"""What a gevent worker needs so that one process can run many streams at once.

A worker runs its jobs on greenlets (``--pool gevent``): every stream of the process
shares one event loop, so whatever blocks that loop, or crowds it, delays every delta of
every stream. Three adjustments, each for something the libraries do not do themselves:

* kombu's wait between attempts to reach the broker blocks the whole process unless it
  is pointed at gevent's sleep (``cooperative_kombu_sleep``);
* a job start lets the deltas already waiting go first (``yield_to_running_streams``);
* work started from inside the event loop's own callback (a signal handler) runs on a
  greenlet, since starting a thread there would block (``spawn``).

Outside a gevent-patched process (tests, threads, prefork) each is a no-op or falls back
to the plain thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import gevent
from gevent import monkey

log = logging.getLogger("sluice.worker")
START_YIELD = 0.05  # seconds a job start lets pending stream events go first, at most


def cooperative_kombu_sleep() -> bool:
    """Point kombu's retry sleep at gevent's, in a gevent-patched process; returns whether
    it had to (False: not patched, or kombu already sleeps cooperatively).

    Celery imports ``kombu.utils.functional`` while it chooses the pool, before gevent
    patches the standard library, so that module keeps the blocking ``time.sleep`` it
    imported. kombu sleeps through it between attempts to reach the broker again
    (``retry_over_time``: the consumer's "Trying again in 2.00 seconds…", and publishes
    retried through an outage): in a gevent worker that froze the whole process, every
    running stream with it, for the retry interval, 2 s and then longer. A stream's
    upstream read timed out while data sat unread, and its lease could not be renewed. The
    chaos soak found it (a worker's metrics endpoint did not answer for 2.0 s after Redis
    was killed).
    """
    if not monkey.is_module_patched("time"):
        return False
    import kombu.utils.functional as kombu_functional

    if getattr(kombu_functional, "sleep", None) is not monkey.get_original("time", "sleep"):
        return False
    setattr(kombu_functional, "sleep", time.sleep)  # noqa: B010 (gevent's: time is patched)
    log.debug("kombu's retry sleep now yields to the event loop")
    return True


def yield_to_running_streams(limit: float = START_YIELD) -> None:
    """Let the events already pending in this process (deltas of running streams) go
    first, for at most ``limit`` seconds.

    ``gevent.idle()`` returns once the event loop has nothing else to run. Starting a job
    (Celery's message, the claim, a new upstream request) costs far more CPU than
    appending a delta; without this, a burst of starts runs between a delta's arrival and
    its append. The bound keeps starts from starving under sustained load. Outside a
    gevent worker (threads, prefork) there is nothing to yield to.
    """
    if not monkey.is_module_patched("socket"):
        return
    with gevent.Timeout(limit, False):
        gevent.idle()


def spawn(function: Callable[[], None], name: str) -> None:
    """Run ``function`` soon, without blocking: under gevent, ``Thread.start()`` itself
    waits on an event, which the event loop's callback may not do; elsewhere it gets a
    thread called ``name``."""
    if monkey.is_module_patched("threading"):
        gevent.spawn(function)
    else:
        threading.Thread(target=function, name=name).start()
