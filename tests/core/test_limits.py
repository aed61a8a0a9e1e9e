"""Limits: atomic acquisition across RateLimits and Semaphores, on a manual clock.

A joint acquire gets every grant at once or waits holding none; each limiter keeps its
FIFO promise; ``Grant.adjust`` charges or refunds after the fact; a cancelled or timed-out
joint acquire takes nothing anywhere.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

import corral
import corral.threads
from corral import Cancelled, DeadlineExceeded
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


def _limits(world: World, *lims: Any) -> Any:
    return world.ns.Limits(*(view(world, x) for x in lims))


def _acquire(world: World, lims: Any, costs: dict[Any, float] | None = None, **kw: Any) -> Any:
    """Start a joint acquire in ``world``; its Op's result is the Grant (kept, not released)."""
    lim = _limits(world, *lims)
    keyed = None if costs is None else {view(world, k): c for k, c in costs.items()}
    if world.is_loop:

        async def go() -> Any:
            return await lim.acquire(keyed, **kw)

        return world.start(go)
    return world.start(lambda: lim.acquire(keyed, **kw))


async def test_waits_holding_nothing_until_every_limiter_can_grant(flavour: Flavour) -> None:
    clock = ManualClock()
    rl = flavour.tx.ns.RateLimit(10, burst=1, clock=clock)  # T = 0.1
    sem = flavour.tx.ns.Semaphore(2)
    assert rl.try_acquire()
    op = _acquire(flavour.rx, (rl, sem), {sem: 2})
    await waiting(sem, 1)
    assert rl.statistics().waiting == 1
    assert sem.statistics().held == 0  # waits holding none
    await step(clock, 0.1)
    grant = await op
    assert sem.statistics().held == 2
    assert rl.statistics().granted == 2
    grant.release()
    grant.release()  # idempotent
    assert sem.statistics().held == 0


async def test_blocked_on_a_semaphore_takes_no_rate_until_it_can_take_both(
    flavour: Flavour,
) -> None:
    # The failure mode: a request holding its RPM slot while blocked on another limit.
    clock = ManualClock()
    rpm = flavour.tx.ns.RateLimit(10, burst=2, clock=clock)
    conns = flavour.tx.ns.Semaphore(1)
    assert conns.try_acquire()
    op = _acquire(flavour.rx, (rpm, conns))
    await waiting(conns, 1)
    await step(clock, 5.0)
    assert rpm.statistics().granted == 0  # nothing charged while conns is full
    assert rpm.try_acquire(0) is False  # FIFO: rpm's queue is headed by the joint waiter
    conns.release()
    grant = await op
    assert (rpm.statistics().granted, conns.statistics().held) == (1, 1)
    grant.release()


async def test_each_limiter_keeps_fifo_with_single_and_joint_waiters(flavour: Flavour) -> None:
    clock = ManualClock()
    rl = flavour.tx.ns.RateLimit(10, burst=1, clock=clock)
    sem = flavour.tx.ns.Semaphore(1)
    assert rl.try_acquire()
    assert sem.try_acquire()
    # 1: single on sem; 2: joint (rl, sem); 3: single on rl (behind the joint in rl).
    single_sem = flavour.tx.start(lambda: _hold(flavour.tx, sem))
    await waiting(sem, 1)
    joint = _acquire(flavour.rx, (rl, sem))
    await waiting(sem, 2)
    single_rl = flavour.tx.start(lambda: view(flavour.tx, rl).acquire())
    await waiting(rl, 2)
    await step(clock, 0.1)  # rl could grant one unit: its head is the joint, blocked on sem
    assert not single_rl.done()
    assert not joint.done()
    sem.release()  # to single_sem (first in sem's line)
    await single_sem
    assert not joint.done()
    sem.release()  # now the joint gets rl and sem together
    grant = await joint
    assert not single_rl.done()  # rl's unit went to the joint
    await step(clock, 0.1)
    await single_rl
    grant.release()
    assert sem.statistics().held == 0


