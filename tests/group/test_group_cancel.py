"""``Group.cancel()`` in both flavours, with the semantics 3.15 gave ``asyncio.TaskGroup.cancel()``:
an early exit that is not an error, idempotent, usable before entry and after exit."""

from __future__ import annotations

import asyncio
import threading

import pytest

import corral
import corral.threads

pytestmark = pytest.mark.timeout(30)


class Boom(Exception):
    pass


async def forever() -> None:
    await asyncio.Event().wait()


# --- asyncio ------------------------------------------------------------------------------


async def test_cancel_from_the_body_ends_the_block_without_an_error() -> None:
    task = asyncio.current_task()
    assert task is not None
    stopped = asyncio.Event()
    reached = False

    async def worker() -> None:
        try:
            await forever()
        except asyncio.CancelledError:
            stopped.set()
            raise

    async with corral.Group() as g:
        t = await g.go(worker)
        await asyncio.sleep(0)
        g.cancel()
        g.cancel()  # idempotent
        await forever()  # interrupted, as TaskGroup.cancel() interrupts its body
        reached = True
    assert not reached
    assert stopped.is_set()
    assert t.cancelled()
    assert g.ctx.cancelled
    assert task.cancelling() == 0
    g.cancel()  # after exit: nothing happens
    await asyncio.sleep(0)  # no cancellation left pending


async def test_cancel_from_a_worker_stops_siblings_and_the_body() -> None:
    reached = False

    async def stopper(g: corral.Group) -> str:
        g.cancel()  # this worker is one of the group's tasks: cancelled too, as in TaskGroup
        return "done"

    async with corral.Group() as g:
        sibling = await g.go(forever)
        s = await g.go(stopper, g)
        await forever()
        reached = True
    assert not reached
    assert sibling.cancelled()
    # Cancelled as it returns (TaskGroup does the same); under an eager task factory it
    # returned within create_task, before the group knew it: its result stands.
    assert s.cancelled() or s.result() == "done"


async def test_cancel_before_entry_cancels_on_entry() -> None:
    g = corral.Group()
    g.cancel()
    reached = False
    async with g:
        with pytest.raises(corral.Cancelled):
            await g.go(forever)  # the group refuses new work
        await forever()
        reached = True
    assert not reached
    g2 = corral.Group()
    g2.cancel()
    async with g2:
        await g2.go(forever)  # the refusal itself, unhandled, ends the block quietly


async def test_cancel_aborts_go_waiting_for_a_slot() -> None:
    async with corral.Group(limit=1) as g:
        await g.go(forever)
        waiting = asyncio.ensure_future(g.go(forever))
        await asyncio.sleep(0)
        assert g.statistics().waiting == 1
        g.cancel()
        with pytest.raises(corral.Cancelled):
            await waiting


async def test_cancel_in_wait_style_returns_from_wait() -> None:
    g = corral.Group()
    t = await g.go(forever)
    g.cancel()
    await g.wait()  # no error: the group was asked to stop
    assert t.cancelled()


async def test_cancel_keeps_an_earlier_error() -> None:
    async def fail() -> None:
        raise Boom("first")

    with pytest.raises(Boom, match="first"):
        async with corral.Group() as g:
            await g.go(fail)
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            g.cancel()


async def test_cancel_from_another_thread() -> None:
    async with corral.Group() as g:
        t = await g.go(forever)
        th = threading.Thread(target=g.cancel)
        th.start()
        await forever()
    th.join()
    assert t.cancelled()


async def test_an_outside_cancellation_still_propagates_after_cancel() -> None:
    task = asyncio.current_task()
    assert task is not None

    async def body() -> None:
        async with corral.Group() as g:
            await g.go(forever)
            g.cancel()
            task_ = asyncio.current_task()
            assert task_ is not None
            task_.cancel()  # and someone else cancels us too
            await forever()

    inner = asyncio.ensure_future(body())
    with pytest.raises(asyncio.CancelledError):
        await inner
    assert task.cancelling() == 0


# --- threads ------------------------------------------------------------------------------


def test_threads_cancel_from_the_body_stops_workers_without_an_error() -> None:
    seen = []

    def worker(g: corral.threads.Group) -> None:
        g.ctx.wait_blocking(10)  # a thread stops when it looks: here it waits for g.ctx
        seen.append(g.ctx.cancelled)

    with corral.threads.Group() as g:
        f = g.go(worker, g)
        g.cancel()
        g.cancel()
        g.go(worker, g)  # refused with Cancelled, swallowed by the block
        raise AssertionError("not reached")  # pragma: no cover
    assert seen == [True]
    assert f.result() is None
    g.cancel()  # after exit: nothing happens


def test_threads_cancel_before_entry_and_from_a_worker() -> None:
    g = corral.threads.Group()
    g.cancel()
    with g, pytest.raises(corral.Cancelled):
        g.go(print)
    assert g.ctx.cancelled

    def stopper(g: corral.threads.Group) -> None:
        g.cancel()

    with corral.threads.Group(limit=1) as g2:
        g2.go(stopper, g2)
    assert g2.ctx.cancelled


def test_threads_cancel_aborts_go_waiting_for_a_slot() -> None:
    started = threading.Event()

    def holder(g: corral.threads.Group) -> None:
        started.set()
        g.ctx.wait_blocking(10)

    outcome: list[BaseException] = []
    with corral.threads.Group(limit=1) as g:
        g.go(holder, g)
        started.wait(10)

        def blocked_go() -> None:
            try:
                g.go(print)
            except BaseException as exc:
                outcome.append(exc)

        th = threading.Thread(target=blocked_go)
        th.start()
        while g.statistics().waiting == 0 and th.is_alive():
            th.join(0.001)
        g.cancel()
        th.join(10)
    assert len(outcome) == 1
    assert isinstance(outcome[0], corral.Cancelled)


def test_threads_cancel_keeps_a_worker_error() -> None:
    def fail() -> None:
        raise Boom("worker")

    with pytest.raises(Boom, match="worker"), corral.threads.Group() as g:
        f = g.go(fail)
        f.exception(10)
        g.cancel()
    g = corral.threads.Group()
    g.cancel()
    g.wait()  # wait-style: nothing to raise
