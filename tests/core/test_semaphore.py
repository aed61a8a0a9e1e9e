"""Weighted semaphore conformance, run by every flavour (acquirers alternate between sides).

Ported from golang.org/x/sync/semaphore/semaphore_test.go: TestWeighted, TestWeightedPanic,
TestWeightedTryAcquire, TestWeightedAcquire, TestWeightedDoesntBlockIfTooBig,
TestLargeAcquireDoesntStarve, TestAllocCancelDoesntStarve, TestWeightedAcquireCanceled;
plus strict FIFO, no barging, and the accounting of cancelled acquires.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

import corral
import corral.threads
from corral import Cancelled, DeadlineExceeded, SemaphoreStatistics

from .flavours import (  # noqa: F401 (fixtures)
    Flavour,
    Stage,
    World,
    flavour_fixture,
    parked,
    stage_fixture,
)

SHORT = 0.01  # a timeout value, for the tests about timeouts


async def test_concurrent_holders_never_exceed_the_size(flavour: Flavour) -> None:
    # Go's TestWeighted: workers of weight 1..n hammer a semaphore of size n.
    n = 4
    sem = flavour.semaphore(n)
    held = 0
    peak = 0

    async def worker(world: World, weight: int) -> None:
        nonlocal held, peak
        for _ in range(25):
            await world.acquire(sem, weight)
            held += weight
            peak = max(peak, held)
            assert held <= n
            await asyncio.sleep(0)  # hold it across a yield, so others run meanwhile
            held -= weight
            sem.release(weight)

    await asyncio.gather(*(worker(flavour.world(i), i + 1) for i in range(n)))
    assert sem.statistics() == SemaphoreStatistics(n, 0, 0, 0)
    assert peak <= n


def test_release_without_acquire_raises_value_error(flavour: Flavour) -> None:
    # Go's TestWeightedPanic (Go panics; corral raises).
    sem = flavour.semaphore(1)
    with pytest.raises(ValueError, match=r"\bn=1\b.*held"):
        sem.release(1)
    assert sem.statistics() == SemaphoreStatistics(1, 0, 0, 0)


def test_release_more_than_held_raises_value_error_and_changes_nothing(flavour: Flavour) -> None:
    sem = flavour.semaphore(5)
    assert sem.try_acquire(2)
    with pytest.raises(ValueError, match=r"\bn=3\b"):
        sem.release(3)
    assert sem.statistics() == SemaphoreStatistics(5, 2, 0, 0)
    sem.release(2)
    assert sem.statistics().held == 0


async def test_try_acquire(flavour: Flavour) -> None:
    # Go's TestWeightedTryAcquire.
    sem = flavour.semaphore(2)
    tries = []
    await flavour.tx.acquire(sem, 1)
    tries.append(sem.try_acquire(1))
    tries.append(sem.try_acquire(1))
    sem.release(2)
    tries.append(sem.try_acquire(1))
    await flavour.rx.acquire(sem, 1)
    tries.append(sem.try_acquire(1))
    assert tries == [True, False, True, False]
    sem.release(2)


@pytest.mark.parametrize("bound", ["timeout", "ctx"])
async def test_acquire_with_a_deadline(flavour: Flavour, bound: str) -> None:
    # Go's TestWeightedAcquire: an acquire bounded by a short deadline succeeds iff free.
    sem = flavour.semaphore(2)

    def acquire(world: World, n: int) -> Any:
        if bound == "timeout":
            return world.sem(sem).acquire(n, timeout=SHORT)
        # The ctx is made where the acquire runs, right before it, and with room to spare: a
        # deadline that passed before the call would fail it even with permits free (as it
        # should), so a stall on a loaded machine must not get there first.
        return world.sem(sem).acquire(n, ctx=corral.with_timeout(corral.background(), 0.1))

    async def try_acquire(world: World, n: int) -> bool:
        try:
            await world.start(lambda: acquire(world, n))
        except DeadlineExceeded:
            return False
        return True

    tries = []
    await flavour.tx.acquire(sem, 1)
    tries.append(await try_acquire(flavour.rx, 1))
    tries.append(await try_acquire(flavour.tx, 1))
    sem.release(2)
    tries.append(await try_acquire(flavour.rx, 1))
    await flavour.tx.acquire(sem, 1)
    tries.append(await try_acquire(flavour.rx, 1))
    assert tries == [True, False, True, False]
    assert sem.statistics() == SemaphoreStatistics(2, 2, 0, 0)
    sem.release(2)


async def test_acquire_larger_than_the_size_fails_at_once(flavour: Flavour) -> None:
    # Go's TestWeightedDoesntBlockIfTooBig (Go blocks until the ctx is done; corral refuses).
    sem = flavour.semaphore(2)
    for world in (flavour.tx, flavour.rx):
        with pytest.raises(ValueError, match=r"\bn=3\b.*size 2"):
            await world.acquire(sem, 3)
        with pytest.raises(ValueError, match=r"\bn=3\b"):
            await world.acquire(sem, 3, ctx=corral.with_cancel(corral.background()))
    with pytest.raises(ValueError, match=r"\bn=3\b"):
        sem.try_acquire(3)
    assert sem.statistics() == SemaphoreStatistics(2, 0, 0, 0)  # nothing queued, nothing held
    await flavour.rx.acquire(sem, 2)
    sem.release(2)


async def test_large_acquire_at_the_head_is_not_starved_by_small_ones(flavour: Flavour) -> None:
    sem = flavour.semaphore(2)
    assert sem.try_acquire(2)  # two holders of one permit each
    big = flavour.tx.acquire(sem, 2)
    await parked(sem, waiting=1)
    sem.release(1)  # the first holder gives its permit back...
    small = flavour.rx.acquire(sem, 1)  # ...and asks again: it queues behind the big one
    await parked(sem, waiting=2)
    assert sem.statistics() == SemaphoreStatistics(2, 1, 2, 3)
    sem.release(1)  # the second holder leaves: the head gets both permits
    assert sem.statistics() == SemaphoreStatistics(2, 2, 1, 1)
    await big
    assert not small.done()
    sem.release(2)
    await small
    sem.release(1)


async def test_large_acquire_does_not_starve_under_churn(flavour: Flavour) -> None:
    # Go's TestLargeAcquireDoesntStarve: n holders keep releasing and re-acquiring one permit;
    # an acquire of all n must still get through (head-of-line blocking stops the churn).
    n = 2
    sem = flavour.semaphore(n)
    big_granted = False
    churned_out = []

    async def churn(world: World) -> None:
        # Churn only once the big acquire is queued, also under an eager task factory
        # (which would run the whole loop inside create_task: no acquire here waits).
        await asyncio.sleep(0)
        for _ in range(500):
            if big_granted:
                break
            sem.release(1)
            await world.acquire(sem, 1)
        churned_out.append(not big_granted)
        sem.release(1)

    assert sem.try_acquire(n)
    churners = [asyncio.create_task(churn(flavour.world(i))) for i in range(n)]
    await flavour.world(1).acquire(sem, n)
    big_granted = True
    sem.release(n)
    await asyncio.gather(*churners)
    assert churned_out == [False] * n  # every churner stopped because the big one got through
    assert sem.statistics() == SemaphoreStatistics(n, 0, 0, 0)


async def test_cancelled_head_waiter_lets_the_ones_behind_proceed(flavour: Flavour) -> None:
    # Go's TestAllocCancelDoesntStarve: a large waiter at the head blocks smaller ones behind
    # it (9 permits free, no barging); when it is cancelled they must be granted.
    sem = flavour.semaphore(10)
    await flavour.tx.acquire(sem, 1)
    ctx = corral.with_cancel(corral.background())
    large = flavour.tx.acquire(sem, 10, ctx=ctx)
    await parked(sem, waiting=1)
    small = flavour.rx.acquire(sem, 1)
    await parked(sem, waiting=2)
    assert not small.done()
    ctx.cancel()
    with pytest.raises(Cancelled):
        await large
    await small
    assert sem.statistics() == SemaphoreStatistics(10, 2, 0, 0)
    sem.release(2)


async def test_timed_out_head_waiter_lets_the_ones_behind_proceed(flavour: Flavour) -> None:
    # (Whether the small ones queue before the timeout fires is up to the clock; either way
    # they must all be granted.)
    sem = flavour.semaphore(10)
    assert sem.try_acquire(1)
    large = flavour.tx.acquire(sem, 10, timeout=0.1)
    await parked(sem, waiting=1)
    small = [flavour.world(i).acquire(sem, 1) for i in range(3)]
    with pytest.raises(DeadlineExceeded):
        await large
    for op in small:
        await op
    assert sem.statistics() == SemaphoreStatistics(10, 4, 0, 0)
    sem.release(4)


async def test_acquire_whose_ctx_is_cancelled_before_permits_free_up_fails(
    flavour: Flavour,
) -> None:
    # Go's TestWeightedAcquireCanceled (go.dev/issue/63615).
    sem = flavour.semaphore(2)
    ctx = corral.with_cancel(corral.background())
    await flavour.tx.acquire(sem, 1)
    op = flavour.rx.acquire(sem, 2, ctx=ctx)
    await parked(sem, waiting=1)
    ctx.cancel()
    sem.release(1)
    with pytest.raises(Cancelled) as caught:
        await op
    assert type(caught.value) is Cancelled
    assert sem.try_acquire(2)  # both permits are back
    sem.release(2)
    # A done ctx fails even when the acquire would not need to wait.
    with pytest.raises(Cancelled):
        await flavour.rx.acquire(sem, 1, ctx=ctx)
    assert sem.statistics() == SemaphoreStatistics(2, 0, 0, 0)


async def test_done_ctx_fails_acquire_even_when_permits_are_free(flavour: Flavour) -> None:
    sem = flavour.semaphore(3)
    cancelled = corral.with_cancel(corral.background())
    cancelled.cancel()
    expired = corral.with_deadline(corral.background(), time.monotonic() - 1)
    for world in (flavour.tx, flavour.rx):
        with pytest.raises(Cancelled) as caught:
            await world.acquire(sem, 1, ctx=cancelled)
        assert type(caught.value) is Cancelled
        with pytest.raises(DeadlineExceeded):
            await world.acquire(sem, 1, ctx=expired)
    assert sem.statistics() == SemaphoreStatistics(3, 0, 0, 0)


async def test_permits_are_granted_in_strict_fifo_order(flavour: Flavour) -> None:
    sem = flavour.semaphore(3)
    assert sem.try_acquire(3)
    weights = [1, 2, 1, 3, 1]
    ops = []
    for i, w in enumerate(weights):
        ops.append(flavour.world(i).acquire(sem, w))
        await parked(sem, waiting=i + 1)

    sem.release(1)  # 1 free: the head (1) fits
    assert sem.statistics() == SemaphoreStatistics(3, 3, 4, 7)
    await ops[0]
    sem.release(1)  # 1 free: the head (2) does not fit, and the 1 behind it must not overtake
    assert sem.statistics() == SemaphoreStatistics(3, 2, 4, 7)
    sem.release(1)  # 2 free: the head (2) is granted; 0 left for the next (1)
    assert sem.statistics() == SemaphoreStatistics(3, 3, 3, 5)
    await ops[1]
    sem.release(1)  # the first waiter leaves: 1 free, granted to the (1) now at the head
    assert sem.statistics() == SemaphoreStatistics(3, 3, 2, 4)
    await ops[2]
    sem.release(3)  # everyone but the (3) at the head leaves: it gets all three
    assert sem.statistics() == SemaphoreStatistics(3, 3, 1, 1)
    await ops[3]
    assert not ops[4].done()
    sem.release(3)
    await ops[4]
    sem.release(1)
    assert sem.statistics() == SemaphoreStatistics(3, 0, 0, 0)


async def test_try_acquire_fails_while_others_wait_even_if_permits_are_free(
    flavour: Flavour,
) -> None:
    sem = flavour.semaphore(3)
    assert sem.try_acquire(2)
    big = flavour.tx.acquire(sem, 2)
    await parked(sem, waiting=1)
    assert not sem.try_acquire(1)  # one permit is free, but someone waits: no barging
    small = flavour.rx.acquire(sem, 1)  # a new acquire queues too
    await parked(sem, waiting=2)
    assert sem.statistics() == SemaphoreStatistics(3, 2, 2, 3)
    sem.release(2)
    await big
    await small
    assert sem.statistics() == SemaphoreStatistics(3, 3, 0, 0)
    sem.release(3)


@pytest.mark.parametrize("how", ["timeout=", "ctx="])
async def test_cancelled_or_timed_out_acquire_holds_nothing(flavour: Flavour, how: str) -> None:
    sem = flavour.semaphore(4)
    assert sem.try_acquire(3)
    before = sem.statistics()
    for world in (flavour.tx, flavour.rx):
        if how == "timeout=":
            with pytest.raises(DeadlineExceeded):
                await world.acquire(sem, 2, timeout=SHORT)
        else:
            ctx = corral.with_cancel(corral.background())
            op = world.acquire(sem, 2, ctx=ctx)
            await parked(sem, waiting=1)
            ctx.cancel()
            with pytest.raises(Cancelled):
                await op
        assert sem.statistics() == before
    sem.release(3)
    assert sem.try_acquire(4)
    sem.release(4)


async def test_async_with_acquire_releases_on_exit() -> None:
    sem = corral.Semaphore(3)
    async with sem.acquire(2):
        assert sem.statistics().held == 2
    assert sem.statistics().held == 0
    with pytest.raises(KeyError):
        async with sem.acquire(3):
            raise KeyError("boom")
    assert sem.statistics().held == 0


def test_with_acquire_releases_on_exit() -> None:
    sem = corral.threads.Semaphore(3)
    with sem.acquire(2):
        assert sem.statistics().held == 2
    assert sem.statistics().held == 0
    with pytest.raises(KeyError), sem.acquire(3):
        raise KeyError("boom")
    assert sem.statistics().held == 0


def test_semaphore_views_share_one_state() -> None:
    sem = corral.Semaphore(2)
    tsem = sem.as_threads()
    assert isinstance(tsem, corral.threads.Semaphore)
    assert tsem.as_async() is sem
    assert tsem.try_acquire(2)
    assert sem.statistics() == SemaphoreStatistics(2, 2, 0, 0)
    sem.release(2)
    assert tsem.statistics().held == 0
    assert sem.size == tsem.size == 2
