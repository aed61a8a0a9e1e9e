"""``corral.Group.go``'s awaitables and its waiter for a slot (split from ``group.py``).

``go()`` is a plain method: it starts the task at the call when it can and returns
:func:`started`; when the task must wait for a slot it returns :func:`go_when_awaited`,
which does nothing until awaited. Both are generator-based awaitables rather than
``async def`` coroutines: see each one's docstring for why.
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, TypeVar

from .._core.semaphore import SemaphoreState
from .._core.waiter import AsyncWaiter, Waiter

if TYPE_CHECKING:
    from .group import Group

__all__ = [
    "HANDED",
    "GoWaiter",
    "Unawaited",
    "fn_name",
    "give_back",
    "go_when_awaited",
    "started",
]

T = TypeVar("T")


HANDED = object()  # a go()'s waiter value: a finishing worker started its task for it


class GoWaiter(AsyncWaiter):
    """A ``go()`` waiting for a slot, carrying its work: a worker that returns normally
    while it waits hands it the slot and starts its task right there, in the worker's
    done callback (``GroupState.pass_slot``), so the next task does not wait for the
    waiting ``go()`` to be scheduled first: one event-loop iteration less per slot."""

    __slots__ = ("job", "spawn_error", "task")

    def __init__(
        self, loop: asyncio.AbstractEventLoop, job: tuple[Callable[..., Any], tuple[Any, ...], bool]
    ) -> None:
        super().__init__(loop)
        self.job: tuple[Callable[..., Any], tuple[Any, ...], bool] | None = job
        self.task: asyncio.Task[Any] | None = None
        self.spawn_error: BaseException | None = None


def give_back(sem: SemaphoreState, w: Waiter) -> None:
    # A go() cancelled after its wait completed: a granted slot is returned; one handed
    # over with its task started holds a running worker, nothing to give back.
    if w.value is not HANDED:
        sem.release(1)


@types.coroutine
def started(task: asyncio.Task[T]) -> Generator[Any, None, asyncio.Task[T]]:
    """What ``go()`` returns when it started the task at once: awaiting it gives the task
    without suspending. A generator-based awaitable, not an ``async def``: one that is
    never awaited warns about nothing (the work runs either way, so forgetting ``await``
    is harmless here), and it costs what a coroutine does (an object with ``__await__``
    costs two to three times more, measured on group.spawn's hot path)."""
    return task
    yield  # pragma: no cover - makes this a generator; never reached


def fn_name(fn: Callable[..., Any]) -> str:
    name = getattr(fn, "__qualname__", None)
    return name if isinstance(name, str) else repr(fn)


class Unawaited:
    """A ``go()`` call that must wait for a slot and has not been awaited yet."""

    __slots__ = ("fn", "is_async")

    def __init__(self, fn: Callable[..., Any], is_async: bool) -> None:
        self.fn = fn
        self.is_async = is_async  # checked at the call


@types.coroutine
def go_when_awaited(
    group: Group, token: Unawaited, args: tuple[Any, ...]
) -> Generator[Any, None, asyncio.Task[Any]]:
    """What ``go()`` returns when the task must wait for a slot: nothing happens until it
    is awaited; then it waits in line (cancellably) and starts the task.

    Generator-based like :func:`started`, so one never awaited emits no "never awaited"
    warning from wherever it happens to be collected: the group reports it instead, as a
    ``GroupError`` naming the function when it finishes (see ``_report_unawaited``).
    """
    group._unawaited.pop(token, None)  # gone if the group finished: _go_waiting refuses
    return (yield from group._go_waiting(token.fn, token.is_async, args).__await__())
