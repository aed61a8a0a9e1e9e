"""corral.redis.Semaphore and corral.threads.redis.Semaphore against a real redis-server.

Two Semaphore objects on one name stand for two processes (each renews only its own
holders); tests/redis_ext/test_faults.py uses real processes.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

import corral
import corral.redis
import corral.threads.redis
from corral import Cancelled, DeadlineExceeded

from .conftest import all_nodes, connect_async, wait_for


def test_threads_acquire_release_and_statistics(client: Any) -> None:
    sem = corral.threads.redis.Semaphore(client, "s", 8, lease=2)
    with sem.acquire(3) as p:
        assert p.n == 3
        assert sem.statistics().held == 3
        st = sem.server_statistics()
        assert (st.size, st.held, st.waiting) == (8, 3, 0)
        with sem.acquire(5):
            assert sem.server_statistics().held == 8
    assert sem.server_statistics().held == 0
    # Nothing held or queued: only the epoch.
    assert client.keys("{s}:*", **all_nodes(client)) == [b"{s}:e"]
    s = sem.statistics()
    assert (s.held, s.acquired, s.lost) == (0, 2, 0)
    p = sem.acquire(2)
    p.release()  # permits are given back through their Permit (no sem.release(n))
    with pytest.raises(ValueError, match="already released"):
        p.release()
    assert not hasattr(sem, "release")


def test_fifo_head_of_line_across_processes(client: Any) -> None:
    a = corral.threads.redis.Semaphore(client, "f", 8, lease=2)
    b = corral.threads.redis.Semaphore(client, "f", 8, lease=2)
    c = corral.threads.redis.Semaphore(client, "f", 8, lease=2)
    order: list[str] = []
    first = a.acquire(5)
    big_in, big_out = threading.Event(), threading.Event()

    def big() -> None:
        with b.acquire(8):
            order.append("big")
            big_in.set()
            big_out.wait(10)

    def small() -> None:
        with c.acquire(1):
            order.append("small")

    tb = threading.Thread(target=big)
    tb.start()
    wait_for(lambda: a.server_statistics().waiting == 1)
    ts = threading.Thread(target=small)
    ts.start()
    wait_for(lambda: a.server_statistics().waiting == 2)
    # 3 permits are free, but the 8 at the head holds the 1 behind it back.
    assert order == []
    first.release()
    assert big_in.wait(10)
    assert order == ["big"]
    assert a.server_statistics().waiting == 1
    big_out.set()
    tb.join(10)
    ts.join(10)
    assert order == ["big", "small"]
    assert a.server_statistics().held == 0


def test_timed_out_and_cancelled_waiters_leave_no_trace(client: Any) -> None:
    a = corral.threads.redis.Semaphore(client, "t", 2, lease=2)
    b = corral.threads.redis.Semaphore(client, "t", 2, lease=2)
    with a.acquire(2):
        with pytest.raises(DeadlineExceeded):
            b.acquire(1, timeout=0.05)
        ctx = corral.with_cancel(corral.background())
        errors: list[BaseException] = []

        def wait() -> None:
            try:
                b.acquire(2, ctx=ctx)
            except Cancelled as exc:
                errors.append(exc)

        t = threading.Thread(target=wait)
        t.start()
        wait_for(lambda: a.server_statistics().waiting == 1)
        ctx.cancel()
        t.join(10)
        assert [type(e) for e in errors] == [Cancelled]
        st = a.server_statistics()
        assert (st.held, st.waiting, st.waiting_weight) == (2, 0, 0)
        assert b.statistics().waiting == 0
    assert client.keys("{t}:*", **all_nodes(client)) == [b"{t}:e"]


def test_dead_holder_permits_come_back_after_its_lease(client: Any) -> None:
    dead = corral.threads.redis.Semaphore(client, "d", 4, lease=0.3)
    live = corral.threads.redis.Semaphore(client, "d", 4, lease=0.3)
    p = dead.acquire(3)
    # The holder's renewals stop reaching Redis, as if its process had died.
    dead._s["SEM_TOUCH"] = lambda keys, args: [0, "0", *[1, "1"] * (len(args) - 1)]
    with live.acquire(4, timeout=10):  # granted once the dead lease runs out
        assert live.server_statistics().held == 4
    with pytest.raises(corral.redis.LeaseLost, match="3 permit"):
        p.release()
    assert dead.statistics().lost == 1


def test_bad_input(client: Any) -> None:
    with pytest.raises(ValueError, match="size"):
        corral.threads.redis.Semaphore(client, "b", 0)
    with pytest.raises(TypeError, match="size"):
        corral.threads.redis.Semaphore(client, "b", 2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="name"):
        corral.threads.redis.Semaphore(client, "", 2)
    with pytest.raises(ValueError, match="lease"):
        corral.threads.redis.Semaphore(client, "b", 2, lease=0)
    # A short lease: a name's first grant waits one lease (its epoch's grace), 10 s by default.
    sem = corral.threads.redis.Semaphore(client, "b", 4, lease=0.5)
    with pytest.raises(ValueError, match="n=5"):
        sem.acquire(5)
    with pytest.raises(TypeError, match="timeout"):
        sem.acquire(1, timeout="1")  # type: ignore[arg-type]
    other = corral.threads.redis.Semaphore(client, "b", 6, lease=0.5)
    with sem.acquire(1):
        with pytest.raises(corral.redis.SizeConflict, match=r"size=6.*size=4") as info:
            other.acquire(1)
        assert isinstance(info.value, ValueError)
    assert sem.server_statistics().held == 0


async def test_async_semaphore(redis_url: str) -> None:

    async with connect_async(redis_url) as c1, connect_async(redis_url) as c2:
        a = corral.redis.Semaphore(c1, "as", 3, lease=2)
        b = corral.redis.Semaphore(c2, "as", 3, lease=2)
        held = 0
        peak = 0

        async def work(sem: corral.redis.Semaphore, n: int) -> None:
            nonlocal held, peak
            async with sem.acquire(n):
                held += n
                peak = max(peak, held)
                await asyncio.sleep(0.01)
                held -= n

        await asyncio.gather(*(work(s, 1 + i % 3) for i, s in enumerate([a, b] * 10)))
        assert peak <= 3
        assert (await a.server_statistics()).held == 0
        p = await a.acquire(2)
        assert a.statistics().held == 2
        await p.release()


async def _take(sem: corral.redis.Semaphore, n: int) -> corral.redis.Permit:
    return await sem.acquire(n)


async def test_async_cancelled_and_timed_out_waiters_leave_no_trace(redis_url: str) -> None:

    async with connect_async(redis_url) as c1, connect_async(redis_url) as c2:
        a = corral.redis.Semaphore(c1, "ac", 2, lease=2)
        b = corral.redis.Semaphore(c2, "ac", 2, lease=2)
        async with a.acquire(2):
            with pytest.raises(DeadlineExceeded):
                await b.acquire(1, timeout=0.05)
            waiter = asyncio.create_task(_take(b, 1))
            while (await a.server_statistics()).waiting == 0:
                await asyncio.sleep(0.005)
            waiter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiter
            ctx = corral.with_timeout(corral.background(), 0.05)
            with pytest.raises(DeadlineExceeded):
                await b.acquire(2, ctx=ctx)
            st = await a.server_statistics()
            assert (st.held, st.waiting) == (2, 0)
        assert await c1.keys("{ac}:*", **all_nodes(c1)) == [b"{ac}:e"]


async def test_async_size_conflict(redis_url: str) -> None:

    async with connect_async(redis_url) as c:
        # A short lease: a name's first grant waits one lease (its epoch's grace), 10 s by default.
        a = corral.redis.Semaphore(c, "sc", 2, lease=0.5)
        async with a.acquire(1):
            with pytest.raises(corral.redis.SizeConflict, match="size=3"):
                await corral.redis.Semaphore(c, "sc", 3, lease=0.5).acquire(1)


def test_waiter_that_lost_its_queue_entry_queues_again(client: Any) -> None:
    a = corral.threads.redis.Semaphore(client, "rq", 2, lease=0.3)
    b = corral.threads.redis.Semaphore(client, "rq", 2, lease=0.3)
    first = a.acquire(2)
    got: list[Any] = []
    t = threading.Thread(target=lambda: got.append(b.acquire(1, timeout=10)))
    t.start()
    wait_for(lambda: a.server_statistics().waiting == 1)
    client.delete("{rq}:q", "{rq}:qx")  # its entry is gone, as after a stall longer than the lease
    wait_for(lambda: a.server_statistics().waiting == 1)  # it queued again by itself
    first.release()
    t.join(10)
    assert [p.n for p in got] == [1]
    got[0].release()
    assert client.keys("{rq}:*", **all_nodes(client)) == [b"{rq}:e"]


def test_try_acquire_never_waits_and_never_passes_a_waiter(client: Any) -> None:
    a = corral.threads.redis.Semaphore(client, "try", 3, lease=2)
    b = corral.threads.redis.Semaphore(client, "try", 3, lease=2)
    c = corral.threads.redis.Semaphore(client, "try", 3, lease=2)
    # (A name's first grants on a fresh Redis wait one lease, its epoch's grace: a try
    # during it fails. acquire() waits that out.)
    held = a.acquire(2, timeout=10)
    assert c.try_acquire(2) is None  # only 1 free
    assert a.server_statistics().waiting == 0  # a failed try leaves no queue entry
    got: list[Any] = []
    t = threading.Thread(target=lambda: got.append(b.acquire(2, timeout=10)))
    t.start()
    wait_for(lambda: a.server_statistics().waiting == 1)
    assert c.try_acquire(1) is None  # 1 is free, but b waits ahead (FIFO, no barging)
    held.release()
    t.join(10)
    assert [p.n for p in got] == [2]
    late = c.try_acquire(1)  # nobody waits now, and 1 is free
    assert late is not None
    assert late.n == 1
    assert late.fence > got[0].fence  # fenced like any grant
    late.release()
    got[0].release()
    assert client.keys("{try}:*", **all_nodes(client)) == [b"{try}:e"]
