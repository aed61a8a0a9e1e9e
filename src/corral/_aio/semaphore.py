"""``corral.Semaphore``: the asyncio view of a weighted semaphore."""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .._core.context import Context, _check_timeout, check_ctx_arg
from .._core.semaphore import SemaphoreState, check_weight
from .._core.waiter import AsyncWaiter, Waiter
from .._shells import SemaphoreBase, check_ctx
from .channel import new_waiter
from .wait import cancelled_while_parked, owed, park, pay_owed

if TYPE_CHECKING:
    from .._threads.semaphore import Semaphore as ThreadSemaphore

__all__ = ["Semaphore"]

_DONE: Any = iter(())  # an exhausted iterator: awaiting it completes at once, in C
_get_running_loop = asyncio.get_running_loop


def _give_back(st: SemaphoreState, n: int, _: Waiter) -> None:
    # An acquire granted after it was cancelled or timed out: pretend it never was (Go).
    st.release(n)


async def _acquire(st: SemaphoreState, n: int, timeout: float | None, ctx: Context | None) -> None:
    if owed:
        pay_owed()
    if ctx is not None:
        check_ctx(ctx, "Semaphore.acquire")
    w = st.acquire(n, new_waiter)
    if w is not None:
        assert isinstance(w, AsyncWaiter)
        await park(w, timeout, ctx, partial(_give_back, st, n))


def _granted(w: AsyncWaiter, st: SemaphoreState, n: int) -> Generator[Any, None, None]:
    """Wait until the queued ``w`` is granted its ``n`` permits (or raise, holding none):
    ``park()`` without a timeout or ctx, inlined as a generator. ``_Acquire.__await__``
    returns it as it is, where a coroutine would need a wrapper object from its
    ``__await__()`` and a hop through it on every resume (a contended acquire parks every
    time)."""
    try:
        yield from w.fut
    except asyncio.CancelledError:
        if cancelled_while_parked(w, partial(_give_back, st, n)):
            raise


class _Acquire:
    """``await sem.acquire(n)`` or ``async with sem.acquire(n):`` (released on exit).

    Immutable, so the semaphore hands out one shared ``acquire(1)`` object. It refers to
    the state, not to the view, so caching it on the view makes no reference cycle.
    """

    __slots__ = ("_ctx", "_n", "_st", "_timeout")

    def __init__(self, st: SemaphoreState, n: int, timeout: float | None, ctx: Context | None):
        self._st = st
        self._n = n
        self._timeout = timeout
        self._ctx = ctx

    def __await__(self) -> Generator[Any, None, None]:
        if self._ctx is None and not owed:
            # SemaphoreState.acquire, inlined: one lock acquisition either takes the
            # permits (no coroutine is built at all: most of an uncontended acquire's
            # cost) or queues the waiter, and only then a coroutine waits for the grant.
            st = self._st
            n = self._n
            lock = st.lock
            lock.acquire()
            try:
                if st.size - st.cur >= n and not st.waiters:
                    st.cur += n
                    return _DONE  # type: ignore[no-any-return]
                w = AsyncWaiter(_get_running_loop())
                w.item = n  # queued as its own entry, as SemaphoreState.acquire does
                w.owner = st
                st.waiters.append(w)
            finally:
                lock.release()
            if self._timeout is None:
                return _granted(w, st, n)
            return park(w, self._timeout, None, partial(_give_back, st, n)).__await__()
        return _acquire(self._st, self._n, self._timeout, self._ctx).__await__()

    async def __aenter__(self) -> None:
        await self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._st.release(self._n)


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

    __slots__ = ("_acquire1",)
    _flavour = "aio"
    _acquire1: _Acquire

    def acquire(
        self, n: int = 1, *, timeout: float | None = None, ctx: Context | None = None
    ) -> _Acquire:
        """Acquire ``n`` permits, waiting in FIFO order; usable with ``await`` or ``async with``.

        ``ValueError`` at once if ``n`` exceeds the size. ``DeadlineExceeded`` after
        ``timeout``; ``Cancelled`` if ``ctx`` is done (even when permits are free). A
        cancelled or timed-out acquire holds nothing.
        """
        if n == 1 and timeout is None and ctx is None and n.__class__ is int:
            try:
                return self._acquire1
            except AttributeError:
                acq = self._acquire1 = _Acquire(self._st, 1, None, None)
                return acq
        n = check_weight(n, self._st.size, "Semaphore.acquire")
        if timeout is not None:
            _check_timeout(timeout)
        if ctx is not None:
            check_ctx_arg(ctx, "Semaphore.acquire")
        return _Acquire(self._st, n, timeout, ctx)

    def as_threads(self) -> ThreadSemaphore:
        """The same semaphore as a ``corral.threads.Semaphore``."""
        view: ThreadSemaphore = self._family["threads"]._view(self._st)
        return view
