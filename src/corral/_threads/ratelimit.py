"""``corral.threads.RateLimit`` and ``corral.threads.Limits``: the blocking views."""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .._core.context import Context, _check_timeout
from .._core.joint import joint_acquire
from .._core.ratelimit import check_cost
from .._core.semaphore import SemaphoreState
from .._core.waiter import ThreadWaiter, Waiter
from .._shells import Grant, LimitsBase, RateLimitBase, check_ctx
from .wait import park

if TYPE_CHECKING:
    from .._aio.ratelimit import Limits as AsyncLimits
    from .._aio.ratelimit import RateLimit as AsyncRateLimit

__all__ = ["Limits", "RateLimit"]


class Taken:
    """A rate limit's cost, taken; ``with`` is allowed for symmetry (nothing is given back)."""

    __slots__ = ()

    def __enter__(self) -> Taken:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        pass


_TAKEN = Taken()


class RateLimit(RateLimitBase):
    """RateLimit(rate, per=1.0, burst=None): ``corral.RateLimit`` for threads.

    >>> import corral.threads
    >>> rl = corral.threads.RateLimit(1000, burst=5)
    >>> with rl.acquire(5):
    ...     print(rl.try_acquire())
    False
    """

    __slots__ = ()
    _flavour = "threads"

    def acquire(
        self, cost: float = 1, *, timeout: float | None = None, ctx: Context | None = None
    ) -> Taken:
        """Block (FIFO) until ``cost`` conforms, then take it.

        See ``corral.RateLimit.acquire`` for the errors.
        """
        st = self._st
        c = check_cost(cost, st.burst, "RateLimit.acquire")
        if timeout is not None:
            _check_timeout(timeout)
        if ctx is not None:
            check_ctx(ctx, "RateLimit.acquire")
        w = st.acquire(c, ThreadWaiter)
        if w is not None:
            assert isinstance(w, ThreadWaiter)

            def undo(_: Waiter) -> None:
                st.abandon(c)

            park(w, timeout, ctx, undo)
            st.land(c)  # charged as of now, the instant this thread returns
        return _TAKEN

    def __enter__(self) -> None:
        """``with rl:`` takes a cost of 1 (as ``with rl.acquire():``)."""
        self.acquire(1)

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        pass  # a rate limit's cost is spent, not held

    def as_async(self) -> AsyncRateLimit:
        """The same rate limit as a ``corral.RateLimit``."""
        view: AsyncRateLimit = self._family["aio"]._view(self._st)
        return view


class Limits(LimitsBase):
    """Limits(*limiters): ``corral.Limits`` for threads; ``acquire`` blocks.

    >>> import corral.threads as ct
    >>> rps, conns = ct.RateLimit(100), ct.Semaphore(2)
    >>> with ct.Limits(rps, conns).acquire({conns: 2}) as grant:
    ...     print(conns.statistics().held, grant.cost(rps))
    2 1
    """

    __slots__ = ()
    _flavour = "threads"

    def acquire(
        self,
        costs: Mapping[Any, float] | None = None,
        *,
        timeout: float | None = None,
        ctx: Context | None = None,
    ) -> Grant:
        """Block until every limiter can grant its cost at once; returns the :class:`Grant`
        (a context manager that gives back the semaphore permits)."""
        parts = self._parts(costs, "Limits.acquire")
        if timeout is not None:
            _check_timeout(timeout)
        if ctx is not None:
            check_ctx(ctx, "Limits.acquire")
        w = joint_acquire(parts, ThreadWaiter)
        grant = Grant(parts)
        if w is not None:
            assert isinstance(w, ThreadWaiter)
            park(w, timeout, ctx, lambda _: grant._undo())
            grant._land()
        return grant

    def __enter__(self) -> None:
        """``with limits:`` takes a cost of 1 from every limiter (one permit of each
        semaphore), given back on exit."""
        self.acquire()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        for st, _ in self._parts(None, "Limits"):
            if isinstance(st, SemaphoreState):
                st.release(1)

    def as_async(self) -> AsyncLimits:
        """The same limits for asyncio tasks (``corral.Limits``)."""
        lim: AsyncLimits = self._view_as("aio")
        return lim
