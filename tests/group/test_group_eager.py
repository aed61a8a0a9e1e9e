"""``corral.Group`` and ``corral.SingleFlight`` under ``asyncio.eager_task_factory`` (3.12+).

An eager task runs its first step inside ``loop.create_task()``, before the call returns:
whatever corral registers about a task *after* creating it is missing while that first step
runs. These tests set the factory on the test's own loop, so they run in every CI lane; the
whole asyncio suite also runs eagerly with ``CORRAL_TASK_FACTORY=eager`` (tests/conftest.py).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import corral
from corral import GroupError

pytestmark = [
    pytest.mark.timeout(20),
    pytest.mark.skipif(
        not hasattr(asyncio, "eager_task_factory"), reason="asyncio.eager_task_factory is 3.12+"
    ),
]


@pytest.fixture(params=["eager", "default"])
def factory(request: pytest.FixtureRequest) -> str:
    """The task factory the test sets on its loop (the default one as the reference)."""
    param: str = request.param
    return param


def _use(factory: str) -> None:
    if factory == "eager":
        loop = asyncio.get_running_loop()
        if type(loop).__module__.startswith("uvloop"):
            # uvloop's create_task passes eager_start=, which eager_task_factory takes
            # only from 3.14 (and there uvloop starts the task lazily all the same).
            pytest.skip("asyncio.eager_task_factory does not run on uvloop")
        loop.set_task_factory(asyncio.eager_task_factory)  # type: ignore[attr-defined,unused-ignore]


async def test_a_worker_waiting_for_its_own_group_raises_at_once(factory: str) -> None:
    # It hung under the eager factory (the task was not yet known as a worker when its
    # first step called wait()), and the hang outlived a wait_for around the block.
    _use(factory)
    seen: list[BaseException] = []

    async def waits_for_its_group(g: corral.Group) -> None:
        try:
            await g.wait()
        except GroupError as exc:
            seen.append(exc)
            raise

    async def block() -> None:
        async with corral.Group() as g:
            await g.go(waits_for_its_group, g)

    with pytest.raises(GroupError, match="own workers"):
        await asyncio.wait_for(block(), 10)
    assert len(seen) == 1


async def test_a_worker_waiting_for_its_own_group_after_a_slot_wait(factory: str) -> None:
    # The same, for a worker started later by a finishing one (a handed-over slot).
    _use(factory)
    gate = asyncio.Event()

    async def first() -> None:
        await gate.wait()

    async def waits_for_its_group(g: corral.Group) -> None:
        await g.wait()

    async def block() -> None:
        async with corral.Group(limit=1) as g:
            await g.go(first)
            pending = g.go(waits_for_its_group, g)
            gate.set()
            await pending

    with pytest.raises(GroupError, match="own workers"):
        await asyncio.wait_for(block(), 10)


async def test_workers_that_finish_in_their_first_step(factory: str) -> None:
    _use(factory)

    async def square(n: int) -> int:
        return n * n

    async with corral.Group(limit=3) as g:
        tasks = [await g.go(square, n) for n in range(20)]
    assert [t.result() for t in tasks] == [n * n for n in range(20)]
    assert g.statistics().running == 0


async def test_a_worker_failing_in_its_first_step_cancels_the_rest(factory: str) -> None:
    _use(factory)
    cancelled = asyncio.Event()

    async def sibling() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def fail() -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        async with corral.Group() as g:
            await g.go(sibling)
            await g.go(fail)
            await asyncio.Event().wait()  # the failure cancels the body
    assert cancelled.is_set()
    assert g.statistics().running == 0


async def test_a_worker_starting_workers_in_its_first_step(factory: str) -> None:
    _use(factory)
    done: list[int] = []

    async def leaf(n: int) -> None:
        done.append(n)

    async def spawner(g: corral.Group) -> None:
        for n in range(5):
            await g.go(leaf, n)

    async with corral.Group(limit=2) as g:
        await g.go(spawner, g)
    assert sorted(done) == list(range(5))


async def test_singleflight_call_that_finishes_in_its_first_step(factory: str) -> None:
    _use(factory)
    sf: corral.SingleFlight[str, int] = corral.SingleFlight()
    calls = 0

    async def load() -> int:
        nonlocal calls
        calls += 1
        return 7

    assert await asyncio.wait_for(sf.do("k", load), 10) == 7
    assert await asyncio.wait_for(sf.do_shared("k", load), 10) == (7, False)
    ch = sf.do_chan("k", load)
    assert (await ch.recv(timeout=10)).value == 7
    assert calls == 3
    assert sf.statistics().in_flight == 0


async def test_singleflight_shares_a_call_that_parks(factory: str) -> None:
    _use(factory)
    sf: corral.SingleFlight[str, int] = corral.SingleFlight()
    gate = asyncio.Event()
    calls = 0

    async def load() -> int:
        nonlocal calls
        calls += 1
        await gate.wait()
        return 7

    async def caller() -> Any:
        return await sf.do("k", load)

    callers = [asyncio.ensure_future(caller()) for _ in range(5)]
    await asyncio.sleep(0)
    gate.set()
    assert await asyncio.wait_for(asyncio.gather(*callers), 10) == [7] * 5
    assert calls == 1


async def test_a_cancellation_during_a_first_step_reaches_that_worker(factory: str) -> None:
    # The worker's first step cancels the group's parent Context: the group cancels its
    # tasks while this one is still being created (not yet one of them, under the eager
    # factory); it must be cancelled all the same, or the block waits for it forever.
    _use(factory)
    parent = corral.with_cancel(corral.background())
    stopped = asyncio.Event()

    async def cancels_then_waits() -> None:
        parent.cancel()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            stopped.set()
            raise

    with pytest.raises(corral.Cancelled):
        async with corral.Group(ctx=parent) as g:
            await g.go(cancels_then_waits)
    assert stopped.is_set()
