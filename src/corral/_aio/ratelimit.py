"""``corral.RateLimit`` and ``corral.Limits``: the asyncio views of rate limits."""

from __future__ import annotations

from collections.abc import Generator, Mapping
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .._core.context import Context, _check_timeout, check_ctx_arg
from .._core.joint import joint_acquire
from .._core.ratelimit import EPS, RateLimitState, check_cost
from .._core.waiter import AsyncWaiter, Waiter
from .._shells import Grant, LimitsBase, RateLimitBase, check_ctx
from .channel import new_waiter
from .wait import owed, park, pay_owed

if TYPE_CHECKING:
    from .._threads.ratelimit import Limits as ThreadLimits
    from .._threads.ratelimit import RateLimit as ThreadRateLimit

__all__ = ["Limits", "RateLimit"]

_DONE: Any = iter(())  # an exhausted iterator: awaiting it completes at once, in C


def _give_back(st: RateLimitState, c: float, _: Waiter) -> None:
    # Granted after it was cancelled or timed out: it must cost nothing.
    st.give_back(c)


async def _acquire(
    st: RateLimitState, c: float, timeout: float | None, ctx: Context | None
) -> None:
    if owed:
        pay_owed()
    if ctx is not None:
        check_ctx(ctx, "RateLimit.acquire")
    w = st.acquire(c, new_waiter)
    if w is None:
        return
    assert isinstance(w, AsyncWaiter)
    await park(w, timeout, ctx, partial(_give_back, st, c))


class _Acquire:
    """``await rl.acquire(c)`` or ``async with rl.acquire(c):`` (nothing to give back).

    Immutable, so the limit hands out one shared ``acquire(1)`` object (as Semaphore does).
    """

    __slots__ = ("_c", "_cost_time", "_ctx", "_slack", "_st", "_timeout")

    def __init__(self, st: RateLimitState, c: float, timeout: float | None, ctx: Context | None):
        self._st = st
        self._c = c
        self._timeout = timeout
        self._ctx = ctx
        # The GCRA test "now + EPS >= tat + (c - burst) * T", rearranged so the fast path
        # does one comparison: tat <= now + slack.
        self._cost_time = c * st.interval
        self._slack = (st.burst - c) * st.interval + EPS

    def __await__(self) -> Generator[Any, None, None]:
        if self._ctx is None and not owed:
            # RateLimitState.try_take_locked, inlined: an uncontended acquire builds no
            # coroutine and makes no method call but the clock's.
            st = self._st
            lock = st.lock
            lock.acquire()
            try:
                if not st.waiters:
                    now = st.now()
                    tat = st.tat
                    if tat <= now + self._slack:
                        st.tat = (tat if tat > now else now) + self._cost_time
                        st.granted += self._c
                        return _DONE  # type: ignore[no-any-return]
            finally:
                lock.release()
        return _acquire(self._st, self._c, self._timeout, self._ctx).__await__()

    async def __aenter__(self) -> None:
        await self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        pass  # a rate limit's cost is spent, not held


class RateLimit(RateLimitBase):
    """RateLimit(rate, per=1.0, burst=None): ``rate`` units of cost per ``per`` seconds.

    GCRA: exact, one timestamp of state, no refill task. ``burst`` (default 1) is the most
    cost granted at one instant and the largest single cost; with ``burst=1`` and unit
    costs, no window of ``per`` seconds ever sees more than ``rate``. Waiters are served
    strictly FIFO, a large cost at the head is not overtaken. ``clock=`` (keyword) takes a
    ``corral.testing.ManualClock`` for tests. ``as_threads()`` is the same limit for threads.

    >>> import asyncio, corral
    >>> async def main():
    ...     rl = corral.RateLimit(1000, per=1.0, burst=10)
    ...     await rl.acquire(4)
    ...     async with rl.acquire(6):
    ...         pass
    ...     return rl.try_acquire(1)  # the burst is spent
    >>> asyncio.run(main())
    False
    """

    __slots__ = ("_acquire1",)
    _flavour = "aio"
    _acquire1: _Acquire

    def acquire(
        self, cost: float = 1, *, timeout: float | None = None, ctx: Context | None = None
    ) -> _Acquire:
        """Wait (FIFO) until ``cost`` conforms, then take it; ``await`` or ``async with``.

        ``ValueError`` at once if ``cost`` exceeds the burst. ``DeadlineExceeded`` after
        ``timeout``; ``Cancelled`` if ``ctx`` is done. A cancelled or timed-out acquire
        costs nothing.
        """
        if cost == 1 and timeout is None and ctx is None and cost.__class__ is int:
            try:
                return self._acquire1
            except AttributeError:
                if self._st.burst >= 1:
                    acq = self._acquire1 = _Acquire(self._st, 1, None, None)
                    return acq
        st = self._st
        c = check_cost(cost, st.burst, "RateLimit.acquire")
        if timeout is not None:
            _check_timeout(timeout)
        if ctx is not None:
            check_ctx_arg(ctx, "RateLimit.acquire")
        return _Acquire(st, c, timeout, ctx)

    def as_threads(self) -> ThreadRateLimit:
        """The same rate limit as a ``corral.threads.RateLimit``."""
        view: ThreadRateLimit = self._family["threads"]._view(self._st)
        return view


