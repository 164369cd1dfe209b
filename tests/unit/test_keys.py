"""The two key layouts (``sluice/keys.py``): one Redis keeps its keys byte for byte; on a
cluster every key a script touches is in one slot, and the buckets spread over the slots."""

from __future__ import annotations

import collections

from redis.crc import key_slot

from sluice import scripts
from sluice.keys import BUCKETS, Keys, bucket_of


def test_one_redis_keeps_its_keys() -> None:
    keys = Keys("sluice")
    assert keys.job("job_x") == "sluice:job:{job_x}"
    assert keys.events("job_x") == "sluice:job:{job_x}:events"
    assert keys.channel("job_x") == "sluice:job:{job_x}:live"
    assert keys.leases_of("job_x") == "sluice:leases" and keys.lease_indexes == ["sluice:leases"]
    assert keys.queued_of("job_x") == "sluice:queued" and keys.queued_indexes == ["sluice:queued"]


def test_on_a_cluster_a_job_and_its_indexes_share_one_slot() -> None:
    keys = Keys("sluice", sharded=True)
    for n in range(500):
        job_id = f"job_{n}"
        touched = [keys.job(job_id), keys.events(job_id), keys.channel(job_id),
                   keys.leases_of(job_id), keys.queued_of(job_id)]  # fmt: skip
        assert len({key_slot(key.encode()) for key in touched}) == 1
        assert keys.leases_of(job_id) in keys.lease_indexes
        assert keys.queued_of(job_id) in keys.queued_indexes
    assert keys.job("job_x") == f"sluice:job:{{b{bucket_of('job_x')}}}:job_x"
    assert len(set(keys.lease_indexes)) == len(set(keys.queued_indexes)) == BUCKETS


def test_the_buckets_spread_over_three_equal_slot_ranges() -> None:
    thirds = collections.Counter(key_slot(f"b{b}".encode()) * 3 // 16384 for b in range(BUCKETS))
    assert sorted(thirds.values()) == [20, 22, 22]


def test_the_cluster_scripts_only_swap_publish_for_spublish() -> None:
    for script in (scripts.APPEND, scripts.CLAIM, scripts.REAP):
        variant = scripts.sharded(script)
        assert "'PUBLISH'" not in variant and variant.count("'SPUBLISH'") == 1
        assert variant.replace("'SPUBLISH'", "'PUBLISH'") == script
    assert scripts.sharded(scripts.RENEW) == scripts.RENEW
