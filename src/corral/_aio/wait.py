"""How an asyncio task waits for a parked operation, and what cancellation means for it.

The rule (trio's, carried to asyncio): an operation that is cancelled had no effect; an
operation that completed is reported as completed. The claim protocol (``_core.waiter``)
decides which one happened when a cancellation races a wake-up:

* the task's abort wins the claim: the waiter is unlinked, ``CancelledError`` propagates,
  and nothing was taken or given;
* a waker won the claim first: the item or permit is already handed over. A channel
  operation then returns its result and the cancellation is delivered again at the task's
  next await, unless whoever asked for it withdrew it meanwhile (``asyncio.timeout``
  does, via ``uncancel``, when it exits: re-delivering then would cancel the wrong
  code). A semaphore acquire instead gives the permits back and raises, as Go does.

"Next await" includes corral operations that would complete without suspending: until
the owed cancellation is delivered, every corral operation of that task checks
:data:`owed` on entry and raises it there. Otherwise a task looping over a channel that
always has an item ready would never suspend and never see its cancellation.
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Callable, Generator
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .._core.cancelling import drop_withdrawn_cancel
from .._errors import DeadlineExceeded

if TYPE_CHECKING:
    from .._core.context import Context
    from .._core.waiter import AsyncWaiter, Waiter

__all__ = [
    "MustAwait",
    "cancelled_while_parked",
    "drop_withdrawn_cancel",
    "owed",
    "park",
    "pay_owed",
]

_TASK_CANCELLED = asyncio.CancelledError()


def _abort_deadline(w: Waiter, timeout: float) -> None:
    w.abort(DeadlineExceeded(f"operation timed out after {timeout} s"))


# Tasks owed a cancellation that arrived after their operation had completed, with their
# ``cancelling()`` count at that moment. Paid at the task's next corral operation
# (pay_owed) or by _recancel at its next suspension, whichever comes first.
owed: dict[asyncio.Task[object], int] = {}


def pay_owed() -> None:
    """Raise the cancellation owed to the current task, if it is still requested.

    Called on entry to every asyncio operation when :data:`owed` is not empty (one dict
    truthiness test on the fast path otherwise).
    """
    task = asyncio.current_task()
    if task is None:  # pragma: no cover - corral operations run inside tasks
        return
    requested = owed.pop(task, None)
    if requested is not None and task.cancelling() >= requested:
        raise asyncio.CancelledError()


def _recancel(task: asyncio.Task[object], requested: int) -> None:
    if owed.pop(task, None) is None:
        return  # paid already, by pay_owed
    # Still requested (nobody called uncancel since): deliver it at the current await.
    if not task.done() and task.cancelling() >= requested:
        task.uncancel()
        task.cancel()


def cancelled_while_parked(w: AsyncWaiter, undo: Callable[[Waiter], None] | None = None) -> bool:
    """The task was cancelled while ``w`` was parked: ``True`` means re-raise.

    ``False`` means the operation completed first: its result stands and the
    cancellation will be re-delivered at the task's next await (see the module docs).
    """
    if w.abort(_TASK_CANCELLED, wake=False) or w.error is not None:
        w.unlink()
        return True
    if undo is not None:
        undo(w)
        return True
    task = asyncio.current_task()
    assert task is not None
    requested = task.cancelling()
    owed[task] = requested
    w.loop.call_soon(_recancel, task, requested)
    return False


async def park(
    w: AsyncWaiter,
    timeout: float | None,
    ctx: Context | None,
    undo: Callable[[Waiter], None] | None = None,
) -> None:
    """Wait until ``w`` is completed (return) or aborted (raise).

    On return the operation has happened and ``w.index`` / ``w.value`` hold its outcome.
    """
    loop = w.loop
    timer = None
    g = None
    handle = None
    if timeout is not None:
        timer = loop.call_later(timeout, _abort_deadline, w, timeout)
    if ctx is not None and (g := ctx._governor) is not None:
        handle = g._abort_on_cancel(w)
    try:
        await w.fut
    except asyncio.CancelledError:
        if cancelled_while_parked(w, undo):
            raise
    finally:
        if timer is not None:
            timer.cancel()
        if handle is not None:
            assert g is not None
            g._remove_callback(handle)
    err = w.error
    if err is not None:
        w.unlink()
        raise err


class Handle:
    """Base of what an asyncio ``acquire()`` returns (``corral.SemaphoreAcquire``,
    ``corral.RateLimitAcquire``): something to ``await`` or to enter with ``async with``.
    The declarations are for type checkers; each handle defines them."""

    __slots__ = ()

    if TYPE_CHECKING:  # what every handle does (each subclass defines it)

        def __await__(self) -> Generator[Any, None, None]: ...

        async def __aenter__(self) -> None: ...

        async def __aexit__(
            self,
            et: type[BaseException] | None,
            e: BaseException | None,
            tb: TracebackType | None,
        ) -> None: ...


class MustAwait:
    """Base of the objects an asyncio call returns to be awaited or entered (``acquire``):
    one dropped unused warns, as a coroutine never awaited does.

    Those objects are not coroutines (a coroutine would cost a frame on every uncontended
    acquire, and could not be an ``async with`` context manager too), so Python's "never
    awaited" warning does not cover them: without this, ``sem.acquire()`` missing its
    ``await`` took no permit and said nothing (issue 17). A subclass sets ``_used = False``
    in ``__init__`` and ``True`` in ``__await__``; ``_what`` names the call.
    """

    __slots__ = ("_used",)
    _what = "acquire"
    _used: bool

    def __del__(self) -> None:
        if not self._used:
            warnings.warn(
                f"{self._what}() was never awaited nor entered, so it did nothing: "
                "write `await` (or `async with`) before the call",
                RuntimeWarning,
                stacklevel=1,
                source=self,
            )
