"""RateLimit (GCRA) conformance on a manual clock, run by every flavour and world mix.

Time only moves when a test advances its ``ManualClock``; every "not yet" below is
therefore exact, never a race with a sleep.
"""

from __future__ import annotations

import asyncio
import random

import pytest

import corral
import corral.threads
from corral import Cancelled, DeadlineExceeded, RateLimitStatistics
from corral.testing import ManualClock

from .flavours import (  # noqa: F401 (fixtures)
    Flavour,
    Stage,
    World,
    flavour_fixture,
    stage_fixture,
    until,
    world_fixture,
)
from .rate_helpers import step, view, waiting


def _rl(world: World, rate: float, per: float = 1.0, burst: float | None = None) -> tuple:
    clock = ManualClock()
    return world.ns.RateLimit(rate, per, burst, clock=clock), clock


async def test_burst_at_once_then_one_cost_per_interval_in_fifo_order(flavour: Flavour) -> None:
    rl, clock = _rl(flavour.tx, 10, burst=2)  # T = 0.1 s
    assert rl.try_acquire()
    assert rl.try_acquire()
    assert not rl.try_acquire()
    ops = []
    for i in range(3):
        w = flavour.world(i)
        ops.append(w.start(lambda w=w: view(w, rl).acquire()))
        await waiting(rl, i + 1)  # queue order = i
    await step(clock, 0.05)
    assert not any(op.done() for op in ops)  # half an interval: nothing due
    for i in range(3):
        await step(clock, 0.05 if i == 0 else 0.1)
        await ops[i]
        assert [op.done() for op in ops] == [True] * (i + 1) + [False] * (2 - i)
    st = rl.statistics()
    assert (st.waiting, st.granted) == (0, 5)


async def test_large_cost_at_the_head_is_not_overtaken_by_small_ones(flavour: Flavour) -> None:
    # Go's TestLargeAcquireDoesntStarve, for time instead of releases.
    rl, clock = _rl(flavour.tx, 1, burst=5)  # T = 1 s
    assert rl.try_acquire(5)
    big = flavour.tx.start(lambda: view(flavour.tx, rl).acquire(5))
    await waiting(rl, 1)
    small = flavour.rx.start(lambda: view(flavour.rx, rl).acquire(1))
    await waiting(rl, 2)
    for _ in range(4):  # room for a 1 arrives every second; the head needs 5
        await step(clock, 1.0)
        assert not big.done()
        assert not small.done()
        assert not rl.try_acquire(1)  # no barging either
    await step(clock, 1.0)
    await big
    assert not small.done()  # the big one took the whole burst
    await step(clock, 1.0)
    await small


async def test_try_acquire_does_not_jump_the_queue(flavour: Flavour) -> None:
    rl, clock = _rl(flavour.tx, 10, burst=3)
    assert rl.try_acquire(3)
    op = flavour.rx.start(lambda: view(flavour.rx, rl).acquire(2))
    await waiting(rl, 1)
    await step(clock, 0.1)  # 1 unit back: the waiter needs 2, a try of 1 would fit
    assert not rl.try_acquire(1)
    await step(clock, 0.1)
    await op
    assert rl.statistics().granted == 5


@pytest.mark.parametrize("cost", [4, 3.5, 1e9])
def test_cost_above_burst_is_a_value_error_at_once(cost: float) -> None:
    for ns in (corral, corral.threads):
        rl = ns.RateLimit(100, burst=3, clock=ManualClock())
        with pytest.raises(ValueError, match=r"cost=.*larger than the burst 3"):
            rl.acquire(cost)
        with pytest.raises(ValueError, match=r"burst"):
            rl.try_acquire(cost)
        assert rl.statistics() == RateLimitStatistics(100, 1.0, 3, 3, 0, 0, 0)


async def test_a_timed_out_acquire_costs_nothing_and_passes_the_queue_on(world: World) -> None:
    rl, clock = _rl(world, 10)
    assert rl.try_acquire()
    with pytest.raises(DeadlineExceeded):
        await world.start(lambda: view(world, rl).acquire(timeout=0.01))  # clock never moves
    behind = world.start(lambda: view(world, rl).acquire())
    await waiting(rl, 1)
    await step(clock, 0.1)  # exactly one interval: the timed-out one took nothing
    await behind
    assert rl.statistics().granted == 2


