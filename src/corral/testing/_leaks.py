"""The leak-check hooks the test suite probes after every test, and task stacks.

:func:`track` / :func:`tracked_waiters` / :func:`untrack` (no corral waiter left queued),
:func:`wait_timers_idle`, and :func:`format_task_stacks` (what every task is awaiting).
"""

from __future__ import annotations

import asyncio
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from .._core import timer as _timer
from .._core import tracking as _tracking

# --- leak-check hooks (probed by tests/conftest.py) ------------------------------------------


@contextmanager
def track() -> Iterator[None]:
    """Track primitives created from now on (for :func:`tracked_waiters`)."""
    _tracking.start()
    try:
        yield
    finally:
        pass


def untrack() -> None:
    """Stop tracking and forget tracked primitives."""
    _tracking.stop()


def tracked_waiters() -> list[str]:
    """Descriptions of tracked primitives that still have waiters queued."""
    return _tracking.leftover_waiters()


def wait_timers_idle(timeout: float = 5.0) -> bool:
    """Wait until corral's deadline timer thread has nothing left and has exited."""
    return _timer.wait_idle(timeout)


# --- task stacks -------------------------------------------------------------------------------


def _await_chain(coro: object) -> list[FrameType]:
    """The frames of ``coro`` and of everything it is awaiting, outermost first."""
    frames: list[FrameType] = []
    for _ in range(100):  # a bound, in case of a cycle through a strange awaitable
        if coro is None:
            break
        frame = None
        for attr in ("cr_frame", "gi_frame", "ag_frame"):
            frame = getattr(coro, attr, None)
            if frame is not None:
                break
        if frame is not None:
            frames.append(frame)
        nxt = None
        for attr in ("cr_await", "gi_yieldfrom", "ag_await"):
            nxt = getattr(coro, attr, None)
            if nxt is not None:
                break
        coro = nxt
    return frames


def format_task_stacks(loop: asyncio.AbstractEventLoop | None = None) -> str:
    """Every unfinished asyncio task with the chain of coroutines it is suspended in.

    ``loop=None`` covers every loop in the process (found through the garbage collector, so
    it also works from another thread, e.g. a watchdog that fires on a hang). Unlike
    ``Task.print_stack``, which shows only the task's outermost coroutine, this follows
    ``await`` down to the innermost frame.
    """
    if loop is not None:
        tasks: list[asyncio.Task[Any]] = list(asyncio.all_tasks(loop))
    else:
        import gc

        tasks = [o for o in gc.get_objects() if isinstance(o, asyncio.Task) and not o.done()]
    out = []
    for task in tasks:
        try:
            coro = task.get_coro()
            inner = getattr(coro, "_coro", coro)  # see through explore()'s wrapper
            frames = _await_chain(inner)
            summary = traceback.StackSummary.extract((f, f.f_lineno) for f in frames)
            out.append(f"Task {task.get_name()!r} ({task!r}):\n" + "".join(summary.format()))
        except Exception as exc:  # a dump must never fail half-way
            out.append(f"Task {task!r}: could not format its stack ({exc!r})")
    return "\n".join(out) if out else "(no unfinished asyncio task)"
