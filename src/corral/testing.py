"""Test helpers for corral and for code built on it.

``track()`` records every channel and semaphore created while it is active, and
``tracked_waiters()`` lists those still holding queued waiters: a test that ends with one
left has stranded a task or thread.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ._core import timer as _timer
from ._core import tracking as _tracking

__all__ = ["track", "tracked_waiters", "untrack", "wait_timers_idle"]


@contextmanager
def track() -> Iterator[None]:
    """Track primitives created inside the block (for :func:`tracked_waiters`)."""
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