async def test_a_cancelled_context_costs_nothing_and_the_next_goes_on_time(
    flavour: Flavour,
) -> None:
    rl, clock = _rl(flavour.tx, 10)
    assert rl.try_acquire()
    ctx = corral.with_cancel(corral.background())
    target = flavour.tx.start(lambda: view(flavour.tx, rl).acquire(ctx=ctx))
    await waiting(rl, 1)
    behind = flavour.rx.start(lambda: view(flavour.rx, rl).acquire())
    await waiting(rl, 2)
    ctx.cancel()
    with pytest.raises(Cancelled):
        await target
    await waiting(rl, 1)
    await step(clock, 0.1)
    await behind
    assert rl.statistics().granted == 2


async def test_a_cancelled_task_costs_nothing() -> None:
    clock = ManualClock()
    rl = corral.RateLimit(10, clock=clock)
    assert rl.try_acquire()
    task = asyncio.create_task(_acq(rl))
    await waiting(rl, 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert rl.statistics().waiting == 0
    await step(clock, 0.1)
    assert rl.try_acquire()  # the slot at 0.1 s was not taken by the cancelled task
    assert rl.statistics().granted == 2


async def _acq(rl: corral.RateLimit, cost: float = 1) -> None:
    await rl.acquire(cost)


async def test_a_task_cancelled_after_its_grant_gives_the_cost_back() -> None:
    # The grant happens inside clock.advance (the clock's call-back), before the task runs;
    # cancelling it then must undo the grant (Go: "acquired after we were canceled").
    clock = ManualClock()
    rl = corral.RateLimit(10, clock=clock)
    assert rl.try_acquire()
    task = asyncio.create_task(_acq(rl))
    await waiting(rl, 1)
    clock.advance(0.1)  # granted now, but the task has not run yet
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    st = rl.statistics()
    assert (st.granted, st.available) == (1, 1)  # as if it never happened


async def test_a_done_context_fails_even_when_cost_is_available(world: World) -> None:
    rl, _ = _rl(world, 10)
    ctx = corral.with_cancel(corral.background())
    ctx.cancel()
    with pytest.raises(Cancelled):
        await world.start(lambda: view(world, rl).acquire(ctx=ctx))
    assert rl.statistics().granted == 0


async def test_async_with_and_with_take_the_cost_and_give_nothing_back(world: World) -> None:
    rl, _ = _rl(world, 10, burst=4)
    if world.is_loop:

        async def body() -> float:
            async with view(world, rl).acquire(3):
                pass
            return view(world, rl).statistics().available

    else:

        def body() -> float:  # type: ignore[misc]
            with view(world, rl).acquire(3):
                pass
            return view(world, rl).statistics().available

    assert await world.start(body) == 1


def test_both_views_share_one_state() -> None:
    clock = ManualClock()
    a = corral.RateLimit(5, per=2.0, burst=2, clock=clock)
    t = a.as_threads()
    assert isinstance(t, corral.threads.RateLimit)
    assert t.as_async() is a
    assert (t.rate, t.per, t.burst) == (5, 2.0, 2)
    assert t.try_acquire(2)
    assert not a.try_acquire(1)
    clock.advance(0.4)  # T = 0.4 s
    assert a.try_acquire(1)
    assert a.statistics() == t.statistics()


def test_statistics_and_repr() -> None:
    clock = ManualClock()
    rl = corral.threads.RateLimit(4, burst=2, clock=clock)  # T = 0.25
    assert rl.try_acquire(2)
    clock.advance(0.125)
    st = rl.statistics()
    assert (st.available, st.granted, st.waiting) == (0.5, 2, 0)
    assert "rate=4" in repr(rl)
    assert "burst=2" in repr(rl)


@pytest.mark.parametrize("seed", range(6))
async def test_no_window_ever_holds_more_than_the_gcra_bound(seed: int) -> None:
    """Random costs and arrivals, time moved in random steps: in every window of w seconds
    the costs granted (at their grant instants) sum to at most burst + w / T; with burst=1
    and unit costs that is ``rate`` per ``per``."""
    rng = random.Random(seed)
    print(f"seed={seed}")
    clock = ManualClock()
    rate, burst = 20, rng.choice([1, 3, 8])
    rl = corral.RateLimit(rate, per=1.0, burst=burst, clock=clock)
    grants: list[tuple[float, float]] = []

    async def user(cost: float) -> None:
        await rl.acquire(cost)
        grants.append((clock.now(), cost))

    tasks = []
    for _ in range(120):
        if rng.random() < 0.6:
            cost = rng.choice([1, 1, 1, burst, max(1, burst // 2)])
            tasks.append(asyncio.create_task(user(cost)))
            await asyncio.sleep(0)
        await step(clock, rng.choice([0.0, 0.01, 0.03, 0.05, 0.2]))
    while not all(t.done() for t in tasks):
        await step(clock, 0.05)
    await asyncio.gather(*tasks)
    T = 1.0 / rate
    times = sorted(grants)
    for i, (t0, _) in enumerate(times):
        for w in (0.0, 0.25, 1.0):
            inside = sum(c for t, c in times[i:] if t <= t0 + w + 1e-9)
            assert inside <= burst + w / T + 1e-6, (t0, w, inside)
    total = sum(c for _, c in grants)
    assert rl.statistics().granted == total


async def test_unit_costs_with_default_burst_never_exceed_rate_per_window() -> None:
    clock = ManualClock()
    rl = corral.RateLimit(50, per=1.0, clock=clock)
    times: list[float] = []

    async def user() -> None:
        for _ in range(40):
            await rl.acquire()
            times.append(clock.now())

    tasks = [asyncio.create_task(user()) for _ in range(4)]
    while not all(t.done() for t in tasks):
        await step(clock, 0.007)  # not a multiple of T: grants come late, never early
    await asyncio.gather(*tasks)
    times.sort()
    assert len(times) == 160
    for i in range(len(times) - 50):
        assert times[i + 50] - times[i] >= 1.0 - 1e-9  # 51 grants never fit in 1 s


async def test_a_late_wake_up_is_charged_at_its_due_time_so_the_rate_holds() -> None:
    # The timer thread's latency must not slow the schedule down (CATCH_UP).
    clock = ManualClock()
    rl = corral.RateLimit(100, clock=clock)  # T = 10 ms
    assert rl.try_acquire()
    got = 0

    async def user() -> None:
        nonlocal got
        for _ in range(10):
            await rl.acquire()
            got += 1

    task = asyncio.create_task(user())
    await waiting(rl, 1)
    for _ in range(10):
        await step(clock, 0.0101)  # each wake-up 0.1 ms late
    await until(task.done)
    await task
    # Charged late each time, the schedule would be 10 x 0.1 ms behind (the next due at
    # 0.111 s, nothing available at 0.101 s); charged at the due time it is not shifted.
    assert got == 10
    assert rl.statistics().available == pytest.approx(0.1)
    clock.advance(0.11 - clock.now())
    assert rl.try_acquire()


async def test_after_a_long_stall_the_backlog_is_not_granted_in_a_burst() -> None:
    clock = ManualClock()
    rl = corral.RateLimit(100, clock=clock)  # T = 10 ms, burst 1
    assert rl.try_acquire()
    tasks = [asyncio.create_task(_acq(rl)) for _ in range(5)]
    await waiting(rl, 5)
    await step(clock, 1.0)  # a stall of 1 s: 100 intervals
    # Only the waiters due within CATCH_UP (5 ms) of now are charged in the past.
    done = sum(t.done() for t in tasks)
    assert done == 1, done
    for _ in range(4):
        await step(clock, 0.01)
    await asyncio.gather(*tasks)


async def test_the_default_clock_grants_with_real_time(world: World) -> None:
    # No assertion on timing: only that waiting on the real timer thread completes.
    rl = world.ns.RateLimit(1000, burst=1)
    for _ in range(3):
        await world.start(lambda: view(world, rl).acquire())
    assert rl.statistics().granted == 3
