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
from collections.abc import Callable
from typing import TYPE_CHECKING

from .._core.cancelling import drop_withdrawn_cancel
from .._errors import DeadlineExceeded

if TYPE_CHECKING:
    from .._core.context import Context
    from .._core.waiter import AsyncWaiter, Waiter

__all__ = ["cancelled_while_parked", "drop_withdrawn_cancel", "owed", "park", "pay_owed"]

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
