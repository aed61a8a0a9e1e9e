"""``corral.Semaphore``: the asyncio view of a weighted semaphore."""

from __future__ import annotations

from collections.abc import Generator
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .._core.context import Context, _check_timeout
from .._core.semaphore import check_weight
from .._core.waiter import AsyncWaiter, Waiter
from .._shells import SemaphoreBase, check_ctx
from . import wait as _wait
from .channel import new_waiter
from .wait import park, pay_owed

if TYPE_CHECKING:
    from .._threads.semaphore import Semaphore as ThreadSemaphore

__all__ = ["Semaphore"]


class _Acquire:
    """``await sem.acquire(n)`` or ``async with sem.acquire(n):`` (released on exit)."""

    __slots__ = ("_ctx", "_n", "_sem", "_timeout")

    def __init__(self, sem: Semaphore, n: int, timeout: float | None, ctx: Context | None):
        self._sem = sem
        self._n = n
        self._timeout = timeout
        self._ctx = ctx

    def __await__(self) -> Generator[Any, None, None]:
        return self._sem._acquire(self._n, self._timeout, self._ctx).__await__()

    async def __aenter__(self) -> None:
        await self._sem._acquire(self._n, self._timeout, self._ctx)

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._sem._st.release(self._n)


class Semaphore(SemaphoreBase):
    """Semaphore(size=1): Go's weighted semaphore for asyncio tasks; strictly FIFO.

    >>> import asyncio, corral
    >>> async def main():
    ...     sem = corral.Semaphore(10)
    ...     async with sem.acquire(3):
    ...         return sem.statistics().held
    >>> asyncio.run(main())
    3
    """

    __slots__ = ()
    _flavour = "aio"

    def acquire(
        self, n: int = 1, *, timeout: float | None = None, ctx: Context | None = None
    ) -> _Acquire:
        """Acquire ``n`` permits, waiting in FIFO order; usable with ``await`` or ``async with``.

        ``ValueError`` at once if ``n`` exceeds the size. ``DeadlineExceeded`` after
        ``timeout``; ``Cancelled`` if ``ctx`` is done (even when permits are free). A
        cancelled or timed-out acquire holds nothing.
        """
        n = check_weight(n, self._st.size, "Semaphore.acquire")
        if timeout is not None:
            _check_timeout(timeout)
        if ctx is not None and not isinstance(ctx, Context):
            raise TypeError(f"Semaphore.acquire: ctx must be a corral Context, got {ctx!r}")
        return _Acquire(self, n, timeout, ctx)

    async def _acquire(self, n: int, timeout: float | None, ctx: Context | None) -> None:
        if _wait.owed:
            pay_owed()
        if ctx is not None:
            check_ctx(ctx, "Semaphore.acquire")
        st = self._st
        w = st.acquire(n, new_waiter)
        if w is None:
            return
        assert isinstance(w, AsyncWaiter)

        def undo(_: Waiter) -> None:
            st.release(n)

        await park(w, timeout, ctx, undo)

    def as_threads(self) -> ThreadSemaphore:
        """The same semaphore as a ``corral.threads.Semaphore``."""
        from .._threads.semaphore import Semaphore as ThreadSemaphore

        return ThreadSemaphore._view(self._st)
