"""A parked plain operation's waiter is its own queue entry: no second object, no cycle.

The waiter of a channel send/receive or a semaphore acquire is queued in its primitive
itself (``Waiter.item`` / ``Waiter.owner``). These tests pin down what that must keep:
the waiter of a completed operation is freed by reference counting as soon as the
operation is over, never left for the cyclic garbage collector, and a cancelled one
leaves its queue at once.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

import corral
import corral.threads


@pytest.fixture
def no_gc() -> Iterator[None]:
    """Cyclic GC off, so only reference counting can free a waiter."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


async def _park(task_fn: Any, queue: Any) -> tuple[asyncio.Task[Any], weakref.ref[Any]]:
    task = asyncio.create_task(task_fn())
    await asyncio.sleep(0)  # the task runs up to its park
    assert len(queue) == 1
    w = queue[0]
    assert w.waiter is w  # its own entry
    assert w.owner is not None
    return task, weakref.ref(w)


async def test_completed_recv_waiter_is_freed_by_refcount(no_gc: None) -> None:
    ch: corral.Channel[str] = corral.Channel(0)
    task, ref = await _park(ch.recv, ch._st.recvq)
    await ch.send("x")
    assert await task == "x"
    del task
    assert ref() is None


async def test_completed_send_waiter_is_freed_by_refcount(no_gc: None) -> None:
    ch: corral.Channel[str] = corral.Channel(0)
    task, ref = await _park(lambda: ch.send("x"), ch._st.sendq)
    assert ch._st.sendq[0].item == "x"
    assert await ch.recv() == "x"
    await task
    del task
    assert ref() is None


async def test_cancelled_acquire_leaves_the_queue_at_once() -> None:
    sem = corral.Semaphore(2)
    await sem.acquire(2)

    async def acquire2() -> None:
        await sem.acquire(2)

    task, _ = await _park(acquire2, sem._st.waiters)
    w = sem._st.waiters[0]
    assert w.item == 2  # the weight it asks for
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sem.statistics().waiting == 0
    assert len(sem._st.waiters) == 0  # unlinked, not merely marked done
    assert w.done
    assert w.owner is None  # unlinked: it refers to no queue any more
    sem.release(2)
    assert sem.statistics().held == 0


async def test_granted_acquire_waiter_is_freed_by_refcount(no_gc: None) -> None:
    sem = corral.Semaphore(1)
    await sem.acquire()

    async def acquire1() -> None:
        await sem.acquire()

    task, ref = await _park(acquire1, sem._st.waiters)
    sem.release()
    await task
    assert sem.statistics().held == 1
    del task
    assert ref() is None
    sem.release()


def test_thread_recv_waiter_is_freed_by_refcount(no_gc: None) -> None:
    ch: corral.threads.Channel[int] = corral.threads.Channel(0)
    got: list[int] = []
    t = threading.Thread(target=lambda: got.append(ch.recv()))
    t.start()
    st = ch._st
    while not st.recvq:  # the receiver parks: the only way on is our send
        threading.Event().wait(0.001)
    ref = weakref.ref(st.recvq[0])
    ch.send(7)
    t.join(10)
    assert got == [7]
    assert ref() is None
