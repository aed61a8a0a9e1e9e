"""Cancellation atomicity: an operation either happened, exactly once, or had no effect.

Every way to give up on a blocked operation (``task.cancel()``, ``asyncio.timeout``,
``timeout=``, ``ctx=``) in every world it applies to, on every kind of blocking operation; then
the races: a waiter woken and cancelled in the same loop iteration (both orders), an expired
``asyncio.timeout`` racing a wake-up (the cpython gh-90155 class), and a thread's timeout racing
a completion. The same races under many schedules are in test_hammer.py.
"""

from __future__ import annotations

import asyncio
import math
import random
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

import corral
import corral.threads
from corral import Cancelled, DeadlineExceeded, EndOfChannel, WouldBlock

from .flavours import (  # noqa: F401 (fixtures)
    STRESS,
    WORLDS,
    Flavour,
    Stage,
    flavour_fixture,
    hammer_rng_fixture,
    parked,
    stage_fixture,
    tiny_switch_interval_fixture,
    until,
)

SHORT = 0.01  # a timeout *value*: these tests are about timeouts, nothing waits on it to sync

# --- the table: each way to give up, on each blocking operation, has no effect ------------------


@dataclass
class Scenario:
    """A blocked operation and the proof that it left no trace."""

    start: Callable[[Any], Any]  # view-independent: given the world, returns the fn to start
    waiting: Callable[[], int]  # how many waiters it queued
    no_effect: Callable[[], None]  # asserts the primitive is as if it never ran


def _scenario(op: str) -> Scenario:
    if op == "send":  # a sender blocked on a full buffer
        ch = corral.Channel(1)
        ch.send_nowait("old")

        def no_effect() -> None:
            assert ch.recv_nowait() == "old"
            with pytest.raises(WouldBlock):
                ch.recv_nowait()  # "new" was never sent

        return Scenario(
            lambda w: lambda **kw: w.chan(ch).send("new", **kw),
            lambda: ch.statistics().waiting_senders,
            no_effect,
        )
    if op == "recv":  # a receiver blocked on an empty rendezvous channel
        ch = corral.threads.Channel(0)

        def no_effect() -> None:
            with pytest.raises(WouldBlock):
                ch.send_nowait("x")  # no receiver is left to take it

        return Scenario(
            lambda w: lambda **kw: w.chan(ch).recv(**kw),
            lambda: ch.statistics().waiting_receivers,
            no_effect,
        )
    if op == "select-recv":
        a, b = corral.Channel(0), corral.threads.Channel(0)

        def no_effect() -> None:
            for c in (a, b):
                with pytest.raises(WouldBlock):
                    c.send_nowait("x")

        return Scenario(
            lambda w: lambda **kw: w.ns.select(a.recv_case(), b.recv_case(), **kw),
            lambda: a.statistics().waiting_receivers + b.statistics().waiting_receivers,
            no_effect,
        )
    if op == "select-send":
        a, b = corral.Channel(0), corral.threads.Channel(1)
        b.send_nowait("old")

        def no_effect() -> None:
            with pytest.raises(WouldBlock):
                a.recv_nowait()
            assert b.recv_nowait() == "old"
            with pytest.raises(WouldBlock):
                b.recv_nowait()

        return Scenario(
            lambda w: lambda **kw: w.ns.select(a.send_case("A"), b.send_case("B"), **kw),
            lambda: a.statistics().waiting_senders + b.statistics().waiting_senders,
            no_effect,
        )
    assert op == "acquire"
    sem = corral.Semaphore(2)
    assert sem.try_acquire(2)

    def no_effect() -> None:
        assert sem.statistics() == corral.SemaphoreStatistics(2, 2, 0, 0)
        sem.release(2)
        assert sem.statistics().held == 0

    return Scenario(
        lambda w: lambda **kw: w.sem(sem).acquire(1, **kw),  # awaitable, or blocking
        lambda: sem.statistics().waiting,
        no_effect,
    )


OPS = ["send", "recv", "select-recv", "select-send", "acquire"]
HOWS = ["task.cancel", "asyncio.timeout", "timeout=", "ctx="]


def _table() -> Iterator[Any]:
    for world in WORLDS:
        for how in HOWS:
            if how in ("task.cancel", "asyncio.timeout") and world == "threads":
                continue  # a thread cannot be cancelled from outside
            for op in OPS:
                yield pytest.param(world, how, op, id=f"{world}-{how}-{op}")


async def _in_asyncio_timeout(awaitable: Any, delay: float) -> Any:
    async with asyncio.timeout(delay):
        return await awaitable


