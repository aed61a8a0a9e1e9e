"""``rate=`` on ``fan_out`` and ``stage``: each call waits for a RateLimit or Limits first.

The stage's call is wrapped once, when the run is set up, in the form its workers call it:
awaited by task workers, called by thread workers (each with its own flavour's view of the
limiter). The acquire is bound to the run's Context, so a run that stops (first error,
consumer gone, ctx cancelled) aborts the waits at once; an aborted acquire costs nothing
(see ``_core/ratelimit.py``). A semaphore part of a ``Limits`` is held for the duration of
the call. A bad cost (or a cost function that raises) is that item's error, under the
stage's ``errors`` policy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._aio.ratelimit import Limits as AsyncLimits
from .._aio.ratelimit import RateLimit as AsyncRateLimit
from .._core.context import Context
from .._core.ratelimit import RateLimitState
from .._shells import LimitsBase, RateLimitBase
from .._threads.ratelimit import Limits as ThreadLimits
from .._threads.ratelimit import RateLimit as ThreadRateLimit

__all__ = ["check_rate", "rate_limited"]

Cost = Callable[[Any], Any]
#: The protocol of a limiter that makes the limited call itself (``corral.redis.RateLimit``
#: and ``Limits``): ``rate._corral_rate_wrap(call, cost, task, ctx)`` returns ``call``
#: preceded by its acquire, for task workers (``task``) or thread workers.
_WRAP = "_corral_rate_wrap"


def check_rate(rate: object, cost: object, what: str) -> None:
    if rate is None:
        if cost is not None:
            raise ValueError(f"{what}: cost needs a rate= to charge it to")
        return
    if not isinstance(rate, RateLimitBase | LimitsBase) and not hasattr(rate, _WRAP):
        raise TypeError(
            f"{what}: rate must be a corral RateLimit or Limits (either flavour, or "
            "corral.redis's), "
            f"got {type(rate).__name__}"
        )
    if cost is not None and not callable(cost):
        raise TypeError(f"{what}: cost must be a callable of the item, got {type(cost).__name__}")


def rate_limited(
    call: Callable[[Any], Any], rate: object, cost: Cost | None, task: bool, ctx: Context
) -> Callable[[Any], Any]:
    """``call`` preceded by an acquire of ``rate`` (``cost(item)``, default 1 per limiter)."""
    wrap = getattr(rate, _WRAP, None)
    if wrap is not None:  # a limiter that wraps the call itself (corral.redis's)
        return wrap(call, cost, task, ctx)  # type: ignore[no-any-return]
    if isinstance(rate, RateLimitBase):
        st: RateLimitState = rate._st
        if task:
            arl = AsyncRateLimit._view(st)

            async def limited_task(item: Any) -> Any:
                await arl.acquire(1 if cost is None else cost(item), ctx=ctx)
                return await call(item)

            return limited_task
        trl = ThreadRateLimit._view(st)

        def limited_thread(item: Any) -> Any:
            trl.acquire(1 if cost is None else cost(item), ctx=ctx)
            return call(item)

        return limited_thread
    assert isinstance(rate, LimitsBase)
    if task:
        alim = AsyncLimits(*rate.limiters)

        async def joint_task(item: Any) -> Any:
            async with alim.acquire(None if cost is None else cost(item), ctx=ctx):
                return await call(item)

        return joint_task
    tlim = ThreadLimits(*rate.limiters)

    def joint_thread(item: Any) -> Any:
        with tlim.acquire(None if cost is None else cost(item), ctx=ctx):
            return call(item)

    return joint_thread
