"""Thread-only Group behaviour: the pool, cooperative cancellation, interrupts."""

from __future__ import annotations

import threading
import time

import pytest

import corral
import corral.threads
from corral import Cancelled

pytestmark = pytest.mark.timeout(30)


class Boom(Exception):
    pass


def _group_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("corral-group")]


def test_no_thread_outlives_the_block() -> None:
    with corral.threads.Group() as g:
        for _ in range(20):
            g.go(time.sleep, 0)
    assert _group_threads() == []


def test_threads_are_reused() -> None:
    idents: set[int] = set()
    with corral.threads.Group(limit=1) as g:
        for _ in range(50):
            g.go(lambda: idents.add(threading.get_ident()))
    # One slot: each worker starts after the previous one returned, in its thread.
    assert len(idents) <= 2


def test_interrupt_in_the_body_cancels_workers() -> None:
    stopped = threading.Event()
    started = threading.Event()

    def worker(ctx: corral.Context) -> None:
        started.set()
        ctx.wait_blocking()
        stopped.set()
        ctx.raise_if_cancelled()

    g = corral.threads.Group()
    with pytest.raises(KeyboardInterrupt), g:
        g.go(worker, g.ctx)
        started.wait()
        raise KeyboardInterrupt  # as Ctrl-C would, in the main thread
    assert stopped.is_set()
    assert isinstance(g.ctx.cause, KeyboardInterrupt)


def test_go_blocked_on_the_limit_in_another_thread_is_aborted() -> None:
    release = threading.Event()
    outcome: list[BaseException] = []
    g = corral.threads.Group(limit=1)

    def submitter() -> None:
        try:
            g.go(print, "never")
        except BaseException as e:
            outcome.append(e)

    def hold_then_fail() -> None:
        release.wait()
        raise Boom

    with pytest.raises(Boom), g:
        g.go(hold_then_fail)
        t = threading.Thread(target=submitter)
        t.start()
        while g.statistics().waiting != 1:
            time.sleep(0.001)  # wait until the submitter is queued for the slot
        release.set()
        t.join()
    assert len(outcome) == 1
    assert isinstance(outcome[0], Cancelled)
    assert isinstance(outcome[0].cause, Boom)


def test_wait_from_several_threads() -> None:
    release = threading.Event()
    g = corral.threads.Group()
    g.go(release.wait)
    errors: list[BaseException] = []

    def waiter() -> None:
        try:
            g.wait()
        except BaseException as e:
            errors.append(e)

    ts = [threading.Thread(target=waiter) for _ in range(3)]
    for t in ts:
        t.start()
    release.set()
    for t in ts:
        t.join()
    assert errors == []
    assert g.statistics().finished


def test_future_is_resolved_when_wait_returns() -> None:
    g = corral.threads.Group()
    futs = [g.go(pow, i, 2) for i in range(100)]
    g.wait()
    assert all(f.done() for f in futs)
    assert [f.result() for f in futs] == [i * i for i in range(100)]


def test_workers_share_a_channel_with_tasks() -> None:
    """A thread group feeding a corral Channel that an event loop drains."""
    import asyncio

    ch: corral.Channel[int] = corral.Channel(4)

    async def consume() -> list[int]:
        return [x async for x in ch]

    def produce(n: int) -> None:
        ch.as_threads().send(n)

    with asyncio.Runner() as runner:
        out: list[int] = []
        consumer = threading.Thread(target=lambda: out.extend(runner.run(consume())))
        consumer.start()
        with corral.threads.Group(limit=3) as g:
            for i in range(20):
                g.go(produce, i)
        ch.close()
        consumer.join()
    assert sorted(out) == list(range(20))
