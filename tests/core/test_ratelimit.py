"""RateLimit (GCRA) conformance on a manual clock, run by every flavour and world mix.

Time only moves when a test advances its ``ManualClock``; every "not yet" below is
therefore exact, never a race with a sleep.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import threading

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
from .rate_helpers import most_in_window, step, view, waiting


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


async def test_a_late_return_moves_the_schedule_so_the_next_stays_one_interval_away() -> None:
    # The price of the promise at the caller (burst 1): a wake-up's lateness is not made
    # up. Charged at its grant, the return at 0.13 s would be followed by one due at 0.2 s,
    # 70 ms later at the caller.
    clock = ManualClock()
    rl = corral.RateLimit(10, clock=clock)  # T = 100 ms
    assert rl.try_acquire()
    stamps: list[float] = []

    async def user() -> None:
        for _ in range(2):
            await rl.acquire()
            stamps.append(clock.now())

    task = asyncio.create_task(user())
    await waiting(rl, 1)
    clock.advance(0.1)  # granted at 0.1 s ...
    assert rl.statistics().available == 0  # ... and pending: nothing else goes meanwhile
    clock.advance(0.03)  # ... but the task runs only at 0.13 s
    await until(lambda: len(stamps) == 1)
    assert stamps == [pytest.approx(0.13)]
    await step(clock, 0.07)  # 0.2 s: due at the grant's schedule, not at the return's
    assert len(stamps) == 1
    await step(clock, 0.03)  # 0.23 s: one interval after the return
    await until(task.done)
    await task
    assert stamps == [pytest.approx(0.13), pytest.approx(0.23)]


async def test_with_a_burst_of_two_late_returns_keep_the_sustained_rate() -> None:
    # The other side of the price: with burst >= 2 the next grant is due while the
    # previous one lands, so the same late wake-ups do not slow the schedule down.
    clock = ManualClock()
    rl = corral.RateLimit(100, burst=2, clock=clock)  # T = 10 ms
    assert rl.try_acquire(2)
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
    assert got == 10  # 10 grants in 0.101 s: the 2 at 0 were paid by 0.02 s


async def test_after_a_long_stall_the_backlog_is_not_granted_in_a_burst() -> None:
    clock = ManualClock()
    rl = corral.RateLimit(100, clock=clock)  # T = 10 ms, burst 1
    assert rl.try_acquire()
    tasks = [asyncio.create_task(_acq(rl)) for _ in range(5)]
    await waiting(rl, 5)
    await step(clock, 1.0)  # a stall of 1 s: 100 intervals
    # One is granted; the next is charged from its return, not from the stall's start.
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


# -- the promise at the caller: instants at which acquire returns -------------------------------
#
# The limiter grants on time, but the caller runs only when its task or thread is woken, and
# wake-ups are late by a varying amount (a busy loop, a descheduled thread). A late wake-up
# followed by an on-time one used to put two returns closer than one interval T, and a
# window of ``per`` seconds then held ``rate + 1`` returns (seen at the caller: 11 per
# second at rate 10). Each grant is now charged from the instant its acquire returns.


#: How the test's loop moves the clock: (steps to pick from, chance that the woken tasks
#: run after a step). "jitter": wake-ups 0 to a few 10 ms late, the measured symptom (a
#: late one then an on-time one: 11 in a second); "stalls": up to 1.5 intervals late.
DRIVERS = {"jitter": ([0.01], 0.5), "stalls": ([0.01, 0.03, 0.05, 0.1, 0.15], 0.4)}


@pytest.mark.parametrize("driver", sorted(DRIVERS))
@pytest.mark.parametrize("seed", range(4))
async def test_late_wake_ups_never_crowd_a_window_at_the_caller(seed: int, driver: str) -> None:
    """Tasks stamp the clock right after ``await rl.acquire()``; the test's loop lets them
    run only now and then, so the clock moves on between a grant and its task's wake-up
    (a late wake, simulated exactly). No window of ``per`` seconds may hold more than
    ``rate`` returns."""
    steps, runs = DRIVERS[driver]
    rng = random.Random(seed)
    print(f"seed={seed}")
    clock = ManualClock()
    rl = corral.RateLimit(10, per=1.0, clock=clock)  # T = 0.1 s
    stamps: list[float] = []

    async def user() -> None:
        for _ in range(10):
            await rl.acquire()
            stamps.append(clock.now())  # the instant acquire returned to this task

    tasks = [asyncio.create_task(user()) for _ in range(3)]
    while not all(t.done() for t in tasks):
        clock.advance(rng.choice(steps))
        if rng.random() < runs:  # else: whoever was woken runs late, after the next step
            for _ in range(3):
                await asyncio.sleep(0)
    await asyncio.gather(*tasks)
    assert len(stamps) == 30
    assert most_in_window(stamps, 1.0) <= 10, sorted(stamps)
    gaps = [b - a for a, b in itertools.pairwise(sorted(stamps))]
    assert min(gaps) >= 0.1 - 1e-9  # burst 1: every return at least one interval apart


@pytest.mark.parametrize("seed", range(4))
async def test_returns_keep_the_gcra_bound_with_bursts_costs_and_late_wake_ups(seed: int) -> None:
    """Weighted costs and bursts, late wake-ups: in every window of w seconds the costs
    *returned* sum to at most burst + w / T."""
    rng = random.Random(seed)
    print(f"seed={seed}")
    clock = ManualClock()
    rate, burst = 20, rng.choice([1, 2, 3, 8])
    rl = corral.RateLimit(rate, per=1.0, burst=burst, clock=clock)
    returns: list[tuple[float, float]] = []

    async def user(cost: float) -> None:
        await rl.acquire(cost)
        returns.append((clock.now(), cost))

    tasks = []
    for _ in range(150):
        if rng.random() < 0.5:
            cost = rng.choice([1, 1, 1, burst, max(1, burst // 2), 0.5])
            tasks.append(asyncio.create_task(user(cost)))
        clock.advance(rng.choice([0.0, 0.01, 0.03, 0.05, 0.2]))
        if rng.random() < 0.5:
            await asyncio.sleep(0)
    while not all(t.done() for t in tasks):
        await step(clock, 0.05)
    await asyncio.gather(*tasks)
    T = 1.0 / rate
    times = sorted(returns)
    for i, (t0, _) in enumerate(times):
        for w in (0.0, 0.1, 0.25, 1.0):
            inside = sum(c for t, c in times[i:] if t <= t0 + w + 1e-9)
            assert inside <= burst + w / T + 1e-6, (t0, w, inside)
    assert rl.statistics().granted == sum(c for _, c in returns)


@pytest.mark.parametrize("seed", range(3))
def test_threads_and_tasks_returns_never_crowd_a_window(seed: int) -> None:
    """Real threads and a task on another loop share one limit while a driver moves the
    clock as fast as it can: wake-ups land at whatever manual time the scheduler lets
    them. Whatever the interleaving, returns stay within rate per window."""
    rng = random.Random(seed)
    print(f"seed={seed}")
    clock = ManualClock()
    rl = corral.threads.RateLimit(10, per=1.0, clock=clock)
    stamps: list[float] = []
    lock = threading.Lock()
    done = threading.Event()

    def thread_user() -> None:
        for _ in range(6):
            rl.acquire()
            with lock:
                stamps.append(clock.now())

    async def task_user() -> None:
        arl = rl.as_async()
        for _ in range(6):
            await arl.acquire()
            with lock:
                stamps.append(clock.now())

    def loop_user() -> None:
        asyncio.run(task_user())

    workers = [threading.Thread(target=thread_user) for _ in range(2)]
    workers.append(threading.Thread(target=loop_user))
    for t in workers:
        t.start()
    try:
        while any(t.is_alive() for t in workers):
            clock.advance(rng.choice([0.001, 0.02, 0.05]))
            for t in workers:
                t.join(0.0005 * rng.random())
    finally:
        done.set()
        for t in workers:
            t.join(10)
    assert len(stamps) == 18
    assert most_in_window(stamps, 1.0) <= 10, sorted(stamps)


# -- the uncontended acquire inlined in corral.RateLimit, against its original --------------


@pytest.mark.parametrize("seed", range(5))
def test_the_inlined_uncontended_acquire_agrees_with_try_acquire(seed: int) -> None:
    """``corral.RateLimit.acquire(c)``'s fast path is marked ``# inline of
    corral._core.ratelimit.RateLimitState._try_take_locked``. Two limits on one clock take the
    same generated steps, one through the inline (falling through to the state when the
    inline declines, as the slow path does) and one through the original: every outcome
    and the GCRA state must agree."""
    from corral._aio.ratelimit import _TAKEN

    rng = random.Random(seed)
    print(f"seed={seed}")
    clock = ManualClock()
    burst = rng.choice([1, 2, 5])
    copy = corral.RateLimit(10, burst=burst, clock=clock)
    orig = corral.RateLimit(10, burst=burst, clock=clock)
    cs, os_ = copy._st, orig._st
    for _ in range(400):
        op = rng.random()
        if op < 0.3:
            clock.advance(rng.choice([0.0, 0.01, 0.05, 0.1, 0.3]))
        elif op < 0.45:  # a grant handed to a parked waiter that has not returned yet
            c = rng.choice([1, 0.5])
            for st in (cs, os_):
                with st.lock:
                    st._hand_over_locked(c)
        elif op < 0.6 and cs.pending:  # ... it returns now
            c = min(cs.pending, rng.choice([1, 0.5]))
            cs.land(c)
            os_.land(c)
        else:
            c = rng.choice([1, 1, 0.5, burst])
            r = copy.acquire(c)  # the inline takes the cost at the call, or declines
            took = r is _TAKEN
            if not took:
                r._used = True  # the slow path, not started (no "never awaited" warning)
                took = cs.try_acquire(c)  # what the slow path's first step decides
            assert took == os_.try_acquire(c)
        assert (cs.tat, cs.pending, cs.granted) == (os_.tat, os_.pending, os_.granted)


@pytest.mark.parametrize("seed", range(6))
def test_the_core_keeps_the_bound_at_returns_whatever_the_wake_up_order(seed: int) -> None:
    """The rule itself, with no loop and no thread: waiters are granted by the clock, then
    *return* (``land``) in a random order after random delays, or give their grant up
    (``abandon``) now and then; new acquires arrive meanwhile. The instants of the
    returns and of the immediate takes must keep burst + w / T in every window, and
    with burst 1 be at least T apart: a thread woken late and one woken on time, in
    any interleaving a scheduler could produce."""
    from corral._core.ratelimit import RateLimitState
    from corral._core.waiter import Waiter

    class Parked(Waiter):
        __slots__ = ()

        def _wake(self) -> bool:
            return True

    rng = random.Random(seed)
    print(f"seed={seed}")
    clock = ManualClock()
    rate, burst = 10, rng.choice([1, 2, 4])
    st = RateLimitState(rate, 1.0, burst, clock)
    returns: list[tuple[float, float]] = []
    granted: list[Waiter] = []  # woken, not returned yet
    parked: list[Waiter] = []
    for _ in range(400):
        op = rng.random()
        if op < 0.3:
            c = rng.choice([1, 1, burst, 0.5])
            w = st.acquire(c, Parked)
            if w is None:
                returns.append((clock.now(), c))
            else:
                parked.append(w)
        elif op < 0.6:
            clock.advance(rng.choice([0.0, 0.01, 0.05, 0.1, 0.25]))
        elif granted and op < 0.95:
            w = granted.pop(rng.randrange(len(granted)))
            if rng.random() < 0.1:
                st.abandon(w.item)
            else:
                st.land(w.item)
                returns.append((clock.now(), w.item))
        for w in [w for w in parked if w.done]:
            parked.remove(w)
            granted.append(w)
    while parked or granted:  # drain: everyone returns, on time
        clock.advance(0.1)
        for w in [w for w in parked if w.done]:
            parked.remove(w)
            granted.append(w)
        while granted:
            w = granted.pop()
            st.land(w.item)
            returns.append((clock.now(), w.item))
    assert clock.pending == 0
    T = 1.0 / rate
    times = sorted(returns)
    for i, (t0, _) in enumerate(times):
        for width in (0.0, 0.1, 0.35, 1.0):
            inside = sum(c for t, c in times[i:] if t <= t0 + width + 1e-9)
            assert inside <= burst + width / T + 1e-6, (t0, width, inside)
    if burst == 1:
        unit = [t for t, c in times if c == 1]
        assert all(b - a >= T - 1e-9 for a, b in itertools.pairwise(unit))
    assert len(returns) > 80
