"""``async with ctx.cancel_scope():`` (asyncio): cancel the current task when a Context is done.

Kept apart from ``context.py`` (which is flavour-neutral and imported by every flavour):
only asyncio code enters a cancel scope.
"""

from __future__ import annotations

import asyncio
from asyncio import _get_running_loop
from types import TracebackType
from typing import TYPE_CHECKING

from .cancelling import drop_withdrawn_cancel

if TYPE_CHECKING:
    from .context import Context


class CancelScope:
    """What ``ctx.cancel_scope()`` returns; see :meth:`corral.Context.cancel_scope`."""

    __slots__ = ("_base", "_ctx", "_exited", "_fired", "_handle", "_loop", "_task")

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self._fired = False
        self._exited = False
        self._handle: int | None = None

    async def __aenter__(self) -> Context:
        task = asyncio.current_task()
        if task is None:  # pragma: no cover - cannot happen inside a coroutine run by asyncio
            raise RuntimeError("cancel_scope() needs a running asyncio task")
        self._task = task
        self._loop = asyncio.get_running_loop()
        self._base = task.cancelling()
        g = self._ctx._governor
        if g is not None:
            self._handle = g._on_cancel(self._fire)
            if self._handle is None:
                self._fire()
        return self._ctx

    def _fire(self) -> None:
        if _get_running_loop() is self._loop:
            self._cancel_task()
        else:
            try:
                self._loop.call_soon_threadsafe(self._cancel_task)
            except RuntimeError:  # loop closed: the task is gone anyway
                pass

    def _cancel_task(self) -> None:
        if not self._exited and not self._fired:
            self._fired = True
            self._task.cancel("corral: context done")

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._exited = True
        g = self._ctx._governor
        if g is not None and self._handle is not None:
            g._remove_callback(self._handle)
        # uncancel() balances our cancel() whatever happened; only a CancelledError that is
        # ours (no other cancel request pending) becomes the context's error.
        if self._fired:
            ours = self._task.uncancel() <= self._base
            if ours and et is not None and issubclass(et, asyncio.CancelledError):
                assert g is not None
                raise g._fresh_error() from e
            if ours and et is None and self._task.cancelling() == 0:
                # The block finished before our cancel landed: withdraw it for good.
                await drop_withdrawn_cancel(self._task)
