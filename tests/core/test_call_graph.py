"""The asyncio call graph (3.14+: ``asyncio.capture_call_graph``, ``python -m asyncio pstree``)
sees who awaits whom through corral: a Group's body awaits its workers, a SingleFlight's
callers await the flight's task, and a task parked in a channel, semaphore or ``go()`` shows
the frames down to the corral call it is parked in."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import pytest

import corral

pytestmark = [
    pytest.mark.timeout(30),
    pytest.mark.skipif(sys.version_info < (3, 14), reason="asyncio's call graph is 3.14+"),
]


def _awaiters(fut: asyncio.Future[Any]) -> set[asyncio.Future[Any]]:
    graph = asyncio.capture_call_graph(fut)  # type: ignore[attr-defined,unused-ignore]
    assert graph is not None
    return {g.future for g in graph.awaited_by}


def _frames(task: asyncio.Task[Any]) -> list[str]:
    graph = asyncio.capture_call_graph(task)  # type: ignore[attr-defined,unused-ignore]
    assert graph is not None
    return [entry.frame.f_code.co_name for entry in graph.call_stack]


async def _until_parked(task: asyncio.Task[Any], *names: str) -> list[str]:
    # Parked = its call stack reaches the corral call; a few loop turns at most.
    for _ in range(100):
        frames = _frames(task)
        if all(n in frames for n in names):
            return frames
        await asyncio.sleep(0)
    raise AssertionError(f"{task!r} never parked in {names}: {_frames(task)}")


async def test_a_groups_workers_are_awaited_by_its_body() -> None:
    body = asyncio.current_task()
    assert body is not None
    gate = asyncio.Event()
    async with corral.Group() as g:
        workers = [await g.go(gate.wait) for _ in range(3)]
        for w in workers:
            assert body in _awaiters(w)
        gate.set()
    for w in workers:
        assert body not in _awaiters(w)  # withdrawn once the worker is done


async def test_wait_style_declares_the_waiting_task_for_the_wait() -> None:
    gate = asyncio.Event()
    g = corral.Group()
    worker = await g.go(gate.wait)
    me = asyncio.current_task()
    assert me is not None

    async def waiter() -> None:
        await g.wait()

    w = asyncio.ensure_future(waiter())
    await _until_parked(w, "wait")
    assert w in _awaiters(worker)
    gate.set()
    await w
    assert w not in _awaiters(worker)


async def test_singleflight_callers_await_the_flight_task() -> None:
    sf: corral.SingleFlight[str, int] = corral.SingleFlight()
    gate = asyncio.Event()
    flight: list[asyncio.Task[Any]] = []

    async def load() -> int:
        task = asyncio.current_task()
        assert task is not None
        flight.append(task)
        await gate.wait()
        return 1

    callers = [asyncio.ensure_future(sf.do("k", load)) for _ in range(2)]
    callers.append(asyncio.ensure_future(sf.do_shared("k", load)))  # type: ignore[arg-type]
    for _ in range(100):  # a few loop turns: the callers join, the flight starts
        if flight and _awaiters(flight[0]) == set(callers):
            break
        await asyncio.sleep(0)
    assert len(flight) == 1
    assert _awaiters(flight[0]) == set(callers)
    callers[0].cancel()  # a caller that leaves is no longer an awaiter
    with pytest.raises(asyncio.CancelledError):
        await callers[0]
    assert _awaiters(flight[0]) == set(callers[1:])
    gate.set()
    await asyncio.gather(*callers[1:])


async def test_tasks_parked_in_a_channel_a_semaphore_and_go_show_where() -> None:
    ch: corral.Channel[int] = corral.Channel()
    sem = corral.Semaphore(1)
    await sem.acquire(1)

    async def receiver() -> int:
        return await ch.recv()

    async def acquirer() -> None:
        await sem.acquire(1)
        sem.release(1)

    async with corral.Group(limit=1) as g:
        gate = asyncio.Event()
        await g.go(gate.wait)

        async def goer() -> None:
            await g.go(gate.wait)

        tasks = [asyncio.ensure_future(f()) for f in (receiver, acquirer, goer)]
        assert "recv" in await _until_parked(tasks[0], "receiver", "recv")
        await _until_parked(tasks[1], "acquirer")
        await _until_parked(tasks[2], "goer")
        me = asyncio.current_task()
        for t in tasks:
            # asyncio sees each parked task await a future of corral's (the waiter).
            graph = asyncio.capture_call_graph(t)  # type: ignore[attr-defined,unused-ignore]
            assert graph is not None
            assert t is not me
        ch.send_nowait(1)
        sem.release(1)
        gate.set()
        await asyncio.gather(*tasks)