@pytest.mark.parametrize(("world_name", "how", "op"), list(_table()))
async def test_cancelled_operation_has_no_effect(
    stage: Stage, world_name: str, how: str, op: str
) -> None:
    w = stage.world(world_name)
    sc = _scenario(op)
    fn = sc.start(w)
    cause = RuntimeError("request aborted")
    if how == "timeout=":
        with pytest.raises(DeadlineExceeded):
            await w.start(lambda: fn(timeout=SHORT))
    elif how == "asyncio.timeout":
        with pytest.raises(TimeoutError) as caught:
            await w.start(lambda: _in_asyncio_timeout(fn(), SHORT))
        assert type(caught.value) is TimeoutError  # asyncio's own, not converted
    elif how == "ctx=":
        ctx = corral.with_cancel(corral.background())
        started = w.start(lambda: fn(ctx=ctx))
        await until(lambda: sc.waiting() > 0, "the operation to wait")
        ctx.cancel(cause)
        with pytest.raises(Cancelled) as caught:
            await started
        assert type(caught.value) is Cancelled
        assert caught.value.cause is cause
    else:
        started = w.start(fn)
        await until(lambda: sc.waiting() > 0, "the operation to wait")
        started.cancel()
        with pytest.raises(asyncio.CancelledError):
            await started
    assert sc.waiting() == 0
    sc.no_effect()


async def test_item_skips_a_waiter_whose_ctx_was_cancelled(flavour: Flavour) -> None:
    # The ctx abort claims the first receiver at once, while its entry is still queued (its
    # owner has not run yet): the item must go past that stale entry to the next receiver.
    ch = flavour.channel(0)
    ctx = corral.with_cancel(corral.background())
    first = flavour.rx.recv(ch, ctx=ctx)
    await parked(ch, receivers=1)
    second = flavour.rx.recv(ch)
    await parked(ch, receivers=2)
    ctx.cancel()
    ch.send_nowait("x")  # no yield since the cancel
    with pytest.raises(Cancelled):
        await first
    assert await second == "x"


async def test_recv_with_timeout_in_a_loop_gets_all_100_items_exactly_once(
    flavour: Flavour,
) -> None:
    # The receiver gives up again and again while the items trickle in; the producer sends the
    # next item only after the receiver has timed out at least once more, so it is always slower
    # than the timeouts, and some sends land just as a timeout fires.
    ch = flavour.channel(0)
    ticks = corral.Channel(math.inf)  # one per timeout: paces the producer

    async def producer() -> None:
        for i in range(100):
            await flavour.tx.recv(ticks)
            await flavour.tx.send(ch, i)

    async def consumer() -> tuple[list[int], int]:
        got: list[int] = []
        timeouts = 0
        while len(got) < 100:
            try:
                got.append(await flavour.rx.recv(ch, timeout=0.002))
            except DeadlineExceeded:
                timeouts += 1
                ticks.send_nowait(None)
        return got, timeouts

    sending = asyncio.create_task(producer())
    got, timeouts = await consumer()
    await sending
    assert got == list(range(100))
    assert timeouts >= 100
    assert ch.statistics().waiting_senders == ch.statistics().waiting_receivers == 0


# --- woken and cancelled in the same loop iteration (asyncio) ---------------------------------


WAKE_OPS = ["recv", "send", "select-recv", "select-send"]


class _Blocked:
    """One asyncio task blocked in ``op`` on a rendezvous channel, and how to complete it."""

    def __init__(self, op: str) -> None:
        self.op = op
        self.ch = corral.Channel(0)
        self.other = corral.Channel(0)  # a select's second case; never ready

    async def run(self) -> Any:
        ch, other = self.ch, self.other
        if self.op == "recv":
            return await ch.recv()
        if self.op == "send":
            await ch.send("mine")
            return "sent"
        if self.op == "select-recv":
            s = await corral.select(other.recv_case(), ch.recv_case())
            return s.value
        s = await corral.select(other.recv_case(), ch.send_case("mine"))
        assert s.index == 1
        return "sent"

    async def parked(self) -> None:
        if self.op in ("recv", "select-recv"):
            await parked(self.ch, receivers=1)
        else:
            await parked(self.ch, senders=1)

    def complete(self) -> None:
        """Complete the operation from this (another) task, without yielding."""
        if self.op in ("recv", "select-recv"):
            self.ch.send_nowait("theirs")
        else:
            assert self.ch.recv_nowait() == "mine"

    @property
    def expected(self) -> str:
        return "theirs" if self.op in ("recv", "select-recv") else "sent"

    def assert_clean(self) -> None:
        for c in (self.ch, self.other):
            s = c.statistics()
            assert (s.waiting_senders, s.waiting_receivers, s.buffered) == (0, 0, 0)


