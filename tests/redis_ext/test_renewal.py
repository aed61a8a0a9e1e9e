"""Leases held longer than a lease survive because they are renewed, in both flavours.

The renewals are the part of ``corral.redis`` whose machinery differs most between the
flavours (tasks and a timer, threads); ``_redis/threads.py`` is generated from ``aio.py``
with that machinery behind ``_rt_aio`` / ``_rt_threads``, so each flavour is held to it
here. Each test counts the renewal script's calls (waiting on them, not on a clock) and
holds until four have run: 1.6 s, longer than the 1.2 s lease, which would have expired
without them.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import corral.redis
import corral.threads.redis

from .conftest import wait_for

RENEWALS = 4  # every lease / 3 = 0.4 s: 1.6 s in all
LEASE = 1.2  # a renewal late by up to 0.8 s (a stalled CI machine) still lands in time


def _counting_threads(scripts: dict[str, Any], name: str) -> threading.Semaphore:
    """Wrap the blocking script ``name``: each completed call releases the returned count."""
    inner = scripts[name]
    count = threading.Semaphore(0)

    def counted(*, keys: Any, args: Any) -> Any:
        r = inner(keys=keys, args=args)
        count.release()
        return r

    scripts[name] = counted
    return count


def _counting_aio(scripts: dict[str, Any], name: str) -> asyncio.Semaphore:
    inner = scripts[name]
    count = asyncio.Semaphore(0)

    async def counted(*, keys: Any, args: Any) -> Any:
        r = await inner(keys=keys, args=args)
        count.release()
        return r

    scripts[name] = counted
    return count


def _threads_named(prefix: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(prefix)]


def test_threads_holder_keeps_its_permits_past_the_lease(client: Any) -> None:
    sem = corral.threads.redis.Semaphore(client, "kt", 3, lease=LEASE)
    renewed = _counting_threads(sem._s, "SEM_TOUCH")
    for _ in range(2):  # the renewer ends with the last holder; the next holder starts one
        with sem.acquire(2):
            for _ in range(RENEWALS):
                assert renewed.acquire(timeout=10)
            assert sem.server_statistics().held == 2
        # released without LeaseLost; the renewer thread ends once nothing is held
        wait_for(lambda: not _threads_named("corral-redis-semaphore"))
        while renewed.acquire(blocking=False):
            pass
    assert sem.statistics().lost == 0
    assert client.keys("{kt}:*") == [b"{kt}:e"]


def test_threads_leader_renews_its_lease_while_fn_runs(client: Any) -> None:
    sf = corral.threads.redis.SingleFlight(client, namespace="lt", lease=LEASE)
    renewed = _counting_threads(sf._s, "SF_RENEW")

    def slow() -> str:
        for _ in range(RENEWALS):
            assert renewed.acquire(timeout=10)
        return "done"

    assert sf.do("k", slow) == "done"  # a lapsed lease would be LeaseLost
    assert not _threads_named("corral-redis-lease-")  # stopped and joined with the flight
    s = sf.statistics()
    assert (s.led, s.takeovers) == (1, 0)


async def test_async_holder_keeps_its_permits_past_the_lease(redis_url: str) -> None:
    import redis.asyncio as ar

    async with ar.Redis.from_url(redis_url) as c:
        sem = corral.redis.Semaphore(c, "ka", 3, lease=LEASE)
        renewed = _counting_aio(sem._s, "SEM_TOUCH")
        for _ in range(2):  # the timer is cancelled with the last holder; the next re-arms it
            async with sem.acquire(2):
                for _ in range(RENEWALS):
                    await asyncio.wait_for(renewed.acquire(), 10)
                assert (await sem.server_statistics()).held == 2
            while not renewed.locked():
                await renewed.acquire()
        assert sem.statistics().lost == 0
        assert await c.keys("{ka}:*") == [b"{ka}:e"]


async def test_async_leader_renews_its_lease_while_fn_runs(redis_url: str) -> None:
    import redis.asyncio as ar

    async with ar.Redis.from_url(redis_url) as c:
        sf = corral.redis.SingleFlight(c, namespace="la", lease=LEASE)
        renewed = _counting_aio(sf._s, "SF_RENEW")

        async def slow() -> str:
            for _ in range(RENEWALS):
                await asyncio.wait_for(renewed.acquire(), 10)
            return "done"

        assert await sf.do("k", slow) == "done"  # a lapsed lease would be LeaseLost
        s = sf.statistics()
        assert (s.led, s.takeovers) == (1, 0)
