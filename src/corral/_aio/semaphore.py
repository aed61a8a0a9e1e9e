"""``corral.Semaphore``: the asyncio view of a weighted semaphore."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Generator
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .._core.context import Context, _check_timeout, check_ctx_arg
from .._core.semaphore import SemaphoreState, check_weight
from .._core.waiter import AsyncWaiter, Waiter
from .._shells import SemaphoreBase, check_ctx
from .channel import new_waiter
from .wait import Handle, MustAwait, cancelled_while_parked, owed, park, pay_owed

if TYPE_CHECKING:
    from .._threads.semaphore import Semaphore as ThreadSemaphore

__all__ = ["Semaphore"]

_get_running_loop = asyncio.get_running_loop

_DONE: Any = iter(())  # an exhausted iterator: awaiting it completes at once, in C


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
    time). tests/reliability/test_rel_inlines.py drives it and ``park()`` through the same
    operation sequences, cancellations and timeouts included."""
    # inline of corral._aio.wait.park
    try:
        yield from w.fut
    except asyncio.CancelledError:
        if cancelled_while_parked(w, partial(_give_back, st, n)):
            raise


class SemaphoreAcquire(Handle):
    """What ``sem.acquire(n)`` returns (``corral.SemaphoreAcquire``): ``await`` it, or enter
    it with ``async with`` (the permits are released on exit). Free permits were taken at
    the call; otherwise it waits for them when awaited, and one never awaited nor entered
    warns. Made by ``acquire()`` only; for annotations and ``isinstance``."""

    __slots__ = ()


class _Granted(SemaphoreAcquire):
    """What ``acquire()`` returns when it took the permits at the call: awaiting it
    completes at once, ``async with`` releases them on exit.

    Immutable, so the semaphore hands out one shared ``acquire(1)`` object.
    """

    __slots__ = ("_n", "_st")

    def __init__(self, st: SemaphoreState, n: int) -> None:
        self._st = st
        self._n = n

    def __await__(self) -> Generator[Any, None, None]:
        return _DONE  # type: ignore[no-any-return]

    async def __aenter__(self) -> None:
        pass

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._st.release(self._n)


class _Acquire(MustAwait, SemaphoreAcquire):
    """``await sem.acquire(n)`` or ``async with sem.acquire(n):`` (released on exit) when
    the call could not take the permits at once: it waits for them when awaited.

    One per call, so that one dropped without ``await`` / ``async with`` warns
    (``MustAwait``): it took no permit.
    """

    __slots__ = ("_ctx", "_n", "_st", "_timeout")
    _what = "Semaphore.acquire"

    def __init__(self, st: SemaphoreState, n: int, timeout: float | None, ctx: Context | None):
        self._st = st
        self._n = n
        self._timeout = timeout
        self._ctx = ctx
        self._used = False

    def __await__(self) -> Generator[Any, None, None]:
        self._used = True
        if self._ctx is None and not owed:
            # inline of corral._core.semaphore.SemaphoreState.acquire: one lock
            # acquisition takes the permits or queues the waiter (a contended acquire
            # parks every time: two calls fewer per park).
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

    ``async with sem:`` takes one permit, as ``asyncio.Semaphore`` does.
    """

    __slots__ = ("_granted1",)
    _flavour = "aio"
    _granted1: _Granted

    def acquire(
        self, n: int = 1, *, timeout: float | None = None, ctx: Context | None = None
    ) -> SemaphoreAcquire:
        """Acquire ``n`` permits, waiting in FIFO order; usable with ``await`` or ``async with``.

        ``ValueError`` at once if ``n`` exceeds the size. ``DeadlineExceeded`` after
        ``timeout``; ``Cancelled`` if ``ctx`` is done (even when permits are free). A
        cancelled or timed-out acquire holds nothing.

        Free permits are taken at the call (as ``Group.go`` starts its task at the call),
        so a forgotten ``await`` still holds them; an acquire that must wait does so when
        awaited, and one never awaited nor entered warns (``RuntimeWarning``), as a
        coroutine never awaited does.
        """
        st = self._st
        if n == 1 and ctx is None and timeout is None and n.__class__ is int and not owed:
            # The common call, first and with the fewest tests: acquire(1), free permit.
            # inline of corral._core.semaphore.SemaphoreState.try_acquire
            lock = st.lock
            lock.acquire()
            try:
                free = st.cur < st.size and not st.waiters
                if free:
                    st.cur += 1
            finally:
                lock.release()
            if free:
                try:
                    return self._granted1
                except AttributeError:
                    g = self._granted1 = _Granted(st, 1)
                    return g
            return _Acquire(st, 1, None, None)
        n = check_weight(n, st.size, "Semaphore.acquire")
        if timeout is not None:
            _check_timeout(timeout)
        if ctx is None:
            if not owed and st.try_acquire(n):  # free permits are taken at the call
                return _Granted(st, n)
        else:
            check_ctx_arg(ctx, "Semaphore.acquire")
        return _Acquire(st, n, timeout, ctx)

    def __aenter__(self) -> Awaitable[None]:
        """``async with sem:`` acquires 1 permit (as ``async with sem.acquire():``)."""
        return self.acquire()

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._st.release(1)

    def as_threads(self) -> ThreadSemaphore:
        """The same semaphore as a ``corral.threads.Semaphore``."""
        view: ThreadSemaphore = self._family["threads"]._view(self._st)
        return view
