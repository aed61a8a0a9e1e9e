"""Nothing silent (issue 17): a forgotten ``await`` is loud or harmless, and the bare
``async with sem:`` / ``with sem:`` forms work.

* An acquire that is neither awaited nor entered used to take nothing and say nothing: the
  program ran unthrottled. Now free permits (a conforming cost) are taken at the call, so a
  forgotten ``await`` still holds them; one that has to wait does so only when awaited, and
  dropped unawaited it warns (``RuntimeWarning`` naming the call), as a coroutine does.
* Every other public asyncio call that returns something to await is a coroutine (Python's
  own "never awaited" warning), or starts its work at the call (``Group.go``,
  ``SingleFlight.do_chan``), or, for a ``go()`` that had to wait, fails the group loudly.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

import corral
import corral.threads

pytestmark = pytest.mark.timeout(30)


@contextmanager
def warnings_as_errors() -> Iterator[list[BaseException]]:
    """Warnings are errors (as under ``-W error``); one raised in a finalizer reaches
    ``sys.unraisablehook``, which records it here."""
    caught: list[BaseException] = []
    prev = sys.unraisablehook

    def hook(args: Any) -> None:
        caught.append(args.exc_value)

    sys.unraisablehook = hook
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            yield caught
            gc.collect()
    finally:
        sys.unraisablehook = prev


def _dropped(make: Callable[[], Any]) -> list[BaseException]:
    with warnings_as_errors() as caught:
        obj = make()
        if asyncio.iscoroutine(obj):
            pass  # Python's own warning, from the coroutine's finalizer
        del obj
    return caught


async def _hold_sem() -> corral.Semaphore:
    sem = corral.Semaphore(1)
    await sem.acquire()
    return sem


async def test_a_dropped_acquire_that_had_to_wait_warns_naming_the_call() -> None:
    sem = await _hold_sem()  # held: the next acquire must wait
    clock = corral.testing.ManualClock()
    rl = corral.RateLimit(1, per=1.0, clock=clock)
    await rl.acquire()  # spent: the next acquire must wait
    limits = corral.Limits(sem)
    cases: dict[str, Callable[[], Any]] = {
        "Semaphore.acquire": lambda: sem.acquire(),
        "Semaphore.acquire timeout": lambda: sem.acquire(1, timeout=5),
        "Semaphore.acquire ctx": lambda: sem.acquire(ctx=corral.background()),
        "RateLimit.acquire": lambda: rl.acquire(),
        "Limits.acquire": lambda: limits.acquire(),
    }
    for name, make in cases.items():
        caught = _dropped(make)
        assert len(caught) == 1, (name, caught)
        (w,) = caught
        assert isinstance(w, RuntimeWarning), (name, w)
        call = name.split(" ")[0].split("(")[0]
        assert f"{call}() was never awaited" in str(w), (name, w)
    assert sem.statistics().waiting == 0
    sem.release()


async def test_a_forgotten_await_on_a_free_acquire_still_holds_the_permit() -> None:
    """Free permits are taken at the call: forgetting ``await`` does not unthrottle."""
    sem = corral.Semaphore(2)
    with warnings_as_errors() as caught:
        sem.acquire()  # no await
        sem.acquire()
    assert caught == []
    assert sem.statistics().held == 2
    assert not sem.try_acquire()
    sem.release(2)
    rl = corral.RateLimit(3, per=1.0, burst=3, clock=corral.testing.ManualClock())
    for _ in range(3):
        rl.acquire()  # no await: each still counts
    assert rl.statistics().granted == 3
    assert not rl.try_acquire()


async def test_every_public_awaitable_that_is_not_started_at_the_call_warns_when_dropped() -> None:
    """The coroutines among the public calls: Python warns for them, naming them."""
    ch: corral.Channel[int] = corral.Channel(0)
    ctx = corral.with_cancel(corral.background())
    sf: corral.SingleFlight[str, int] = corral.SingleFlight()

    async def one() -> int:
        return 1

    cases: dict[str, Callable[[], Any]] = {
        "send": lambda: ch.send(1),
        "recv": lambda: ch.recv(),
        "select": lambda: corral.select(ch.recv_case()),
        "wait": lambda: ctx.wait(),
        "do": lambda: sf.do("k", one),
        "do_shared": lambda: sf.do_shared("k", one),
        "wait ": lambda: corral.Group().wait(),
    }
    for name, make in cases.items():
        caught = _dropped(make)
        assert caught, name
        assert isinstance(caught[0], RuntimeWarning), (name, caught)
        assert "was never awaited" in str(caught[0]), (name, caught)
        assert name.strip() in str(caught[0]), (name, caught)
    ctx.cancel()


async def test_do_chan_and_a_free_go_start_at_the_call() -> None:
    """Not coroutines, and harmless to drop: their work starts at the call."""
    sf: corral.SingleFlight[str, int] = corral.SingleFlight()
    ran: list[str] = []

    async def fn() -> int:
        ran.append("sf")
        return 1

    async def work() -> None:
        ran.append("go")

    with warnings_as_errors() as caught:
        ch = sf.do_chan("k", fn)
        async with corral.Group() as g:
            g.go(work)
        assert (await ch.recv()).value == 1
    assert caught == []
    assert sorted(ran) == ["go", "sf"]


async def test_async_with_sem_acquires_one_permit() -> None:
    sem = corral.Semaphore(2)
    async with sem:
        assert sem.statistics().held == 1
        async with sem:
            assert sem.statistics().held == 2
    assert sem.statistics().held == 0


async def test_async_with_sem_waits_in_line_and_releases_on_error() -> None:
    sem = corral.Semaphore(1)
    order: list[str] = []
    entered = asyncio.Event()
    leave = asyncio.Event()

    async def first() -> None:
        async with sem:
            order.append("first")
            entered.set()
            await leave.wait()

    async def second() -> None:
        async with sem:
            order.append("second")

    t1 = asyncio.create_task(first())
    await entered.wait()
    t2 = asyncio.create_task(second())
    while sem.statistics().waiting == 0:
        await asyncio.sleep(0)
    leave.set()
    await asyncio.gather(t1, t2)
    assert order == ["first", "second"]
    with pytest.raises(KeyError):
        async with sem:
            raise KeyError("x")
    assert sem.statistics().held == 0


async def test_async_with_rate_limit_costs_one() -> None:
    rl = corral.RateLimit(2, per=1.0, burst=2, clock=corral.testing.ManualClock())
    async with rl:
        pass
    async with rl:
        pass
    assert rl.statistics().granted == 2
    assert not rl.try_acquire()


async def test_async_with_limits_costs_one_of_each_and_gives_back_the_permits() -> None:
    rl = corral.RateLimit(5, per=1.0, burst=5, clock=corral.testing.ManualClock())
    sem = corral.Semaphore(2)
    limits = corral.Limits(rl, sem)
    async with limits:
        assert sem.statistics().held == 1
        assert rl.statistics().granted == 1
    assert sem.statistics().held == 0


def test_with_sem_rate_limit_and_limits_in_threads() -> None:
    sem = corral.threads.Semaphore(2)
    with sem:
        assert sem.statistics().held == 1
        with sem:
            assert sem.statistics().held == 2
    assert sem.statistics().held == 0
    rl = corral.threads.RateLimit(2, per=1.0, burst=2, clock=corral.testing.ManualClock())
    with rl:
        pass
    assert rl.statistics().granted == 1
    limits = corral.threads.Limits(rl, sem)
    with limits:
        assert (sem.statistics().held, rl.statistics().granted) == (1, 2)
    assert sem.statistics().held == 0


def test_thread_acquire_without_with_takes_the_permit_it_is_never_a_no_op() -> None:
    """Threads: ``acquire()`` blocks and takes the permit (``acquire(); ...; release()``
    is the plain style), so nothing can be forgotten silently."""
    sem = corral.threads.Semaphore(1)
    sem.acquire()
    assert sem.statistics().held == 1
    with pytest.raises(corral.DeadlineExceeded):
        sem.acquire(timeout=0.01)
    sem.release()
    assert sem.statistics().held == 0
