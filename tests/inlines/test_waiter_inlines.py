"""``AsyncWaiter`` inlines ``Waiter.__init__`` and ``Waiter.complete`` (with ``_wake`` and
``running_here``): the same generated scenarios through the copy and through the original
(``Waiter.complete`` called on an ``AsyncWaiter``, which then wakes through ``_wake``) must
leave the same results and state. Scenarios: completed from the loop's thread, from another
thread, after the loop closed; a waiter with 0, 1 or 2 entries; already claimed or not."""

from __future__ import annotations

import asyncio
import random
import threading
from typing import Any

import pytest

from corral._core.waiter import AsyncWaiter, Entry, Waiter

pytestmark = pytest.mark.timeout(60)

SLOTS = ("done", "index", "value", "error", "entries", "item", "owner")


class _Owner:
    def _unlink(self, entry: Any) -> None:
        pass


def _state(w: AsyncWaiter) -> tuple[Any, ...]:
    fut = w.fut
    fut_state = ("cancelled" if fut.cancelled() else ("done", fut.result())) if fut.done() else None
    return (w.done, w.index, w.value, type(w.error).__name__, len(w.entries), fut_state)


def _prepare(loop: asyncio.AbstractEventLoop, rng: random.Random) -> list[AsyncWaiter]:
    """Two identical waiters (one per implementation) in a generated pre-state."""
    n_entries = rng.choice([0, 1, 2])
    pre = rng.choice(["fresh", "fresh", "aborted", "completed"])
    pair = []
    for _ in range(2):
        w = AsyncWaiter(loop)
        if n_entries:
            w.entries = [Entry(w, i, None, _Owner()) for i in range(n_entries)]
        if pre == "aborted":
            w.abort(RuntimeError("gone"), wake=False)
        elif pre == "completed":
            Waiter.complete(w, 0, "first")
        pair.append(w)
    return pair


def _complete(w: AsyncWaiter, inline: bool, index: int, value: Any) -> bool:
    return w.complete(index, value) if inline else Waiter.complete(w, index, value)


def test_async_waiter_complete_matches_waiter_complete() -> None:
    rng = random.Random(20261206)
    # From the loop's own thread.
    for _ in range(200):

        async def here() -> tuple[Any, ...]:
            loop = asyncio.get_running_loop()
            copy, orig = _prepare(loop, rng)
            i, v = rng.randrange(3), rng.random()
            rs = (_complete(copy, True, i, v), _complete(orig, False, i, v))
            await asyncio.sleep(0)
            return rs, _state(copy), _state(orig)

        (rc, ro), sc, so = asyncio.run(here())
        assert (rc, sc) == (ro, so)
    # From another thread, while the loop runs.
    loop = asyncio.new_event_loop()
    t = threading.Thread(target=loop.run_forever)
    t.start()
    try:
        for _ in range(100):
            copy, orig = asyncio.run_coroutine_threadsafe(_pair(rng), loop).result(10)
            i, v = rng.randrange(3), rng.random()
            rc, ro = _complete(copy, True, i, v), _complete(orig, False, i, v)
            asyncio.run_coroutine_threadsafe(asyncio.sleep(0), loop).result(10)
            sc, so = asyncio.run_coroutine_threadsafe(_states(copy, orig), loop).result(10)
            assert (rc, sc) == (ro, so)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        t.join()
        loop.close()
    # After the loop closed: nobody can be woken, the waker keeps the value.
    for _ in range(50):
        loop = asyncio.new_event_loop()
        copy, orig = _prepare(loop, rng)
        loop.close()
        i, v = rng.randrange(3), rng.random()
        rc, ro = _complete(copy, True, i, v), _complete(orig, False, i, v)
        assert (rc, _state(copy)) == (ro, _state(orig))


async def _pair(rng: random.Random) -> list[AsyncWaiter]:
    return _prepare(asyncio.get_running_loop(), rng)


async def _states(a: AsyncWaiter, b: AsyncWaiter) -> tuple[Any, Any]:
    return _state(a), _state(b)


def test_async_waiter_init_matches_waiter_init() -> None:
    loop = asyncio.new_event_loop()
    try:
        copy = AsyncWaiter(loop)
        orig = AsyncWaiter.__new__(AsyncWaiter)
        Waiter.__init__(orig)
        for name in SLOTS:
            assert getattr(copy, name) == getattr(orig, name), name
        assert type(copy._claim) is type(orig._claim)
        assert not copy._claim.locked()
        assert set(Waiter.__slots__) - {"__weakref__", "_claim"} == set(SLOTS)
    finally:
        loop.close()
