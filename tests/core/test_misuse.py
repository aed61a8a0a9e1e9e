"""Bad input gets a typed error whose message names the argument, and corrupts nothing.

Plus the one misuse that is not an argument: a channel or semaphore used by a task whose event
loop has since closed. Its waiter can never be woken; it must be skipped, not handed items.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import math
import re
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import corral
import corral.testing
import corral.threads
from corral import ChannelClosed, WouldBlock

from .flavours import wait_until

bg = corral.background


def _closed(ns: Any) -> Any:
    ch = ns.Channel(1)
    ch.close()
    return ch


def _held(ns: Any, size: int, held: int) -> Any:
    sem = ns.Semaphore(size)
    assert sem.try_acquire(held)
    return sem


A, T = corral, corral.threads  # the two flavours' namespaces

# (id, call, exception type, regex the message must match: it names the argument)
MISUSE: list[tuple[str, Callable[[], Any], type[BaseException], str]] = [
    # capacity
    ("capacity-negative", lambda: A.Channel(-1), ValueError, r"\bcapacity\b"),
    ("capacity-negative-threads", lambda: T.Channel(-1), ValueError, r"\bcapacity\b"),
    ("capacity-float", lambda: A.Channel(1.5), TypeError, r"\bcapacity\b"),
    ("capacity-bool", lambda: T.Channel(True), TypeError, r"\bcapacity\b"),
    ("capacity-nan", lambda: A.Channel(math.nan), TypeError, r"\bcapacity\b"),
    ("capacity-minus-inf", lambda: A.Channel(-math.inf), TypeError, r"\bcapacity\b"),
    ("capacity-str", lambda: T.Channel("3"), TypeError, r"\bcapacity\b"),
    # size
    ("size-zero", lambda: A.Semaphore(0), ValueError, r"\bsize\b"),
    ("size-negative-threads", lambda: T.Semaphore(-2), ValueError, r"\bsize\b"),
    ("size-bool", lambda: A.Semaphore(True), TypeError, r"\bsize\b"),
    ("size-float", lambda: T.Semaphore(2.0), TypeError, r"\bsize\b"),
    ("size-nan", lambda: A.Semaphore(math.nan), TypeError, r"\bsize\b"),
    # weight
    ("weight-negative", lambda: A.Semaphore(2).acquire(-1), ValueError, r"\bn\b"),
    ("weight-bool-threads", lambda: T.Semaphore(2).acquire(True), TypeError, r"\bn\b"),
    ("weight-float", lambda: A.Semaphore(2).acquire(1.5), TypeError, r"\bn\b"),
    ("weight-nan-threads", lambda: T.Semaphore(2).acquire(math.nan), TypeError, r"\bn\b"),
    ("weight-over-size", lambda: A.Semaphore(2).acquire(3), ValueError, r"\bn=3\b.*\bsize\b"),
    ("weight-over-size-threads", lambda: T.Semaphore(2).acquire(3), ValueError, r"\bn=3\b"),
    ("try-acquire-over-size", lambda: A.Semaphore(2).try_acquire(3), ValueError, r"\bn=3\b"),
    ("try-acquire-negative", lambda: T.Semaphore(2).try_acquire(-1), ValueError, r"\bn\b"),
    ("release-more-than-held", lambda: _held(A, 3, 1).release(2), ValueError, r"\bn=2\b.*held"),
    ("release-unheld-threads", lambda: T.Semaphore(1).release(), ValueError, r"\bn=1\b.*held"),
    ("release-negative", lambda: _held(A, 3, 1).release(-1), ValueError, r"\bn\b"),
    # timeout
    ("timeout-negative-send", lambda: A.Channel(1).send(1, timeout=-1), ValueError, r"timeout"),
    ("timeout-nan-recv", lambda: A.Channel().recv(timeout=math.nan), ValueError, r"timeout"),
    ("timeout-str-threads", lambda: T.Channel(1).recv(timeout="1"), TypeError, r"timeout"),
    ("timeout-bool", lambda: T.Channel(1).send(1, timeout=True), TypeError, r"timeout"),
    ("timeout-acquire", lambda: A.Semaphore(1).acquire(timeout=-0.5), ValueError, r"timeout"),
    (
        "timeout-select",
        lambda: T.select(T.Channel().recv_case(), timeout=-1),
        ValueError,
        "timeout",
    ),
    ("timeout-with-timeout", lambda: corral.with_timeout(bg(), -1), ValueError, r"timeout"),
    (
        "timeout-with-timeout-nan",
        lambda: corral.with_timeout(bg(), math.nan),
        ValueError,
        "timeout",
    ),
    ("timeout-wait-blocking", lambda: bg().wait_blocking(-1), ValueError, r"timeout"),
    # select
    ("select-no-cases", lambda: A.select(), ValueError, r"case"),
    ("select-no-cases-threads", lambda: T.select(), ValueError, r"case"),
    ("select-not-a-case", lambda: A.select(A.Channel()), TypeError, r"case 0"),
    ("select-not-a-case-2", lambda: T.select(T.Channel().recv_case(), 3), TypeError, r"case 1"),
    (
        "select-default-with-timeout",
        lambda: A.select(A.Channel().recv_case(), default=True, timeout=1),
        ValueError,
        r"\bdefault\b.*\btimeout\b",
    ),
    (
        "select-default-with-ctx-threads",
        lambda: T.select(T.Channel().recv_case(), default=True, ctx=bg()),
        ValueError,
        r"\bctx\b",
    ),
    (
        "select-default-not-bool",
        lambda: A.select(A.Channel().recv_case(), default=1),
        TypeError,
        r"\bdefault\b",
    ),
    # ctx of the wrong type
    ("ctx-recv", lambda: A.Channel().recv(ctx="background"), TypeError, r"\bctx\b"),
    ("ctx-send-threads", lambda: T.Channel(1).send(1, ctx=object()), TypeError, r"\bctx\b"),
    ("ctx-select", lambda: A.select(A.Channel().recv_case(), ctx=1), TypeError, r"\bctx\b"),
    ("ctx-acquire", lambda: A.Semaphore().acquire(ctx=bg), TypeError, r"\bctx\b"),
    ("ctx-acquire-threads", lambda: T.Semaphore().acquire(ctx=5), TypeError, r"\bctx\b"),
    ("parent-with-cancel", lambda: corral.with_cancel(None), TypeError, r"\bparent\b"),
    ("parent-with-value", lambda: corral.with_value("ctx", "k", 1), TypeError, r"\bparent\b"),
    ("parent-without-cancel", lambda: corral.without_cancel(bg), TypeError, r"\bparent\b"),
    # closed channels
    ("send-on-closed", lambda: _closed(A).send(1), ChannelClosed, r"closed"),
    ("send-nowait-on-closed", lambda: _closed(T).send_nowait(1), ChannelClosed, r"closed"),
    ("select-send-on-closed", lambda: T.select(_closed(T).send_case(1)), ChannelClosed, r"closed"),
    # context arguments
    ("with-value-unhashable-key", lambda: corral.with_value(bg(), [], 1), TypeError, r"\bkey\b"),
    ("with-deadline-str", lambda: corral.with_deadline(bg(), "soon"), TypeError, r"\bdeadline\b"),
    ("with-deadline-none", lambda: corral.with_deadline(bg(), None), TypeError, r"\bdeadline\b"),
    ("with-deadline-nan", lambda: corral.with_deadline(bg(), math.nan), ValueError, r"deadline"),
    ("after-func-not-callable", lambda: bg().after_func(3), TypeError, r"\bfn\b"),
    (
        "cancel-cause-not-exception",
        lambda: corral.with_cancel(bg()).cancel("why"),
        TypeError,
        r"\bcause\b",
    ),
    # rate limits and Limits (issue 11)
    ("rate-zero", lambda: A.RateLimit(0), ValueError, r"\brate\b"),
    ("rate-negative-threads", lambda: T.RateLimit(-5), ValueError, r"\brate\b"),
    ("rate-nan", lambda: A.RateLimit(math.nan), ValueError, r"\brate\b"),
    ("rate-inf", lambda: T.RateLimit(math.inf), ValueError, r"\brate\b"),
    ("rate-bool", lambda: A.RateLimit(True), TypeError, r"\brate\b"),
    ("rate-str", lambda: T.RateLimit("10/s"), TypeError, r"\brate\b"),
    ("rate-per-zero", lambda: A.RateLimit(10, per=0), ValueError, r"\bper\b"),
    ("rate-burst-zero", lambda: T.RateLimit(10, burst=0), ValueError, r"\bburst\b"),
    ("rate-burst-str", lambda: A.RateLimit(10, burst="1"), TypeError, r"\bburst\b"),
    ("rate-clock", lambda: A.RateLimit(10, clock=object()), TypeError, r"\bclock\b"),
    ("rate-cost-over-burst", lambda: A.RateLimit(10).acquire(2), ValueError, r"cost=2.*burst"),
    ("rate-cost-negative", lambda: T.RateLimit(10).acquire(-1), ValueError, r"\bcost\b"),
    ("rate-cost-nan", lambda: A.RateLimit(10).try_acquire(math.nan), ValueError, r"\bcost\b"),
    ("rate-cost-str", lambda: T.RateLimit(10).try_acquire("1"), TypeError, r"\bcost\b"),
    ("rate-timeout", lambda: A.RateLimit(10).acquire(timeout=-1), ValueError, r"timeout"),
    ("rate-ctx", lambda: T.RateLimit(10).acquire(ctx="ctx"), TypeError, r"\bctx\b"),
    ("limits-empty", lambda: A.Limits(), ValueError, r"limiters"),
    ("limits-not-a-limiter", lambda: T.Limits(T.Channel()), TypeError, r"RateLimit or Semaphore"),
    (
        "limits-cost-unknown-limiter",
        lambda: A.Limits(A.Semaphore()).acquire({A.Semaphore(): 1}),
        ValueError,
        r"not in these Limits",
    ),
    (
        "limits-cost-over-size",
        lambda: (lambda s: T.Limits(s).acquire({s: 3}))(T.Semaphore(2)),
        ValueError,
        r"\bn=3\b.*\bsize\b",
    ),
    (
        "limits-timeout",
        lambda: A.Limits(A.Semaphore()).acquire(timeout=math.nan),
        ValueError,
        "timeout",
    ),
    ("grant-adjust-up-semaphore", lambda: _adjust("sem", 2), ValueError, r"actual=2"),
    ("grant-adjust-negative", lambda: _adjust("rl", -1), ValueError, r"\bactual\b"),
    ("grant-adjust-str", lambda: _adjust("rl", "3"), TypeError, r"\bactual\b"),
    ("grant-adjust-unknown", lambda: _adjust("other", 1), ValueError, r"\blimiter\b"),
]


def _adjust(which: str, actual: Any) -> None:
    """Take a fresh grant of (rate limit, semaphore of 3) and adjust one part to ``actual``."""
    rl, sem = T.RateLimit(100, burst=10), T.Semaphore(3)
    g = T.Limits(rl, sem).acquire()
    target = {"rl": rl, "sem": sem, "other": T.Semaphore()}[which]
    try:
        g.adjust(target, actual)
    finally:
        g.release()


@pytest.mark.parametrize(
    ("call", "exc", "names"), [pytest.param(c, e, n, id=i) for i, c, e, n in MISUSE]
)
async def test_bad_argument_raises_a_typed_error_that_names_it(
    call: Callable[[], Any], exc: type[BaseException], names: str
) -> None:
    with pytest.raises(exc) as caught:
        result = call()
        if inspect.isawaitable(result):  # asyncio calls check their arguments when awaited
            await result
    assert type(caught.value) is exc
    assert caught.value.__traceback__ is not None
    assert re.search(names, str(caught.value)), f"{caught.value!s} does not name {names!r}"


def test_misuse_table_is_large_enough() -> None:
    assert len(MISUSE) >= 25


async def test_rejected_calls_change_nothing() -> None:
    ch = corral.Channel(1)
    ch.send_nowait("a")
    for bad in (lambda: ch.send("b", timeout=-1), lambda: ch.recv(ctx="x")):
        with pytest.raises((ValueError, TypeError)):
            await bad()
    assert ch.statistics() == corral.ChannelStatistics(1, 1, 0, 0, False)
    assert ch.recv_nowait() == "a"

    sem = corral.threads.Semaphore(3)
    assert sem.try_acquire(2)
    for bad_call in (
        lambda: sem.release(3),
        lambda: sem.acquire(4),
        lambda: sem.acquire(1, timeout=math.nan),
        lambda: sem.try_acquire(-1),
    ):
        with pytest.raises(ValueError, match=r"\bn\b|timeout"):
            bad_call()
    assert sem.statistics() == corral.SemaphoreStatistics(3, 2, 0, 0)
    sem.release(2)

    ctx = corral.with_cancel(bg())
    with pytest.raises(TypeError):
        ctx.cancel("not an exception")  # type: ignore[arg-type]
    assert not ctx.cancelled
    ctx.cancel()


# --- a task whose event loop has closed ----------------------------------------------------------


@pytest.fixture
def dead_loop() -> Iterator[Callable[[Callable[[], Any], Callable[[], bool]], None]]:
    """``park(op, parked)``: run ``op()`` as a task on a fresh loop until ``parked()``, then close
    the loop with the task still waiting, as a program that exits without cleaning up does."""
    loops: list[asyncio.AbstractEventLoop] = []
    tasks: list[asyncio.Task[Any]] = []
    reports: list[dict[str, Any]] = []

    def park(op: Callable[[], Any], parked: Callable[[], bool]) -> None:
        loop = asyncio.new_event_loop()
        # Destroying the still-pending task makes asyncio report "Task was destroyed but it is
        # pending!": expected here, so it goes to this list instead of the error log.
        loop.set_exception_handler(lambda _loop, context: reports.append(context))
        loops.append(loop)

        async def until_parked() -> None:
            tasks.append(asyncio.ensure_future(op()))
            while not parked():
                await asyncio.sleep(0)

        loop.run_until_complete(until_parked())
        loop.close()

    yield park
    tasks.clear()
    gc.collect()  # destroy the abandoned tasks now, with their handler still in place
    assert all("destroyed but it is pending" in str(r.get("message")) for r in reports)


def test_waiter_left_by_a_closed_loop_is_skipped_and_the_item_goes_to_the_next_receiver(
    dead_loop: Callable[[Callable[[], Any], Callable[[], bool]], None],
) -> None:
    ch = corral.threads.Channel(0)
    dead_loop(ch.as_async().recv, lambda: ch.statistics().waiting_receivers == 1)
    got: list[object] = []
    t = threading.Thread(target=lambda: got.append(ch.recv()))
    t.start()
    try:
        wait_until(lambda: ch.statistics().waiting_receivers == 2, "the thread to wait")
        ch.send_nowait("x")  # the dead task's waiter is first in line: skipped
    finally:
        t.join(10)
    assert got == ["x"]
    assert ch.statistics() == corral.ChannelStatistics(0, 0, 0, 0, False)


@pytest.mark.parametrize("capacity", [0, 1])
def test_waiter_left_by_a_closed_loop_does_not_swallow_an_item(
    dead_loop: Callable[[Callable[[], Any], Callable[[], bool]], None], capacity: int
) -> None:
    ch = corral.Channel(capacity)
    dead_loop(ch.recv, lambda: ch.statistics().waiting_receivers == 1)
    if capacity == 0:
        with pytest.raises(WouldBlock):
            ch.send_nowait("x")  # nobody alive to take it
    else:
        ch.send_nowait("x")
        assert ch.recv_nowait() == "x"  # buffered, not handed to the dead task
    assert ch.statistics().waiting_receivers == 0


def test_sender_left_by_a_closed_loop_delivers_nothing(
    dead_loop: Callable[[Callable[[], Any], Callable[[], bool]], None],
) -> None:
    ch = corral.Channel(0)
    dead_loop(lambda: ch.send("from the dead"), lambda: ch.statistics().waiting_senders == 1)
    with pytest.raises(WouldBlock):
        ch.recv_nowait()  # the dead task's send never happened
    assert ch.statistics().waiting_senders == 0


def test_select_waiter_left_by_a_closed_loop_is_skipped(
    dead_loop: Callable[[Callable[[], Any], Callable[[], bool]], None],
) -> None:
    a, b = corral.Channel(0), corral.Channel(0)
    dead_loop(
        lambda: corral.select(a.recv_case(), b.recv_case()),
        lambda: a.statistics().waiting_receivers == 1,
    )
    with pytest.raises(WouldBlock):
        a.send_nowait("x")
    with pytest.raises(WouldBlock):
        b.send_nowait("y")


def test_semaphore_waiter_left_by_a_closed_loop_is_skipped(
    dead_loop: Callable[[Callable[[], Any], Callable[[], bool]], None],
) -> None:
    sem = corral.Semaphore(2)
    assert sem.try_acquire(2)

    async def acquire() -> None:
        await sem.acquire(2)

    dead_loop(acquire, lambda: sem.statistics().waiting == 1)
    tsem = sem.as_threads()
    t = threading.Thread(target=tsem.acquire, args=(1,))
    t.start()
    try:
        wait_until(lambda: sem.statistics().waiting == 2, "the thread to wait")
        sem.release(2)  # the dead head is skipped; the thread behind it is granted
    finally:
        t.join(10)
    assert sem.statistics() == corral.SemaphoreStatistics(2, 1, 0, 0)
    sem.release(1)


def test_rate_limit_waiter_left_by_a_closed_loop_is_skipped_and_charged_nothing(
    dead_loop: Callable[[Callable[[], Any], Callable[[], bool]], None],
) -> None:
    clock = corral.testing.ManualClock()
    rl = corral.RateLimit(10, clock=clock)
    assert rl.try_acquire()

    async def acquire() -> None:
        await rl.acquire()

    dead_loop(acquire, lambda: rl.statistics().waiting == 1)
    trl = rl.as_threads()
    t = threading.Thread(target=trl.acquire)
    t.start()
    try:
        wait_until(lambda: rl.statistics().waiting == 2, "the thread to wait")
        clock.advance(0.1)  # the dead head is skipped, charged nothing; the thread is granted
    finally:
        t.join(10)
    assert not t.is_alive()
    st = rl.statistics()
    assert (st.granted, st.waiting) == (2, 0)
