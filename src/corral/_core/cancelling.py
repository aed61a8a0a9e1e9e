"""asyncio task cancellation bookkeeping that both the core and the asyncio shell need.

I/O-free: it only reads and settles a task's own cancel state. It lives in the core
because ``Context.cancel_scope()`` (core) and ``Group`` (asyncio shell) both withdraw a
cancellation they asked for, and the core must not import the shell.
"""

from __future__ import annotations

import asyncio
import sys

__all__ = ["drop_withdrawn_cancel"]


async def drop_withdrawn_cancel(task: asyncio.Task[object]) -> None:
    """Python < 3.13: ``uncancel()`` down to 0 leaves the task's pending-cancel flag set
    (3.13 clears it), so a cancellation withdrawn by everyone who asked for it would still
    be delivered at the caller's next await. Take delivery here and drop it. Only called
    with ``cancelling() == 0``; a request that arrives meanwhile is re-raised."""
    if sys.version_info < (3, 13) and getattr(task, "_must_cancel", False):
        try:
            await asyncio.sleep(0)
        except asyncio.CancelledError:
            if task.cancelling():
                raise