@pytest.mark.parametrize("order", ["wake-then-cancel", "cancel-then-wake"])
@pytest.mark.parametrize("op", WAKE_OPS)
async def test_waiter_woken_and_cancelled_keeps_its_result_and_is_cancelled_at_next_await(
    op: str, order: str
) -> None:
    blocked = _Blocked(op)
    trail: list[str] = []

    async def body() -> None:
        trail.append(await blocked.run())  # the operation happened: its result is reported
        await asyncio.sleep(0)  # ...and the cancellation is delivered here
        trail.append("cancellation lost")

    task = asyncio.create_task(body())
    await blocked.parked()
    if order == "wake-then-cancel":
        blocked.complete()
        task.cancel()
    else:
        task.cancel()
        blocked.complete()  # the task has not run since: it has not given up yet
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()
    assert trail == [blocked.expected]
    blocked.assert_clean()


@pytest.mark.parametrize("op", WAKE_OPS)
async def test_expired_asyncio_timeout_racing_a_wakeup_leaks_no_cancellation(op: str) -> None:
    # cpython gh-90155 class: asyncio.timeout expires (cancelling the task), then the operation
    # completes before the task runs. The result is reported, the timeout block exits normally,
    # and no cancellation may surface afterwards: the timeout withdrew its request on exit.
    blocked = _Blocked(op)
    scopes: list[asyncio.Timeout] = []
    after: list[str] = []

    async def body() -> Any:
        async with asyncio.timeout(None) as scope:
            scopes.append(scope)
            result = await blocked.run()
        for _ in range(3):
            await asyncio.sleep(0)  # a stray re-delivered cancellation would land here
        after.append("ran on")
        return result

    task = asyncio.create_task(body())
    await blocked.parked()
    scopes[0].reschedule(asyncio.get_running_loop().time())  # expire now
    # Plain sleep(0) steps: this task runs before the body in each iteration, so the first time
    # it sees the timeout's cancellation, the body has not yet run since.
    for _ in range(100):
        if task.cancelling():
            break
        await asyncio.sleep(0)
    assert task.cancelling() == 1
    blocked.complete()
    assert await task == blocked.expected
    assert after == ["ran on"]
    assert task.cancelling() == 0
    blocked.assert_clean()


@pytest.mark.parametrize("order", ["wake-then-cancel", "cancel-then-wake"])
async def test_semaphore_waiter_granted_then_cancelled_passes_its_permits_on(order: str) -> None:
    # Go: "acquired the semaphore after we were canceled; pretend we didn't and put it back".
    sem = corral.Semaphore(1)
    assert sem.try_acquire()

    async def acquire() -> None:
        await sem.acquire()

    first = asyncio.create_task(acquire())
    await parked(sem, waiting=1)
    second = asyncio.create_task(acquire())
    await parked(sem, waiting=2)
    if order == "wake-then-cancel":
        sem.release()
        first.cancel()
    else:
        first.cancel()
        sem.release()
    with pytest.raises(asyncio.CancelledError):
        await first
    # The first gave its permit back as it left, and that granted the second at once.
    assert sem.statistics() == corral.SemaphoreStatistics(1, 1, 0, 0)
    await second
    sem.release()


async def test_woken_select_cancelled_fires_one_case_only() -> None:
    # The select's losing case must not take an item after the winning one fired.
    a, b = corral.Channel(0), corral.Channel(0)
    task = asyncio.create_task(corral.select(a.recv_case(), b.recv_case()))
    await parked(a, receivers=1)
    a.send_nowait("a")
    task.cancel()
    with pytest.raises(WouldBlock):
        b.send_nowait("b")  # the select already fired on a
    s = await task  # the select returned before the task could see the cancellation
    assert (s.index, s.value) == (0, "a")
    assert b.statistics().waiting_receivers == 0


# --- a thread's timeout racing a completion ------------------------------------------------------
#
# Each round is one race whose two outcomes are both fine; the invariant is that both sides agree
# on which one happened and nothing is left behind. The quick tests run a few rounds; the hammer
# tests run many, under a tiny switch interval and seeded random timeouts.


def _in_thread(fn: Callable[[], Any]) -> Callable[[], Any]:
    """Start ``fn`` in a thread; the returned function joins it and returns its result."""
    result: list[Any] = []
    t = threading.Thread(target=lambda: result.append(fn()))
    t.start()

    def join() -> Any:
        t.join()
        return result[0]

    return join


def _outcome(fn: Callable[[], Any]) -> Any:
    """``fn()``, or the type of the corral error it raised."""
    try:
        return fn()
    except (DeadlineExceeded, Cancelled) as exc:
        return type(exc)


