"""corral.redis rate limits on a real 3-master Redis Cluster, both flavours: every key of a
limiter (and of a Limits) shares one hash tag, so each script runs on one node.

The cluster comes from test_cluster.py's fixture (issue 18's Cluster tests); until that file
is in the tree these tests are skipped.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

import corral.redis
import corral.threads.redis

try:
    from .test_cluster import cluster_url
except ImportError:  # pragma: no cover - before the Cluster tests are merged
    cluster_url = None

pytestmark = pytest.mark.skipif(cluster_url is None, reason="needs tests/redis_ext/test_cluster.py")


def test_threads_limits_per_tenant_on_a_cluster(cluster_url: str) -> None:
    from redis.cluster import RedisCluster

    c = RedisCluster.from_url(cluster_url)
    try:
        for tenant in ("t1", "tenant-2", "x"):  # tags that hash to different nodes
            R = corral.threads.redis.RateLimit
            rpm = R(c, "rpm", 50, tag=tenant)
            tpm = R(c, "tpm", 5_000, burst=500, tag=tenant)
            account = corral.threads.redis.Limits(rpm, tpm)

            def call(account: corral.threads.redis.Limits = account, tpm: R = tpm) -> None:
                with account.acquire({tpm: 100}) as grant:
                    grant.adjust(tpm, 50)

            threads = [threading.Thread(target=call) for _ in range(10)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            assert rpm.statistics().acquired == 10
            assert tpm.statistics().granted == 500
    finally:
        c.close()


def test_async_rate_limit_on_a_cluster(cluster_url: str) -> None:
    from redis.asyncio.cluster import RedisCluster

    async def main() -> None:
        c = RedisCluster.from_url(cluster_url)
        try:
            rl = corral.redis.RateLimit(c, "a", 100)

            async def one() -> None:
                await rl.acquire()

            await asyncio.gather(*(one() for _ in range(20)))
            assert rl.statistics().acquired == 20
        finally:
            await c.aclose()

    asyncio.run(main())


def test_limits_with_a_semaphore_per_tenant_on_a_cluster(cluster_url: str) -> None:
    """A Limits of two rate limits and a Semaphore, all under a tenant's tag: one slot per
    tenant, so the joint script (and the semaphore's own) runs on that slot's node."""
    from redis.cluster import RedisCluster

    c = RedisCluster.from_url(cluster_url)
    lock = threading.Lock()
    cur, peak = [0], [0]
    try:
        for tenant in ("t1", "tenant-2", "x"):
            R = corral.threads.redis.RateLimit
            rpm = R(c, "rpm", 200, burst=5, tag=tenant)
            tpm = R(c, "tpm", 50_000, burst=5_000, tag=tenant)
            sem = corral.threads.redis.Semaphore(c, "calls", 2, lease=2.0, tag=tenant)
            sem.server_statistics()
            c.hset(sem._k.keys[4], "t0", "0")  # (the new name's grace is over)
            account = corral.threads.redis.Limits(rpm, tpm, sem)
            peak[0] = 0

            def call(account: corral.threads.redis.Limits = account, tpm: R = tpm) -> None:
                with account.acquire({tpm: 100}, timeout=30) as grant:
                    with lock:
                        cur[0] += 1
                        peak[0] = max(peak[0], cur[0])
                    grant.adjust(tpm, 50)
                    with lock:
                        cur[0] -= 1

            threads = [threading.Thread(target=call) for _ in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            assert rpm.statistics().acquired == 8
            assert sem.statistics().acquired == 8
            assert peak[0] <= 2
            st = sem.server_statistics()
            assert (st.held, st.waiting) == (0, 0)
    finally:
        c.close()
