"""``g.go(fn)`` without ``await`` in the asyncio Group: it works, or the block fails loudly.

``asyncio.TaskGroup.create_task`` is synchronous, so ``g.go(fetch, url)`` without ``await`` is
the first thing a TaskGroup user types. With no limit, or a slot free, ``go()`` starts the task
at the call and returns an awaitable that is already done; under a limit with no slot free,
the call does nothing until it is awaited, and one never awaited makes the group's exit raise
``GroupError`` naming the function. Neither emits a "coroutine was never awaited" warning.
"""

from __future__ import annotations

import asyncio
import gc
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

import corral
from corral import Cancelled, GroupError

pytestmark = pytest.mark.timeout(30)


class Boom(Exception):
    pass


async def work(log: list[str], name: str) -> str:
    await asyncio.sleep(0)
    log.append(name)
    return name


async def fetch(log: list[str], name: str) -> None:
    log.append(name)


async def hold(gate: asyncio.Event) -> None:
    await gate.wait()


@contextmanager
def no_warnings() -> Iterator[None]:
    """Fail if the block (or collecting its garbage) emits any warning, in particular
    "coroutine ... was never awaited" (a RuntimeWarning from a finalizer)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
        gc.collect()
    assert [str(w.message) for w in caught] == []


async def test_go_without_await_runs_the_work_when_there_is_no_limit() -> None:
    log: list[str] = []
    with no_warnings():
        async with corral.Group() as g:
            g.go(work, log, "a")
            g.go(work, log, "b")
            assert g.statistics().running == 2  # started at the call, like create_task
    assert sorted(log) == ["a", "b"]


async def test_go_without_await_runs_the_work_when_a_slot_is_free() -> None:
    log: list[str] = []
    with no_warnings():
        async with corral.Group(limit=2) as g:
            g.go(work, log, "a")
            g.go(work, log, "b")
            assert g.statistics().running == 2
    assert sorted(log) == ["a", "b"]


async def test_go_started_at_the_call_gives_its_task_when_awaited_later() -> None:
    log: list[str] = []
    async with corral.Group() as g:
        started = g.go(work, log, "a")
        assert g.statistics().running == 1
        task = await started  # already done: no suspension, the same task
        assert isinstance(task, asyncio.Task)
        assert not task.done()
    assert task.result() == "a"


async def test_go_never_awaited_that_had_to_wait_for_a_slot_fails_the_block() -> None:
    log: list[str] = []
    gate = asyncio.Event()
    with no_warnings(), pytest.raises(GroupError) as caught:
        async with corral.Group(limit=1) as g:
            g.go(hold, gate)  # takes the only slot, at the call
            g.go(fetch, log, "x")  # must wait: nothing happens without await
            g.go(fetch, log, "y")
            assert g.statistics().waiting == 0  # not in line either
            gate.set()
    message = str(caught.value)
    assert "2 Group.go() calls were never awaited" in message
    assert "go(fetch) x2" in message
    assert "await g.go" in message
    assert log == []  # their work never ran
    assert g.errors == (caught.value,)


async def test_go_never_awaited_fails_wait_too_and_the_failure_is_sticky() -> None:
    gate = asyncio.Event()
    log: list[str] = []
    g = corral.Group(limit=1)
    await g.go(hold, gate)
    g.go(fetch, log, "x")
    gate.set()
    with pytest.raises(GroupError, match=r"1 Group.go\(\) call was never awaited: go\(fetch\)"):
        await g.wait()
    with pytest.raises(GroupError, match="never awaited"):
        await g.wait()
    assert log == []


async def test_go_awaited_later_waits_for_its_slot_then_runs() -> None:
    log: list[str] = []
    gate = asyncio.Event()
    async with corral.Group(limit=1) as g:
        await g.go(hold, gate)
        first = g.go(work, log, "first")
        second = g.go(work, log, "second")
        assert g.statistics().running == 1
        gate.set()
        t1 = await first
        t2 = await second  # waits until "first" ends and hands its slot back
        assert g.statistics().running == 1
    assert log == ["first", "second"]
    assert (t1.result(), t2.result()) == ("first", "second")


async def test_go_waiting_for_a_slot_can_be_gathered() -> None:
    log: list[str] = []
    async with corral.Group(limit=1) as g:
        tasks = await asyncio.gather(*(g.go(work, log, str(i)) for i in range(4)))
    assert log == ["0", "1", "2", "3"]
    assert [t.result() for t in tasks] == ["0", "1", "2", "3"]


async def test_go_not_awaited_because_the_body_raised_is_not_reported() -> None:
    # The body's own error is the story: the go() it never reached awaiting is not an
    # extra error (its work did not run, as nothing after a raise runs).
    gate = asyncio.Event()
    with pytest.raises(Boom):
        async with corral.Group(limit=1) as g:
            g.go(hold, gate)
            g.go(fetch, [], "x")
            gate.set()
            raise Boom
    assert len(g.errors) == 1


async def test_go_never_awaited_after_a_worker_failed_leaves_the_worker_error_first() -> None:
    gate = asyncio.Event()

    async def fail_when_released() -> None:
        await gate.wait()
        raise Boom("worker")

    g = corral.Group(limit=1)
    await g.go(fail_when_released)
    g.go(fetch, [], "x")
    gate.set()
    with pytest.raises(Boom, match="worker") as caught:
        await g.wait()
    assert [type(e) for e in g.errors] == [Boom, GroupError]
    assert any("1 more worker error" in note for note in caught.value.__notes__)


async def test_go_awaited_after_the_group_failed_is_refused() -> None:
    gate = asyncio.Event()

    async def fail_when_released() -> None:
        await gate.wait()
        raise Boom("worker")

    g = corral.Group(limit=1)
    await g.go(fail_when_released)
    pending = g.go(fetch, [], "x")
    gate.set()
    await asyncio.sleep(0)  # the worker runs and fails the group
    with pytest.raises(Cancelled) as caught:
        await pending
    assert isinstance(caught.value.cause, Boom)
    with pytest.raises(Boom):
        await g.wait()


async def test_go_awaited_after_the_group_finished_raises_group_error() -> None:
    gate = asyncio.Event()
    g = corral.Group(limit=1)
    await g.go(hold, gate)
    pending = g.go(fetch, [], "x")
    gate.set()
    with pytest.raises(GroupError, match="never awaited"):
        await g.wait()
    with pytest.raises(GroupError, match="finished"):
        await pending


async def test_go_checks_its_arguments_at_the_call() -> None:
    async with corral.Group(limit=1) as g:
        with pytest.raises(TypeError, match=r"\bfn\b"):
            g.go(5)  # type: ignore[call-overload]
    g2 = corral.Group()
    await g2.wait()
    with pytest.raises(GroupError, match="finished"):
        g2.go(fetch, [], "late")  # refused at the call, awaited or not


async def test_cancelling_a_go_waiting_for_a_slot_takes_nothing_and_is_not_reported() -> None:
    gate = asyncio.Event()
    log: list[str] = []
    async with corral.Group(limit=1) as g:
        await g.go(hold, gate)
        waiter: asyncio.Future[Any] = asyncio.ensure_future(g.go(fetch, log, "x"))
        while g.statistics().waiting == 0:
            await asyncio.sleep(0)  # let the waiter's first step run: it is then in line
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert g.statistics().waiting == 0
        assert not g.try_go(fetch, log, "y")  # hold still has the slot
        gate.set()
        await g.go(fetch, log, "y")  # the slot hold gives back comes here
    assert log == ["y"]


# -- the slot handover: a worker that returns starts the task of the go() waiting in line --


async def test_go_handed_a_slot_whose_function_cannot_be_called_raises_there() -> None:
    gate = asyncio.Event()

    async def one_arg(x: int) -> None:
        await asyncio.sleep(0)

    async with corral.Group(limit=1) as g:
        await g.go(hold, gate)
        bad = asyncio.ensure_future(g.go(one_arg))  # type: ignore[arg-type,call-arg]
        while g.statistics().waiting == 0:
            await asyncio.sleep(0)
        gate.set()
        with pytest.raises(TypeError):
            await bad
        assert g.statistics().running == 0  # the slot came back
        task = await g.go(one_arg, 1)  # and is usable
    assert task.done()
    assert g.errors == ()  # a call that could not start is the caller's error, not a worker's


async def test_go_cancelled_after_its_task_was_started_for_it_keeps_the_task_running() -> None:
    gate = asyncio.Event()
    log: list[str] = []
    async with corral.Group(limit=1) as g:
        holder = await g.go(hold, gate)
        waiter = asyncio.ensure_future(g.go(work, log, "handed"))
        while g.statistics().waiting == 0:
            await asyncio.sleep(0)
        # Runs right after the group's own done callback, which handed the slot to the
        # waiting go() and started its task: the cancellation comes too late to undo that.
        holder.add_done_callback(lambda _: waiter.cancel())
        gate.set()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert g.statistics().running == 1  # the handed task runs, holding the one slot
        assert not g.try_go(fetch, log, "no room")
    assert log == ["handed"]
    assert g.statistics().running == 0


async def test_using_a_waiting_go_without_await_as_a_task_names_go_and_await() -> None:
    """Issue 17: ``t = g.go(fn)`` under a full limit, then ``t.result()`` ended in
    "'generator' object has no attribute 'result'", naming neither ``go`` nor ``await``."""
    gate = asyncio.Event()
    log: list[str] = []
    with pytest.raises(AttributeError) as info:
        async with corral.Group(limit=1) as g:
            g.go(hold, gate)  # takes the one slot
            task = g.go(work, log, "late")  # must wait: does nothing until awaited
            try:
                task.result()  # type: ignore[attr-defined]
            finally:
                gate.set()
    message = str(info.value)
    assert "go(work)" in message, message
    assert "await g.go(" in message, message