async def _joint(parts: list[tuple[Any, Any]], timeout: float | None, ctx: Context | None) -> Grant:
    if owed:
        pay_owed()
    if ctx is not None:
        check_ctx(ctx, "Limits.acquire")
    w = joint_acquire(parts, new_waiter)
    grant = Grant(parts)
    if w is not None:
        assert isinstance(w, AsyncWaiter)
        await park(w, timeout, ctx, lambda _: grant._undo())
    return grant


class _LimitsAcquire:
    """``await limits.acquire(...)`` (a :class:`Grant`) or ``async with ... as grant``."""

    __slots__ = ("_ctx", "_grant", "_parts", "_timeout")

    def __init__(self, parts: list[tuple[Any, Any]], timeout: float | None, ctx: Context | None):
        self._parts = parts
        self._timeout = timeout
        self._ctx = ctx
        self._grant: Grant | None = None

    def __await__(self) -> Generator[Any, None, Grant]:
        return _joint(self._parts, self._timeout, self._ctx).__await__()

    async def __aenter__(self) -> Grant:
        self._grant = await self
        return self._grant

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._grant is not None:
            self._grant.release()


class Limits(LimitsBase):
    """Limits(*limiters): acquire from several RateLimits and Semaphores atomically.

    A caller gets every grant at once or waits holding none, in FIFO order in each limiter.
    ``costs`` maps a limiter to its cost (1 for a limiter it does not name); the
    :class:`Grant` gives back semaphore permits on exit and can correct a cost after the
    fact with ``grant.adjust(limiter, actual)``.

    >>> import asyncio, corral
    >>> async def main():
    ...     rpm = corral.RateLimit(60, per=60.0)
    ...     tpm = corral.RateLimit(10_000, per=60.0, burst=2_000)
    ...     conns = corral.Semaphore(8)
    ...     limits = corral.Limits(rpm, tpm, conns)
    ...     async with limits.acquire({tpm: 1200}) as grant:
    ...         grant.adjust(tpm, 900)  # the reply used fewer tokens: refund 300
    ...         held = conns.statistics().held
    ...     return held, tpm.statistics().granted, conns.statistics().held
    >>> asyncio.run(main())
    (1, 900, 0)
    """

    __slots__ = ()
    _flavour = "aio"

    def acquire(
        self,
        costs: Mapping[Any, float] | None = None,
        *,
        timeout: float | None = None,
        ctx: Context | None = None,
    ) -> _LimitsAcquire:
        """Wait until every limiter can grant its cost at once, then take them all.

        Errors as ``RateLimit.acquire``; a cancelled or timed-out acquire takes nothing.
        """
        parts = self._parts(costs, "Limits.acquire")
        if timeout is not None:
            _check_timeout(timeout)
        if ctx is not None:
            check_ctx_arg(ctx, "Limits.acquire")
        return _LimitsAcquire(parts, timeout, ctx)

    def as_threads(self) -> ThreadLimits:
        """The same limits for threads (``corral.threads.Limits``)."""
        lim: ThreadLimits = self._view_as("threads")
        return lim