async def _hold_async(s: Any) -> None:
    await s.acquire()


def _hold(world: World, sem: Any) -> Any:
    s = view(world, sem)
    return _hold_async(s) if world.is_loop else s.acquire()


async def test_adjust_charges_and_refunds_the_difference(world: World) -> None:
    clock = ManualClock()
    tpm = world.ns.RateLimit(1000, per=60.0, burst=400, clock=clock)  # T = 0.06 s/token
    conns = world.ns.Semaphore(3)
    op = _acquire(world, (tpm, conns), {tpm: 300, conns: 2})
    grant = await op
    assert grant.cost(tpm) == 300
    grant.adjust(tpm, 100)  # the reply used fewer tokens: 200 back
    assert tpm.statistics().available == pytest.approx(300)
    assert tpm.statistics().granted == 100
    grant.adjust(tpm, 700)  # more than the burst: charged, the limit is now in debt
    st = tpm.statistics()
    assert (st.granted, st.available) == (700, pytest.approx(-300))
    assert not tpm.try_acquire(1)
    grant.adjust(conns, 1)  # a semaphore part can be given back early
    assert conns.statistics().held == 1
    with pytest.raises(ValueError, match=r"actual=2 .*can only be given back"):
        grant.adjust(conns, 2)
    grant.release()
    assert conns.statistics().held == 0
    with pytest.raises(ValueError, match="released"):
        grant.adjust(conns, 0)
    grant.adjust(tpm, 300)  # rate parts can still be corrected after the release
    assert tpm.statistics().granted == 300


async def test_a_refund_lets_a_waiting_acquire_through(flavour: Flavour) -> None:
    clock = ManualClock()
    tpm = flavour.tx.ns.RateLimit(100, burst=100, clock=clock)
    grant = await _acquire(flavour.tx, (tpm,), {tpm: 100})
    op = flavour.rx.start(lambda: view(flavour.rx, tpm).acquire(60))
    await waiting(tpm, 1)
    grant.adjust(tpm, 30)  # 70 back: the waiter's 60 fits at once, no time passed
    await op
    assert tpm.statistics().granted == 90


@pytest.mark.parametrize("how", ["timeout", "ctx", "task"])
async def test_a_cancelled_joint_acquire_takes_nothing_anywhere(how: str) -> None:
    clock = ManualClock()
    rl = corral.RateLimit(10, burst=1, clock=clock)
    sem = corral.Semaphore(1)
    assert sem.try_acquire()
    limits = corral.Limits(rl, sem)
    ctx = corral.with_cancel(corral.background())
    kw: dict[str, Any] = {"timeout": 0.01} if how == "timeout" else {"ctx": ctx}

    async def target() -> None:
        await limits.acquire(**kw)

    task = asyncio.create_task(target())
    await waiting(sem, 1)
    behind = asyncio.create_task(_hold_async(rl))  # queued behind the joint in rl
    await waiting(rl, 2)
    if how == "ctx":
        ctx.cancel()
    elif how == "task":
        task.cancel()
    with pytest.raises((DeadlineExceeded, Cancelled, asyncio.CancelledError)):
        await task
    ctx.cancel()
    await behind  # the joint left rl's head: the single acquire goes on at once
    assert (rl.statistics().granted, rl.statistics().waiting) == (1, 0)
    assert (sem.statistics().held, sem.statistics().waiting) == (1, 0)
    sem.release()


async def test_a_joint_grant_undone_after_its_task_was_cancelled() -> None:
    clock = ManualClock()
    rl = corral.RateLimit(10, burst=1, clock=clock)
    sem = corral.Semaphore(1)
    limits = corral.Limits(rl, sem)
    assert rl.try_acquire()
    task = asyncio.create_task(_joint(limits))
    await waiting(sem, 1)
    clock.advance(0.1)  # granted inside the clock call-back; the task has not run yet
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (rl.statistics().granted, sem.statistics().held) == (1, 0)