def _race_recv_timeout_against_send(timeout: float) -> None:
    """A thread receives with ``timeout``; this thread sends with the same timeout."""
    ch = corral.threads.Channel(0)
    received = _in_thread(lambda: _outcome(lambda: ch.recv(timeout=timeout)))
    sent = _outcome(lambda: ch.send("x", timeout=timeout)) is None
    assert received() == ("x" if sent else DeadlineExceeded)
    s = ch.statistics()
    assert (s.waiting_senders, s.waiting_receivers, s.buffered) == (0, 0, 0)


def _race_recv_ctx_cancel_against_send(timeout: float) -> None:
    """A thread receives under a ctx that this thread cancels, right before it sends."""
    ch = corral.threads.Channel(0)
    ctx = corral.with_cancel(corral.background())
    received = _in_thread(lambda: _outcome(lambda: ch.recv(ctx=ctx)))
    ctx.cancel()
    sent = _outcome(lambda: ch.send("x", timeout=timeout)) is None
    assert received() == ("x" if sent else Cancelled)
    assert ch.statistics().waiting_receivers == ch.statistics().waiting_senders == 0


def _race_select_timeout_against_send(timeout: float) -> None:
    a, b = corral.threads.Channel(0), corral.threads.Channel(0)
    selected = _in_thread(
        lambda: _outcome(
            lambda: corral.threads.select(a.recv_case(), b.recv_case(), timeout=timeout)
        )
    )
    sent = _outcome(lambda: b.send("x", timeout=timeout)) is None
    s = selected()
    if sent:
        assert (s.index, s.value) == (1, "x")
    else:
        assert s is DeadlineExceeded
    for c in (a, b):
        assert c.statistics().waiting_receivers == c.statistics().waiting_senders == 0


def _race_acquire_timeout_against_release(timeout: float) -> None:
    sem = corral.threads.Semaphore(1)
    assert sem.try_acquire()
    acquired = _in_thread(lambda: _outcome(lambda: sem.acquire(timeout=timeout)))
    sem.release()
    got = acquired() is not DeadlineExceeded
    # Holds exactly what it reports: the permit, or nothing (a late grant was given back).
    assert sem.statistics() == corral.SemaphoreStatistics(1, int(got), 0, 0)


RACES = {
    "recv-timeout-vs-send": _race_recv_timeout_against_send,
    "recv-ctx-vs-send": _race_recv_ctx_cancel_against_send,
    "select-timeout-vs-send": _race_select_timeout_against_send,
    "acquire-timeout-vs-release": _race_acquire_timeout_against_release,
}


@pytest.mark.parametrize("race", list(RACES))
def test_thread_timeout_racing_a_completion_is_all_or_nothing(race: str) -> None:
    for i in range(20):
        RACES[race](0.0005 * (i % 4))


@pytest.mark.hammer
@pytest.mark.usefixtures("tiny_switch_interval")
@pytest.mark.parametrize("race", list(RACES))
def test_hammer_thread_timeout_racing_a_completion_is_all_or_nothing(
    race: str, hammer_rng: random.Random
) -> None:
    for _ in range(1500 * STRESS):
        RACES[race](hammer_rng.choice([0.0, 0.00005, 0.0002, 0.001]))


async def test_recv_ctx_cancel_racing_close_reports_one_outcome(flavour: Flavour) -> None:
    # Whichever wins, the receiver reports it; nothing else is left behind.
    for _ in range(10):
        ch = flavour.channel(0)
        ctx = corral.with_cancel(corral.background())
        op = flavour.rx.recv(ch, ctx=ctx)
        await parked(ch, receivers=1)
        closing = flavour.tx.close(ch)
        ctx.cancel()
        with pytest.raises((Cancelled, EndOfChannel)):
            await op
        assert await closing is True
        assert ch.statistics().waiting_receivers == 0


@pytest.mark.hammer
async def test_hammer_task_timeouts_on_another_loop_racing_thread_sends(stage: Stage) -> None:
    # A task on a second loop receives with timeouts while a worker thread sends with timeouts:
    # across threads and loops, every item is received exactly when its send succeeded.
    loop_world, thread_world = stage.other_loop, stage.threads
    for i in range(400 * STRESS):
        ch = corral.Channel(0)
        t = 0.0002 * (i % 5)
        recv = loop_world.start(lambda ch=ch, t=t: _async_outcome(ch.recv(timeout=t)))
        send = thread_world.start(
            lambda ch=ch, t=t, i=i: _outcome(lambda: ch.as_threads().send(i, timeout=t))
        )
        sent = await send is None
        assert await recv == (i if sent else DeadlineExceeded)
        assert ch.statistics().waiting_receivers == ch.statistics().waiting_senders == 0


async def _async_outcome(awaitable: Any) -> Any:
    try:
        return await awaitable
    except (DeadlineExceeded, Cancelled) as exc:
        return type(exc)
