"""What one job costs Redis: bytes of its hash and its log, per job and per event.

``python -m bench.footprint [--jobs 200] [--tokens 500]`` writes jobs through the job store
as a worker does (a ``started``, one ``delta`` per token of a few characters, a ``done``
with usage), in batches of ``--batch`` events per APPEND (a worker's group commit), on a
key prefix of its own, and prints ``MEMORY USAGE`` of one job's keys and the growth of
Redis' ``used_memory`` per job, then deletes what it wrote. The capacity model in
docs/scaling.md takes its per-job and per-event figures from here.
"""

from __future__ import annotations

import argparse
import secrets
from typing import cast

from sluice.events import DELTA, DONE, Event
from sluice.redis_client import make_redis
from sluice.settings import Settings
from sluice.store import JobStore

WORDS = ("Hel", "lo", " from", " the", " river", ",", " café", " déjà", " vu", "!", "\n")


def write_job(store: JobStore, tokens: int, batch: int) -> str:
    job, _ = store.create(
        model="gpt-4o-mini",
        request={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi " * 20}]},
        prompt_tokens=24,
        truncated_messages=0,
    )
    claimed = store.claim(job.id)
    assert claimed is not None
    last = 1
    events = [Event(DELTA, {"index": 0, "content": WORDS[i % len(WORDS)]}) for i in range(tokens)]
    for start in range(0, tokens, batch):
        last = store.append(
            job.id, events[start : start + batch], attempt=claimed.attempt, expect_last=last
        )
    usage = {"prompt_tokens": 24, "completion_tokens": tokens, "total_tokens": 24 + tokens}
    data = {"finish_reasons": ["stop"], "usage": usage, "usage_estimated": False}
    store.append(job.id, [Event(DONE, data)], attempt=claimed.attempt, expect_last=last)
    return job.id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--tokens", type=int, default=500, help="deltas per answer")
    parser.add_argument("--batch", type=int, default=4, help="deltas per APPEND")
    args = parser.parse_args()
    settings = Settings.from_env(key_prefix=f"sluice-footprint-{secrets.token_hex(3)}")
    client = make_redis(settings)
    store = JobStore(client, settings)
    before = int(cast("dict[str, int]", client.info("memory"))["used_memory"])
    ids = [write_job(store, args.tokens, args.batch) for _ in range(args.jobs)]
    after = int(cast("dict[str, int]", client.info("memory"))["used_memory"])
    one = ids[0]
    hash_bytes = int(cast("int", client.memory_usage(store.keys.job(one))))
    log_bytes = int(cast("int", client.memory_usage(store.keys.events(one), samples=0)))
    events = args.tokens + 2
    per_job = (after - before) / args.jobs
    print(f"jobs {args.jobs}, {args.tokens} deltas each ({events} events), {args.batch} per APPEND")
    print(f"one job: hash {hash_bytes} B, log {log_bytes} B ({log_bytes / events:.0f} B/event)")
    print(f"used_memory growth: {per_job / 1024:.1f} KiB per job ({per_job / events:.0f} B/event)")
    for key in client.scan_iter(f"{settings.key_prefix}:*", count=1000):
        client.delete(key)


if __name__ == "__main__":
    main()
