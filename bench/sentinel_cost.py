"""The replicated watermark's cost, side by side in one run (issue #17 point 4).

``python -m bench.sentinel_cost [--streams 100] [--words 200] [--delay 0.005]`` starts a
Sentinel topology (``tests/helpers/sentinel.py``: master, replica, three Sentinels), the
fake upstream, and two stacks on it (a gateway and a worker each, on their own key prefix
and queue), one with ``SLUICE_REDIS_MIN_REPLICAS=0`` and one with 1, then runs the same
load against each, twice, alternating: N concurrent jobs created and streamed at once
(``POST /v1/jobs`` with ``"stream": true``), and prints deltas/s (all streams, from the
first request to the last ``done``) and first-delta latency (p50/p95 from the POST to the
first delta) per stack. Every stream must end with ``done`` and no id repeated or missing.

``--cluster`` does the same on a Redis Cluster (``tests/helpers/cluster.py``: three
masters, three replicas), the Celery broker the Redis at ``--broker`` (a cluster cannot be
one).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp

from devtools.fake_upstream import FakeUpstream
from sluice.settings import Settings
from tests.helpers.cluster import RedisCluster
from tests.helpers.sentinel import SentinelTopology
from tests.helpers.stack import ProcessLogs, Stack
from tests.helpers.support import UPSTREAM_KEY


async def one(session: aiohttp.ClientSession, url: str, model: str, out: dict[str, list[float]]):
    body = {
        "model": model,
        "stream": True,
        "messages": [{"role": "user", "content": secrets.token_hex(4)}],
    }
    started = time.monotonic()
    first = None
    deltas = 0
    last_id = 0
    async with session.post(f"{url}/v1/jobs", json=body) as response:
        assert response.status == 200, await response.text()
        event = ""
        async for raw in response.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("id:"):
                event_id = int(line[3:])
                assert event_id == last_id + 1, (event_id, last_id)
                last_id = event_id
            elif line.startswith("event:"):
                event = line[6:].strip()
                if event == "delta":
                    deltas += 1
                    if first is None:
                        first = time.monotonic() - started
                elif event == "done":
                    break
    assert event == "done", event
    out["ttfd"].append(first or 0.0)
    out["deltas"].append(deltas)


async def load(url: str, streams: int, model: str) -> dict[str, float]:
    out: dict[str, list[float]] = {"ttfd": [], "deltas": []}
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        started = time.monotonic()
        await asyncio.gather(*(one(session, url, model, out) for _ in range(streams)))
        elapsed = time.monotonic() - started
    ttfd = sorted(out["ttfd"])
    return {
        "deltas_per_s": round(sum(out["deltas"]) / elapsed),
        "ttfd_p50_ms": round(1000 * statistics.median(ttfd), 1),
        "ttfd_p95_ms": round(1000 * ttfd[int(0.95 * (len(ttfd) - 1))], 1),
        "seconds": round(elapsed, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--words", type=int, default=200)
    parser.add_argument("--delay", type=float, default=0.005)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--cluster", action="store_true")
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    model = f"slow;delay={args.delay};words={args.words}"
    directory = Path(tempfile.mkdtemp(prefix="sluice-sentinel-bench-"))
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(directory / "tiktoken"))
    topology: SentinelTopology | RedisCluster
    if args.cluster:
        topology = RedisCluster(directory).start()
        where: dict[str, object] = {
            "redis_url": topology.url, "redis_cluster": True, "celery_broker_url": args.broker,
        }  # fmt: skip
    else:
        topology = SentinelTopology(directory)
        where = {"redis_url": topology.url, "redis_sentinels": topology.sentinels}
    logs = ProcessLogs(directory)
    stacks: dict[str, Stack] = {}
    try:
        with FakeUpstream(api_key=UPSTREAM_KEY) as upstream:
            for replicas in ("0", "1"):
                run = secrets.token_hex(3)
                settings = Settings.from_env(
                    **where,
                    openai_api_key=UPSTREAM_KEY, openai_base_url=upstream.base_url,
                    key_prefix=f"sluice-bench-{run}", queue=f"sluice-bench-{run}",
                    secret_key="bench-" + run, redis_min_replicas=int(replicas),
                )  # fmt: skip
                os.environ["SLUICE_REDIS_MIN_REPLICAS"] = replicas  # stack_env passes it on
                stack = Stack(settings, logs, f"bench-min-replicas-{replicas}")
                stack.start_worker()
                stacks[replicas] = stack
            results: dict[str, list[dict[str, float]]] = {"0": [], "1": []}
            asyncio.run(load(stacks["0"].url, 10, model))  # warm both up
            asyncio.run(load(stacks["1"].url, 10, model))
            for _ in range(args.rounds):
                for replicas, stack in stacks.items():
                    results[replicas].append(asyncio.run(load(stack.url, args.streams, model)))
        topology_name = "cluster" if args.cluster else "sentinel"
        print(json.dumps({"topology": topology_name, "streams": args.streams, "model": model,
                          "results": results}, indent=1))  # fmt: skip
    finally:
        for stack in stacks.values():
            stack.stop()
        topology.stop()


if __name__ == "__main__":
    main()
