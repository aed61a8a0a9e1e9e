"""``corral.RateLimit`` and ``corral.Limits``: the asyncio views of rate limits."""

from __future__ import annotations

from collections.abc import Awaitable, Generator, Mapping
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .._core.context import Context, _check_timeout, check_ctx_arg
from .._core.joint import joint_acquire
from .._core.ratelimit import EPS, RateLimitState, check_cost
from .._core.semaphore import SemaphoreState
from .._core.waiter import AsyncWaiter, Waiter
from .._shells import Grant, LimitsBase, RateLimitBase, check_ctx
from .channel import new_waiter
from .wait import Handle, MustAwait, owed, park, pay_owed

if TYPE_CHECKING:
    from .._threads.ratelimit import Limits as ThreadLimits
    from .._threads.ratelimit import RateLimit as ThreadRateLimit

__all__ = ["Limits", "RateLimit"]

_DONE: Any = iter(())  # an exhausted iterator: awaiting it completes at once, in C


def _give_back(st: RateLimitState, c: float, _: Waiter) -> None:
    # Granted after it was cancelled or timed out: it must cost nothing.
    st.abandon(c)


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
    st.land(c)  # charged as of now, the instant this task resumes (see _core/ratelimit.py)


class RateLimitAcquire(Handle):
    """What ``rl.acquire(cost)`` returns (``corral.RateLimitAcquire``): ``await`` it, or
    enter it with ``async with`` (a rate limit's cost is spent, not given back). A cost
    that conforms was taken at the call; otherwise it waits when awaited, and one never
    awaited nor entered warns. Made by ``acquire()`` only; for annotations and
    ``isinstance``."""

    __slots__ = ()


class _Taken(RateLimitAcquire):
    """What ``acquire()`` returns when it took the cost at the call: awaiting it completes
    at once; ``async with`` is allowed (a rate limit's cost is spent, not held)."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        return _DONE  # type: ignore[no-any-return]

    async def __aenter__(self) -> None:
        pass

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        pass


_TAKEN = _Taken()


class _Acquire(MustAwait, RateLimitAcquire):
    """``await rl.acquire(c)`` or ``async with rl.acquire(c):`` when the call could not
    take the cost at once: it waits when awaited. One per call, so that one dropped
    without ``await`` / ``async with`` warns (``MustAwait``): it took nothing."""

    __slots__ = ("_c", "_ctx", "_st", "_timeout")
    _what = "RateLimit.acquire"

    def __init__(self, st: RateLimitState, c: float, timeout: float | None, ctx: Context | None):
        self._st = st
        self._c = c
        self._timeout = timeout
        self._ctx = ctx
        self._used = False

    def __await__(self) -> Generator[Any, None, None]:
        self._used = True
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
    costs, no window of ``per`` seconds ever sees more than ``rate`` acquires *return*
    (the instants your code runs at, on a loaded machine too): a waiter is charged from
    its return, so its wake-up latency is not made up (the price: with ``burst=1`` a
    queue is served at ``1 / (per / rate + latency)``; ``burst >= 2`` absorbs it).
    Waiters are served strictly FIFO, a large cost at the head is not overtaken.
    ``clock=`` (keyword) takes a ``corral.testing.ManualClock`` for tests.
    ``as_threads()`` is the same limit for threads.

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

    __slots__ = ()
    _flavour = "aio"

    def acquire(
        self, cost: float = 1, *, timeout: float | None = None, ctx: Context | None = None
    ) -> RateLimitAcquire:
        """Wait (FIFO) until ``cost`` conforms, then take it; ``await`` or ``async with``.

        ``ValueError`` at once if ``cost`` exceeds the burst. ``DeadlineExceeded`` after
        ``timeout``; ``Cancelled`` if ``ctx`` is done. A cancelled or timed-out acquire
        costs nothing. A cost that conforms now is taken at the call, so a forgotten
        ``await`` still counts; one that must wait does so when awaited, and one never
        awaited nor entered warns (``RuntimeWarning``), as a coroutine never awaited does.
        """
        st = self._st
        if cost == 1 and cost.__class__ is int and st.burst >= 1:
            c: float = 1
        else:
            c = check_cost(cost, st.burst, "RateLimit.acquire")
        if timeout is not None:
            _check_timeout(timeout)
        if ctx is None:
            if not owed:
                # inline of corral._core.ratelimit.RateLimitState._try_take_locked: the
                # GCRA test "now + EPS >= tat + (c - burst) * T", taken at the call. (A
                # grant still pending sends it the slow way, which decides exactly.)
                lock = st.lock
                lock.acquire()
                try:
                    if not st.waiters and not st.pending:
                        now = st.now()
                        tat = st.tat
                        interval = st.interval
                        if tat <= now + (st.burst - c) * interval + EPS:
                            st.tat = (tat if tat > now else now) + c * interval
                            st.granted += c
                            return _TAKEN
                finally:
                    lock.release()
        else:
            check_ctx_arg(ctx, "RateLimit.acquire")
        return _Acquire(st, c, timeout, ctx)

    def __aenter__(self) -> Awaitable[None]:
        """``async with rl:`` takes a cost of 1 (as ``async with rl.acquire():``)."""
        return self.acquire()

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        pass  # a rate limit's cost is spent, not held

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
        grant._land()
    return grant


class _LimitsAcquire(MustAwait):
    """``await limits.acquire(...)`` (a :class:`Grant`) or ``async with ... as grant``;
    one dropped without either warns (``MustAwait``): it took nothing."""

    __slots__ = ("_ctx", "_grant", "_parts", "_timeout")
    _what = "Limits.acquire"

    def __init__(self, parts: list[tuple[Any, Any]], timeout: float | None, ctx: Context | None):
        self._parts = parts
        self._timeout = timeout
        self._ctx = ctx
        self._grant: Grant | None = None
        self._used = False

    def __await__(self) -> Generator[Any, None, Grant]:
        self._used = True
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

    async def __aenter__(self) -> None:
        """``async with limits:`` takes a cost of 1 from every limiter (one permit of each
        semaphore), given back on exit: ``acquire(...)`` is the form with costs and a
        :class:`Grant` to adjust."""
        await _joint(self._parts(None, "Limits"), None, None)

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        for st, _ in self._parts(None, "Limits"):
            if isinstance(st, SemaphoreState):
                st.release(1)

    def as_threads(self) -> ThreadLimits:
        """The same limits for threads (``corral.threads.Limits``)."""
        lim: ThreadLimits = self._view_as("threads")
        return lim
