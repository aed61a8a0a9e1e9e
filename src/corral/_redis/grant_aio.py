"""The grant of a ``corral.redis.RateLimit`` or ``Limits`` acquire, for asyncio.

Written once, here: ``grant_threads.py`` is generated from this file by
``scripts/unasync_patterns.py``."""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING

from .._core.context import Context, background
from .aio_semaphore import Permit, Semaphore

if TYPE_CHECKING:
    from .rate_aio import RateLimit

__all__ = ["Grant"]


class Grant:
    """What one acquire of a ``corral.redis.RateLimit`` or ``Limits`` took.

    A rate limit's cost is spent, not held, but it can be corrected once the real cost is
    known: ``await grant.adjust(limiter, actual)`` charges the difference (a charge may go
    beyond the burst: the limiter is then in debt and later acquires wait until it is paid
    off) or refunds it, in one script call.

    A grant of a :class:`Limits` with a ``corral.redis.Semaphore`` also holds that
    semaphore's permits, as a :class:`Permit` does (``grant.permit``): under a renewed
    lease, given back by ``release()`` (``async with`` does it), or when the lease runs out
    if this process dies; ``grant.ctx`` is cancelled with a ``LeaseLost`` cause if the lease
    is lost, and ``grant.fence`` is the grant's fencing token (the semaphore's sequence).
    """

    __slots__ = ("_costs", "_members", "_permit", "_released")

    def __init__(
        self, members: list[RateLimit], costs: list[float], permit: Permit | None = None
    ) -> None:
        self._members = members
        self._costs = costs
        self._permit = permit
        self._released = False

    @property
    def costs(self) -> dict[RateLimit | Semaphore, float]:
        """The cost currently charged to each limiter (after adjustments); a semaphore's
        is the number of permits held."""
        out: dict[RateLimit | Semaphore, float] = dict(zip(self._members, self._costs, strict=True))
        if self._permit is not None:
            out[self._permit._sem] = self._permit.n
        return out

    def cost(self, limiter: RateLimit | Semaphore) -> float:
        """What this grant currently charges ``limiter`` (a semaphore: its permits)."""
        if self._permit is not None and limiter is self._permit._sem:
            return self._permit.n
        return self._costs[self._index(limiter, "Grant.cost")]

    @property
    def permit(self) -> Permit | None:
        """The semaphore permits this grant holds (None: no semaphore in the Limits)."""
        return self._permit

    @property
    def ctx(self) -> Context:
        """The permits' lease: cancelled (cause ``LeaseLost``) when it is lost, done at
        release. A grant without a semaphore holds nothing that can be lost: ``background()``."""
        return background() if self._permit is None else self._permit.ctx

    @property
    def fence(self) -> int | None:
        """The semaphore grant's fencing token (None: no semaphore in the Limits)."""
        return None if self._permit is None else self._permit.fence

    async def adjust(self, limiter: RateLimit | Semaphore, actual: float) -> None:
        """Correct what this grant charged ``limiter`` to ``actual``, in Redis, now.

        Rate limits only: a semaphore's permits are held, not spent (``TypeError``)."""
        if self._permit is not None and limiter is self._permit._sem:
            raise TypeError(
                f"Grant.adjust: {limiter!r} is a semaphore: its permits are held, not spent, "
                "so there is nothing to adjust; adjust applies to the rate limits (release "
                "the grant to give the permits back)"
            )
        i = self._index(limiter, "Grant.adjust")
        if isinstance(actual, bool) or not isinstance(actual, int | float):
            raise TypeError(f"Grant.adjust: actual must be a number, got {type(actual).__name__}")
        if not (actual >= 0 and actual < float("inf")):
            raise ValueError(f"Grant.adjust: actual must be finite and >= 0, got {actual}")
        delta = actual - self._costs[i]
        if delta:
            await self._members[i]._adjust(delta)
        self._costs[i] = actual

    def _index(self, limiter: object, what: str) -> int:
        for i, m in enumerate(self._members):
            if m is limiter:
                return i
        raise ValueError(f"{what}: limiter is not one of this grant's limiters")

    async def release(self) -> None:
        """Give back the semaphore permits, if any (a rate limit's cost is spent);
        idempotent. ``LeaseLost`` if their lease was lost first, as ``Permit.release``."""
        if self._permit is None or self._released:
            return
        self._released = True
        await self._permit.release()

    async def __aenter__(self) -> Grant:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.release()
