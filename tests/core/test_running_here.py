"""Which thread wakes a parked task directly, and which goes through the loop's queue.

``AsyncWaiter.complete`` resolves the task's future inline only when the caller is in the
thread running the task's loop; from anywhere else it must use ``call_soon_threadsafe``.
On 3.11 that question is answered from the loop's ``_thread_id`` (asyncio's own
``_get_running_loop()`` makes a system call there); both ways are checked on every
interpreter by switching ``LOOP_THREAD_ID``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import threading
import types
from typing import Any

import pytest

from corral._core import waiter
from corral._core.waiter import AsyncWaiter, running_here


@pytest.fixture(params=[True, False], ids=["thread-id", "running-loop"])
def way(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    monkeypatch.setattr(waiter, "LOOP_THREAD_ID", request.param)
    return bool(request.param)


def _in_thread(fn: Any) -> Any:
    out: list[Any] = []
    t = threading.Thread(target=lambda: out.append(fn()))
    t.start()
    t.join(10)
    assert not t.is_alive()
    return out[0]


async def test_running_here_only_in_the_loops_own_thread(way: bool) -> None:
    loop = asyncio.get_running_loop()
    assert running_here(loop)
    assert not _in_thread(lambda: running_here(loop))
    other = asyncio.new_event_loop()
    try:
        assert not running_here(other)  # not running anywhere
    finally:
        other.close()


def test_running_here_is_false_for_a_stopped_loop(way: bool) -> None:
    loop = asyncio.new_event_loop()
    try:
        seen = loop.run_until_complete(_running_here_of(loop))
        assert seen is True
        assert not running_here(loop)  # stopped: nobody runs it now
    finally:
        loop.close()


async def _running_here_of(loop: asyncio.AbstractEventLoop) -> bool:
    return running_here(loop)


def test_a_loop_without_a_thread_record_falls_back(way: bool) -> None:
    # uvloop keeps its thread id in C, out of Python's reach: the plain question answers.
    # A real uvloop loop where it is installed (the test extra, CPython with a GIL);
    # elsewhere an object without the record stands in for it.
    if importlib.util.find_spec("uvloop") is not None:
        import uvloop

        loop: Any = uvloop.new_event_loop()
        try:
            assert not hasattr(loop, "_thread_id")
            assert not running_here(loop)
            assert loop.run_until_complete(_running_here_of(loop)) is True
            assert not _in_thread(lambda: running_here(loop))
        finally:
            loop.close()
        return
    fake: Any = types.SimpleNamespace()
    assert not running_here(fake)


async def test_complete_wakes_inline_here_and_through_the_loop_from_a_thread(way: bool) -> None:
    loop = asyncio.get_running_loop()
    here = AsyncWaiter(loop)
    assert here.complete(0, "a")
    assert here.fut.done()  # resolved inline: the caller runs the loop

    there = AsyncWaiter(loop)
    assert _in_thread(lambda: there.complete(0, "b"))
    assert there.value == "b"
    assert not there.fut.done()  # not inline from another thread: this loop has not run yet
    await asyncio.wait_for(there.fut, 10)  # resolved by the loop, via call_soon_threadsafe


def test_complete_on_a_closed_loop_gives_the_value_back(way: bool) -> None:
    loop = asyncio.new_event_loop()
    w = AsyncWaiter(loop)
    loop.close()
    assert not w.complete(0, "item")  # nobody can read it: the caller keeps the item
    assert w.value is None