async def test_a_joint_attempt_leaves_a_stale_head_to_wake_the_waiter_behind_it() -> None:
    # Regression for a lost wake-up (found by test_limits_hammer): a joint attempt used to
    # pop a stale head (aborted, its task not yet run to unlink it). The unlink then found
    # nothing to remove and ran no grant loop, so the waiter behind it, which fits, waited
    # for a release that never came.
    s = corral.Semaphore(2)
    t = corral.Semaphore(1)
    assert s.try_acquire(1)
    assert t.try_acquire(1)
    ctx = corral.with_cancel(corral.background())

    async def big() -> None:
        await s.acquire(2, ctx=ctx)

    x = asyncio.create_task(big())  # s's head: needs 2, 1 is free
    await waiting(s, 1)
    y = asyncio.create_task(_hold_async(s))  # behind x (no barging), fits once x leaves
    await waiting(s, 2)
    j = asyncio.create_task(_joint(corral.Limits(s, t)))  # behind y in s, t's head
    await waiting(s, 3)
    # One step, no await: x is aborted by its ctx but its task has not run to unlink it;
    # t's release offers the joint, whose attempt finds x's stale entry at s's head.
    ctx.cancel()
    t.release()
    with pytest.raises(Cancelled):
        await x
    await asyncio.wait_for(y, 5)  # the bug: y waited forever
    assert s.statistics().held == 2
    assert not j.done()  # its s part waits behind y's grant: FIFO
    s.release(2)  # y's and the first permit: the joint takes s and t together
    await j
    assert (s.statistics().held, t.statistics().held) == (0, 0)


async def test_a_joint_attempt_leaves_a_stale_rate_head_to_arm_the_next_timer() -> None:
    # The same lost wake-up in a RateLimit: popping the stale head left the next one with no
    # timer armed for its due time.
    clock = ManualClock()
    rl = corral.RateLimit(10, burst=2, clock=clock)  # one unit per 0.1 s, 2 at most
    t = corral.Semaphore(1)
    assert rl.try_acquire(2)
    assert t.try_acquire(1)
    ctx = corral.with_cancel(corral.background())

    async def big() -> None:
        await rl.acquire(2, ctx=ctx)

    x = asyncio.create_task(big())  # due at 0.2
    await waiting(rl, 1)
    y = asyncio.create_task(_hold_async(rl))  # behind x; alone, due at 0.1
    await waiting(rl, 2)
    j = asyncio.create_task(_joint(corral.Limits(rl, t)))  # behind y in rl, t's head
    await waiting(rl, 3)
    ctx.cancel()
    t.release()
    with pytest.raises(Cancelled):
        await x
    await step(clock, 0.1)
    await asyncio.wait_for(y, 5)  # the bug: no timer was armed for y
    assert rl.statistics().granted == 3
    await step(clock, 0.1)
    await asyncio.wait_for(j, 5)
    assert (rl.statistics().granted, t.statistics().held) == (4, 0)


async def _joint(limits: corral.Limits) -> None:
    async with limits.acquire():
        pass


async def test_async_with_releases_semaphores_on_exit() -> None:
    sem = corral.Semaphore(2)
    rl = corral.RateLimit(100, burst=5, clock=ManualClock())
    async with corral.Limits(rl, sem).acquire({sem: 2, rl: 5}) as grant:
        assert sem.statistics().held == 2
        assert grant.costs == {rl._st: 5, sem._st: 2}
    assert sem.statistics().held == 0
    assert rl.statistics().granted == 5


def test_thread_limits_accept_either_flavours_limiters_and_convert() -> None:
    rl = corral.RateLimit(100, burst=3, clock=ManualClock())
    sem = corral.threads.Semaphore(2)
    lim = corral.threads.Limits(rl, sem)
    with lim.acquire({rl.as_threads(): 3, sem.as_async(): 1}) as grant:
        assert sem.statistics().held == 1
        assert grant.cost(rl) == 3
    assert isinstance(lim.as_async(), corral.Limits)
    assert lim.as_async().as_threads().limiters == lim.limiters


