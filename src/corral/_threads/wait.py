"""How a thread waits for a parked operation.

Threads cannot be cancelled from outside; a thread's wait ends when the operation
completes, its ``timeout`` passes, or its Context is done (the Context's cancel wakes
it). A timeout that races a completion loses: the operation happened and is reported
(for a semaphore, the permits are given back and the timeout raised, as Go does). An
exception raised into the wait (``KeyboardInterrupt`` in the main thread) aborts it the
same way as a task cancellation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .._errors import DeadlineExceeded

if TYPE_CHECKING:
    from .._core.context import Context
    from .._core.waiter import ThreadWaiter, Waiter

__all__ = ["park"]


def park(
    w: ThreadWaiter,
    timeout: float | None,
    ctx: Context | None,
    undo: Callable[[Waiter], None] | None = None,
) -> None:
    """Block until ``w`` is completed (return) or aborted (raise)."""
    g = None
    handle = None
    if ctx is not None and (g := ctx._governor) is not None:
        handle = g._abort_on_cancel(w)
    try:
        parked = w.park(timeout)
    except BaseException as exc:  # KeyboardInterrupt raised into the wait
        if w.abort(exc, wake=False) or w.error is not None:
            w.unlink()
        elif undo is not None:
            undo(w)
        raise
    finally:
        if handle is not None:
            assert g is not None
            g._remove_callback(handle)
    if not parked:
        err = DeadlineExceeded(f"operation timed out after {timeout} s")
        if w.abort(err, wake=False):
            w.unlink()
            raise err
        if w.error is None and undo is not None:
            undo(w)
            raise err
        # else: completed (or aborted by the Context) just before the timeout
    if w.error is not None:
        w.unlink()
        raise w.error
