"""asyncio-only Group behaviour: the parent task's cancellation, and asyncio's own shapes
(CPython gh-95704, gh-116720) of a cancellation racing a failure."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

import corral
from corral import Cancelled, GroupError

pytestmark = pytest.mark.timeout(30)


class Boom(Exception):
    pass


async def forever() -> None:
    await asyncio.Event().wait()


async def fail(msg: str = "boom") -> None:
    raise Boom(msg)


async def test_failure_cancels_the_body_and_no_cancellation_leaks() -> None:
    task = asyncio.current_task()
    assert task is not None
    reached = False
    with pytest.raises(Boom):
        async with corral.Group() as g:
            await g.go(fail)
            await forever()  # the failure interrupts this, as in asyncio.TaskGroup
            reached = True
    assert not reached
    assert task.cancelling() == 0
    await asyncio.sleep(0)  # a cancellation left pending would be delivered here


async def test_failure_cancels_sibling_tasks() -> None:
    cancelled = asyncio.Event()

    async def sibling() -> None:
        try:
            await forever()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    g = corral.Group()
    with pytest.raises(Boom):
        async with g:
            t = await g.go(sibling)
            await asyncio.sleep(0)
            await g.go(fail)
    assert cancelled.is_set()
    assert t.cancelled()
    assert len(g.errors) == 1  # the sibling's CancelledError is not an error


async def test_outside_cancellation_without_errors_propagates() -> None:
    started = asyncio.Event()
    children_cancelled: list[str] = []

    async def child() -> None:
        started.set()
        try:
            await forever()
        except asyncio.CancelledError:
            children_cancelled.append("child")
            raise

    async def body() -> None:
        async with corral.Group() as g:
            await g.go(child)
            await forever()

    t = asyncio.create_task(body())
    await started.wait()
    t.cancel()
    with pytest.raises(asyncio.CancelledError):
        await t
    assert children_cancelled == ["child"]


async def test_outside_cancel_while_a_child_fails_is_not_lost() -> None:
    """gh-95704: the child's error must be raised, not swallowed by the cancellation;
    gh-116720: and the outside cancellation must still reach the caller."""
    started = asyncio.Event()
    caught: list[BaseException] = []
    after: list[str] = []

    async def child() -> None:
        started.set()
        try:
            await forever()
        except asyncio.CancelledError:
            raise Boom("failed while being cancelled") from None

    async def caller() -> None:
        try:
            async with corral.Group() as g:
                await g.go(child)
                await forever()
        except Boom as e:
            caught.append(e)
        await asyncio.sleep(0)  # the outside cancellation is delivered here
        after.append("not cancelled?")

    t = asyncio.create_task(caller())
    await started.wait()
    t.cancel()
    with pytest.raises(asyncio.CancelledError):
        await t
    assert [str(e) for e in caught] == ["failed while being cancelled"]
    assert after == []


async def test_nested_groups_failing_together_do_not_hang() -> None:
    """gh-116720: an inner group must not swallow the outer group's cancellation."""
    release = asyncio.Event()

    async def fail_on_release(msg: str) -> None:
        await release.wait()
        raise Boom(msg)

    async def open_release() -> None:
        release.set()

    task = asyncio.current_task()
    assert task is not None
    with pytest.raises(Boom) as info:
        async with corral.Group() as outer:
            await outer.go(fail_on_release, "outer")
            async with corral.Group() as inner:
                await inner.go(fail_on_release, "inner")
                await inner.go(open_release)
                await forever()
    assert str(info.value) in {"outer", "inner"}
    assert task.cancelling() == 0
    await asyncio.sleep(0)


async def test_timeout_around_a_group() -> None:
    task = asyncio.current_task()
    assert task is not None
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0):
            async with corral.Group() as g:
                await g.go(forever)
                await forever()
    assert task.cancelling() == 0
    await asyncio.sleep(0)


async def test_group_error_inside_a_timeout_is_not_a_timeout() -> None:
    with pytest.raises(Boom):
        async with asyncio.timeout(60):
            async with corral.Group() as g:
                await g.go(fail)
                await forever()


