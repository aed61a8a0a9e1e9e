"""A cancellation that races the delivery of a SingleFlight's result is never swallowed.

The strict rule (docs/design.md, "The cancellation rule"): a cancelled call either had no
effect and raises, or completed and returns its result, and then the cancellation is raised
at the task's next await. Issue 17 found ``SingleFlight.do`` breaking it: its fast path (no
``timeout``, no ``ctx``) had its own copy of ``park()``'s rule that did not record the owed
cancellation, so the task went on as if never cancelled.

The race is set up exactly: the flight finishes (the waiting task's future is resolved and
its wake-up queued), and only then, before the task runs again, is it cancelled.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import corral
import corral.threads

pytestmark = pytest.mark.timeout(30)


async def _value(shared: Awaitable[corral.FlightResult[int]]) -> int:
    return (await shared).value


def _callers(
    sf: corral.SingleFlight[str, int],
) -> dict[str, Callable[[Callable[[], Awaitable[int]]], Awaitable[Any]]]:
    async def do_chan(fn: Callable[[], Awaitable[int]]) -> Any:
        return (await sf.do_chan("k", fn).recv()).value

    return {
        "do": lambda fn: sf.do("k", fn),
        "do_shared": lambda fn: _value(sf.do_shared("k", fn)),
        "do timeout": lambda fn: sf.do("k", fn, timeout=60),
        "do ctx": lambda fn: sf.do("k", fn, ctx=corral.background()),
        "do_chan": do_chan,
    }


@pytest.mark.parametrize("call", ["do", "do_shared", "do timeout", "do ctx", "do_chan"])
async def test_cancel_after_the_result_was_delivered_is_raised_at_the_next_await(
    call: str,
) -> None:
    sf: corral.SingleFlight[str, int] = corral.SingleFlight()
    gate = asyncio.Event()
    got: list[Any] = []
    after: list[str] = []

    async def fn() -> int:
        await gate.wait()
        return 42

    async def caller() -> None:
        got.append(await _callers(sf)[call](fn))
        await asyncio.sleep(0)  # the next await: the cancellation must land here
        after.append("ran on")

    task = asyncio.create_task(caller())
    while sf.statistics().waiters == 0:  # parked in the flight
        await asyncio.sleep(0)
    gate.set()
    # The flight runs before this task does again: it returns and resolves the caller's
    # future, queueing the caller's wake-up behind this task.
    while sf.statistics().in_flight:
        await asyncio.sleep(0)
    assert got == []  # delivered, not yet run: the race is set
    assert task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert after == [], f"{call}: the cancellation was swallowed (the task ran on)"
    assert task.cancelled()
    if call != "do_chan":
        assert got == [42]  # the result stood: the call completed
    # do_chan's channel receives one callback later than the waiter: cancelled before
    # that, the receive had no effect (and raised), which the rule allows too.
    assert got in ([], [42])


def test_thread_do_cancelled_by_ctx_after_delivery_returns_and_the_next_call_raises() -> None:
    """Threads: the "cancellation" is the caller's Context. Delivered first, the result
    stands; the cancelled Context then makes the thread's next blocking call raise."""
    sf: corral.threads.SingleFlight[str, int] = corral.threads.SingleFlight()
    ctx = corral.with_cancel(corral.background())
    release = threading.Event()
    results: list[Any] = []

    def fn() -> int:
        release.wait(10)
        return 42

    def caller() -> None:
        results.append(sf.do("k", fn, ctx=ctx))
        ctx.cancel()  # cancelled after delivery, before the next call
        try:
            sf.do("k2", lambda: 1, ctx=ctx)
        except corral.Cancelled as exc:
            results.append(exc)

    t = threading.Thread(target=caller)
    t.start()
    release.set()
    t.join(10)
    assert results[0] == 42
    assert isinstance(results[1], corral.Cancelled)