@pytest.mark.parametrize("seed", range(4))
async def test_random_joint_and_single_acquires_all_finish_and_hold_nothing(seed: int) -> None:
    """Crossing joint sets over three semaphores and two rate limits (no deadlock: enqueue
    order is one total order), with holders releasing at random."""
    rng = random.Random(seed)
    print(f"seed={seed}")
    clock = ManualClock()
    sems = [corral.Semaphore(rng.randint(1, 3)) for _ in range(3)]
    rls = [corral.RateLimit(20, burst=2, clock=clock) for _ in range(2)]
    pool: list[Any] = [*sems, *rls]
    held_peak = [0] * 3
    done = 0

    async def user() -> None:
        nonlocal done
        chosen = rng.sample(pool, rng.randint(1, 4))
        async with corral.Limits(*chosen).acquire():
            for i, s in enumerate(sems):
                held_peak[i] = max(held_peak[i], s.statistics().held)
            for _ in range(rng.randint(0, 3)):
                await asyncio.sleep(0)
        done += 1

    tasks = [asyncio.create_task(user()) for _ in range(60)]
    while not all(t.done() for t in tasks):
        await step(clock, rng.choice([0.0, 0.02, 0.05]))
    await asyncio.gather(*tasks)
    assert done == 60
    for i, s in enumerate(sems):
        assert s.statistics() == corral.SemaphoreStatistics(s.size, 0, 0, 0)
        assert held_peak[i] <= s.size
    assert sum(r.statistics().granted for r in rls) > 0


def test_argument_errors_name_the_argument() -> None:
    rl = corral.RateLimit(10, burst=2)
    sem = corral.Semaphore(2)
    with pytest.raises(ValueError, match="at least one"):
        corral.Limits()
    with pytest.raises(ValueError, match="twice"):
        corral.Limits(rl, rl.as_threads())
    with pytest.raises(TypeError, match="RateLimit or Semaphore"):
        corral.Limits(rl, object())
    lim = corral.Limits(rl, sem)
    with pytest.raises(ValueError, match="not in these Limits"):
        lim.acquire({corral.Semaphore(1): 1})
    with pytest.raises(ValueError, match=r"n=3 .*size"):
        lim.acquire({sem: 3})
    with pytest.raises(ValueError, match="larger than the burst"):
        lim.acquire({rl: 3})
    with pytest.raises(TypeError, match="mapping"):
        lim.acquire([1, 2])  # type: ignore[arg-type]
    assert sem.statistics().held == 0
    assert rl.statistics().granted == 0


@pytest.mark.parametrize("seed", range(6))
async def test_joint_returns_never_crowd_a_window_with_late_wake_ups(seed: int) -> None:
    """The caller-side promise through ``Limits``: the rate part of a joint grant is
    charged when the acquire returns (tasks woken late, simulated on the manual clock),
    so no window of ``per`` seconds holds more than ``rate`` returns."""
    rng = random.Random(seed)
    print(f"seed={seed}")
    clock = ManualClock()
    rl = corral.RateLimit(10, per=1.0, clock=clock)  # T = 0.1 s
    sem = corral.Semaphore(3)
    limits = corral.Limits(rl, sem)
    stamps: list[float] = []

    async def user() -> None:
        for _ in range(10):
            async with limits.acquire():
                stamps.append(clock.now())

    tasks = [asyncio.create_task(user()) for _ in range(3)]
    while not all(t.done() for t in tasks):
        clock.advance(0.01)
        if rng.random() < 0.5:  # else: whoever was woken runs late, after the next step
            for _ in range(3):
                await asyncio.sleep(0)
    await asyncio.gather(*tasks)
    assert len(stamps) == 30
    assert most_in_window(stamps, 1.0) <= 10, sorted(stamps)
    assert (rl.statistics().granted, sem.statistics().held) == (30, 0)
