"""What corral tells asyncio's call graph (3.14+: ``asyncio.capture_call_graph``,
``python -m asyncio pstree PID``).

asyncio sees a task await a Future, not what completes that Future: the body of a Group
waits on a future of its own, and so does each caller of a SingleFlight. corral declares
those edges (``future_add_to_awaited_by`` / ``future_discard_from_awaited_by``), so a
Group's workers show the body as their awaiter (as ``TaskGroup``'s do) and a flight's task
shows its callers. Before 3.14 none of this runs: ``CALL_GRAPH`` is False, a Group's task
set is a plain ``set`` and nothing is paid on the hot paths.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial
from typing import Any

from .._core.singleflight import Flight
from .._core.waiter import AsyncWaiter

__all__ = [
    "CALL_GRAPH",
    "AwaitedTasks",
    "await_flight",
    "declare_awaiter",
    "flight_started",
    "new_task_set",
]

_add: Callable[[Any, Any], None] | None = getattr(asyncio, "future_add_to_awaited_by", None)
_discard: Callable[[Any, Any], None] | None = getattr(
    asyncio, "future_discard_from_awaited_by", None
)
CALL_GRAPH = _add is not None and _discard is not None


def _add_edge(fut: asyncio.Future[Any], awaiter: asyncio.Future[Any]) -> None:
    assert _add is not None
    _add(fut, awaiter)


def _discard_edge(fut: asyncio.Future[Any], awaiter: asyncio.Future[Any], *_: object) -> None:
    assert _discard is not None
    _discard(fut, awaiter)


# -- Group ---------------------------------------------------------------------------------


class AwaitedTasks(set[asyncio.Task[Any]]):
    """A Group's running tasks, each declared awaited by ``awaiter`` (the body of
    ``async with``, or the task inside ``wait()``) while it is in the set."""

    __slots__ = ("awaiter",)

    def __init__(self) -> None:
        super().__init__()
        self.awaiter: asyncio.Task[Any] | None = None

    def add(self, task: asyncio.Task[Any]) -> None:
        super().add(task)
        if self.awaiter is not None:
            _add_edge(task, self.awaiter)

    def discard(self, task: object) -> None:
        super().discard(task)
        if self.awaiter is not None:
            _discard_edge(task, self.awaiter)  # type: ignore[arg-type]

    def declare(self, awaiter: asyncio.Task[Any] | None) -> None:
        """Make ``awaiter`` the task that awaits every worker (None: nobody)."""
        if self.awaiter is not None:
            for t in self:
                _discard_edge(t, self.awaiter)
        self.awaiter = awaiter
        if awaiter is not None:
            for t in self:
                _add_edge(t, awaiter)


def declare_awaiter(
    tasks: set[asyncio.Task[Any]], awaiter: asyncio.Task[Any] | None, only_if_none: bool = False
) -> bool:
    """Make ``awaiter`` the awaiter of a Group's ``tasks`` (None: nobody); with
    ``only_if_none``, only if they have none. True if it did (False before 3.14)."""
    if not isinstance(tasks, AwaitedTasks) or (only_if_none and tasks.awaiter is not None):
        return False
    tasks.declare(awaiter)
    return True


def new_task_set() -> set[asyncio.Task[Any]]:
    """A Group's set of running tasks: declaring its awaiter where asyncio can be told."""
    return AwaitedTasks() if CALL_GRAPH else set()


# -- SingleFlight --------------------------------------------------------------------------

#: Each running flight's task, while it runs (only where the call graph exists).
_flight_tasks: dict[Flight, asyncio.Task[None]] = {}


def flight_started(f: Flight, task: asyncio.Task[None]) -> None:
    """Remember the task running ``f`` until it is done. Call only if ``CALL_GRAPH``."""
    if not task.done():
        _flight_tasks[f] = task
        task.add_done_callback(partial(_flight_done, f))


def _flight_done(f: Flight, _: object) -> None:
    _flight_tasks.pop(f, None)


def await_flight(w: AsyncWaiter) -> None:
    """Declare the calling task an awaiter of the task of the flight ``w`` waits for,
    until ``w`` is done. Call only if ``CALL_GRAPH``."""
    caller = asyncio.current_task()
    entries = w.entries
    if caller is None or not entries:
        return
    flight_task = _flight_tasks.get(entries[0].owner)  # type: ignore[call-overload]
    if flight_task is None:
        return
    _add_edge(flight_task, caller)
    w.fut.add_done_callback(partial(_discard_edge, flight_task, caller))
