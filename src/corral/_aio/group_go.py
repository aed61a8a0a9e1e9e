"""``corral.Group.go``'s awaitables and its waiter for a slot (split from ``group.py``).

``go()`` is a plain method: it starts the task at the call when it can and returns
:func:`started`; when the task must wait for a slot it returns a :class:`WaitingGo`,
which does nothing until awaited. Neither is an ``async def`` coroutine: see each one's
docstring for why.
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
    "WaitingGo",
    "fn_name",
    "give_back",
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


class WaitingGo:
    """What ``go()`` returns when the task must wait for a slot: :func:`go_when_awaited`
    behind an object, so that using it as the task (``t = g.go(fn); t.result()``, the
    ``await`` forgotten) fails with a message naming ``go()`` and ``await`` rather than
    "'generator' object has no attribute 'result'" (issue 17). Only this path pays for
    the object: it waits for a slot anyway."""

    __slots__ = ("_args", "_group", "_token")

    def __init__(self, group: Group, token: Unawaited, args: tuple[Any, ...]) -> None:
        self._group = group
        self._token = token
        self._args = args

    def __await__(self) -> Generator[Any, None, asyncio.Task[Any]]:
        """Nothing happens until awaited; then it waits in line (cancellably) and starts
        the task. One never awaited is reported by the group, as a ``GroupError`` naming
        the function when it finishes (see ``Group._report_unawaited``)."""
        group = self._group
        token = self._token
        group._unawaited.pop(token, None)  # gone if the group finished: _go_waiting refuses
        return (yield from group._go_waiting(token.fn, token.is_async, self._args).__await__())

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(
            f"Group.go({fn_name(self._token.fn)}) returned an awaitable, not the task, so it "
            f"has no attribute {name!r}: write `task = await g.go(fn, ...)`. This go() had "
            "to wait for a free slot under the limit, which happens when it is awaited"
        )

    def __repr__(self) -> str:
        return f"<Group.go({fn_name(self._token.fn)}) waiting for a slot: await it>"