async def test_cancelled_wait_aborts_the_group_and_still_waits() -> None:
    started = asyncio.Event()
    done: list[str] = []

    async def child() -> None:
        started.set()
        try:
            await forever()
        finally:
            done.append("child finished")

    g = corral.Group()
    await g.go(child)
    await started.wait()
    w = asyncio.create_task(g.wait())
    await asyncio.sleep(0)
    w.cancel()
    with pytest.raises(asyncio.CancelledError):
        await w
    assert done == ["child finished"]
    assert g.statistics().finished


async def test_go_waiting_for_a_slot_is_cancellable() -> None:
    release = asyncio.Event()
    async with corral.Group(limit=1) as g:
        await g.go(release.wait)
        waiter = asyncio.ensure_future(g.go(release.wait))
        await asyncio.sleep(0)
        assert g.statistics().waiting == 1
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert g.statistics().waiting == 0
        release.set()


async def test_plain_function_sees_the_group_context() -> None:
    """A thread cannot be cancelled: it sees g.ctx done, and its task waits for it."""
    in_thread = threading.Event()
    saw: list[bool] = []

    def blocking(g: corral.Group) -> None:
        in_thread.set()
        saw.append(g.ctx.wait_blocking(timeout=10))
        g.ctx.raise_if_cancelled()

    g = corral.Group()
    with pytest.raises(Boom):
        async with g:
            t = await g.go(blocking, g)
            await asyncio.to_thread(in_thread.wait)
            await g.go(fail)
    assert saw == [True]
    assert t.done()
    assert len(g.errors) == 1  # the thread's Cancelled is secondary


async def test_plain_function_returning_a_coroutine_is_an_error() -> None:
    g = corral.Group()
    with pytest.raises(TypeError, match="returned a coroutine"):
        async with g:
            await g.go(lambda: fail())


async def test_go_from_another_loop_is_a_group_error() -> None:
    g = corral.Group()
    async with g:

        def other_loop() -> None:
            async def use() -> None:
                await g.go(forever)

            asyncio.run(use())

        with pytest.raises(GroupError, match="another event loop"):
            await asyncio.to_thread(other_loop)


async def test_go_from_a_worker_while_exiting() -> None:
    seen: list[int] = []

    async def spawner(g: corral.Group, n: int) -> None:
        seen.append(n)
        if n:
            await asyncio.sleep(0)
            await g.go(spawner, g, n - 1)

    async with corral.Group() as g:
        await g.go(spawner, g, 3)
    assert seen == [3, 2, 1, 0]


async def test_no_running_loop_for_try_go() -> None:
    g = corral.Group()

    def sync_call() -> Any:
        return g.try_go(forever)

    with pytest.raises(RuntimeError, match="no running event loop"):
        await asyncio.to_thread(sync_call)


def _run_collecting(main: Any) -> list[str]:
    """asyncio.run with a loop exception handler that records instead of logging."""
    messages: list[str] = []

    async def wrapper() -> None:
        asyncio.get_running_loop().set_exception_handler(
            lambda loop, ctx: messages.append(str(ctx.get("message")))
        )
        await main()

    with asyncio.Runner() as runner:
        try:
            runner.run(wrapper())
        finally:
            runner.get_loop().set_exception_handler(
                lambda loop, ctx: messages.append(str(ctx.get("message")))
            )
    return messages


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_keyboard_interrupt_in_a_worker_propagates_and_cancels_everything(
    exc_type: type[BaseException],
) -> None:
    """asyncio re-raises these out of the event loop at once (Task.__step); the group
    cancels every sibling and raises it again, exactly as asyncio.TaskGroup does."""
    cancelled: list[str] = []

    async def sibling() -> None:
        try:
            await forever()
        except asyncio.CancelledError:
            cancelled.append("sibling")
            raise

    async def interrupt() -> None:
        await asyncio.sleep(0)
        raise exc_type()

    async def main() -> None:
        async with corral.Group() as g:
            await g.go(sibling)
            await g.go(interrupt)
            await forever()

    with pytest.raises(exc_type):
        _run_collecting(main)
    assert cancelled == ["sibling"]


async def test_cancelled_error_from_a_plain_worker_is_secondary() -> None:
    g = corral.Group()
    ctx = g.ctx

    def coop() -> None:
        ctx.wait_blocking(10)
        ctx.raise_if_cancelled()

    with pytest.raises(Boom):
        async with g:
            await g.go(coop)
            await g.go(fail)
    assert [type(e) for e in g.errors] == [Boom]
    assert isinstance(g.ctx.err, Cancelled)
