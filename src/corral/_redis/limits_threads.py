# GENERATED from src/corral/_redis/limits_aio.py by scripts/unasync_patterns.py.
# Do not edit: change limits_aio.py (or _rt_threads.py) and run the script again.
"""``corral.threads.redis.Limits``, for threads: several Redis rate limits, and at most one Redis
semaphore, acquired all or nothing in one script (``rate_scripts.LIMITS_ACQUIRE``). The
waiting is ``rate_aio._acquire``'s. Written once, here: ``limits_threads.py`` is generated
from this file by ``scripts/unasync_patterns.py``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .._core.context import Context, _check_timeout
from .._core.joint import named_costs
from .._core.semaphore import check_weight
from . import _rt_threads as rt
from .rate_common import CrossSlot
from .rate_threads import Grant, RateLimit, TryFailed, _acquire, _wrap
from .threads_semaphore import Semaphore

__all__ = ["Limits"]


class Limits:
    """Limits(*limiters): acquire from several ``corral.threads.redis.RateLimit``\\ s, and at most
    one ``corral.threads.redis.Semaphore``, atomically: e.g. an account's requests per minute,
    tokens per minute and concurrent calls.

    One script grants every cost at one instant (and the semaphore's permits) or takes
    nothing: a caller never holds one limit while it waits for another. A waiter queues in
    every limiter's queue (the semaphore's too) and is granted when it heads them all:
    FIFO in each, across processes, and head-of-line (a waiter at the head of one queue
    holds back the waiters behind it there, even those that would fit). The grant holds
    the semaphore's permits as a ``Permit`` does (leased and renewed, ``grant.ctx``,
    ``grant.fence``, given back at the end of ``with``); ``grant.adjust`` corrects a
    rate limit's cost.

    The limiters must share a client, a namespace and a hash tag, so every key is in one
    Cluster slot: the rate limits' ``tag=``, and the semaphore's (``Semaphore(...,
    tag=...)``; by default its name); ``CrossSlot`` otherwise, naming the limiter whose tag
    differs. A tag per tenant scales across a Cluster; a global limit combined with
    per-tenant limits puts every tenant on the global limit's slot. At least one rate limit
    (a semaphore alone needs no Limits), and one semaphore at most.

    >>> import corral.threads.redis, redis
    >>> def main(url):  # doctest: +SKIP
    ...     with redis.Redis.from_url(url) as client:
    ...         rpm = corral.threads.redis.RateLimit(client, "rpm", 600, per=60.0, tag="acct")
    ...         tpm = corral.threads.redis.RateLimit(client, "tpm", 20_000, per=60.0,
    ...                                      burst=20_000, tag="acct")
    ...         conc = corral.threads.redis.Semaphore(client, "conc", 8, tag="acct")
    ...         limits = corral.threads.redis.Limits(rpm, tpm, conc)
    ...         with limits.acquire({tpm: 1200}) as grant:
    ...             used = 900  # the reply's real token count
    ...             grant.adjust(tpm, used)
    """

    __slots__ = ("_limiters", "_members", "_sem")

    def __init__(self, *limiters: RateLimit | Semaphore) -> None:
        what = "redis.Limits"
        if not limiters:
            raise ValueError(f"{what}: limiters must name at least one RateLimit")
        members: list[RateLimit] = []
        sem: Semaphore | None = None
        for lim in limiters:
            if sum(m is lim for m in limiters) > 1:
                raise ValueError(f"{what}: limiters lists {lim!r} twice")
            if isinstance(lim, RateLimit):
                members.append(lim)
            elif isinstance(lim, Semaphore):
                if sem is not None:
                    raise ValueError(
                        f"{what}: limiters lists two semaphores ({sem!r}, {lim!r}); a Redis "
                        "Limits takes one corral.threads.redis.Semaphore at most"
                    )
                sem = lim
            else:
                kind = type(lim).__name__
                raise TypeError(
                    f"{what}: limiters must be corral.threads.redis.RateLimit or "
                    f"corral.threads.redis.Semaphore, got {kind}"
                )
        if not members:
            raise ValueError(
                f"{what}: limiters must name at least one corral.threads.redis.RateLimit "
                "(a semaphore alone needs no Limits: use its acquire)"
            )
        first = members[0]
        for m in members:
            if m._client is not first._client or m._k.group != first._k.group:
                raise CrossSlot(
                    f"{what}: {m!r} and {first!r} do not share one client, namespace and "
                    "tag: their keys may live on different Cluster slots. Make every limiter "
                    "of one Limits with the same tag=..."
                )
        tag = first._k.group[1]
        if sem is not None and (sem._client is not first._client or sem._k.tag != tag):
            raise CrossSlot(
                f"{what}: the semaphore {sem._k.name!r} has the hash tag {sem._k.tag!r} (its "
                f"name, unless tag= is given), the rate limits {tag!r} (or another client): "
                f"its keys may live on another Cluster slot. Make it with "
                f"Semaphore(client, {sem._k.name!r}, ..., tag={tag!r}) on the same client"
            )
        self._limiters = limiters
        self._members = members
        self._sem = sem

    @property
    def limiters(self) -> tuple[RateLimit | Semaphore, ...]:
        """The limiters, as given."""
        return self._limiters

    def acquire(
        self,
        costs: Mapping[Any, float] | None = None,
        *,
        timeout: float | None = None,
        ctx: Context | None = None,
    ) -> Grant:
        """Wait until every limiter can grant its cost (``costs``; 1 for a limiter it does
        not name; a semaphore's cost is its number of permits) at one instant, then take
        them all. Errors as ``RateLimit.acquire``; a semaphore's permits as
        ``Semaphore.acquire`` (``SizeConflict``)."""
        what = "redis.Limits.acquire"
        cs, weight = self._costs(costs, what)
        if timeout is not None:
            _check_timeout(timeout)
        return rt.acquiring(_acquire, self._members, cs, timeout, ctx, what, self._sem, weight)

    def try_acquire(self, costs: Mapping[Any, float] | None = None) -> Grant | None:
        """A :class:`Grant` if every cost (and the semaphore's permits) is granted *now*
        and nobody is queued in any of them; else ``None``, leaving no trace. Never waits
        (nor passes a waiter)."""
        what = "redis.Limits.try_acquire"
        cs, weight = self._costs(costs, what)
        try:
            return _acquire(self._members, cs, None, None, what, self._sem, weight, True)
        except TryFailed:
            return None

    def _costs(self, costs: Mapping[Any, float] | None, what: str) -> tuple[list[float], int]:
        limiters = self._limiters
        given = named_costs(
            costs, lambda lim: id(lim) if any(lim is m for m in limiters) else None, what
        )
        cs = [m._k.cost(given.get(id(m), 1), what) for m in self._members]
        sem = self._sem
        weight = 0 if sem is None else check_weight(given.get(id(sem), 1), sem.size, what)
        return cs, weight

    def _corral_rate_wrap(
        self, call: Callable[[Any], Any], cost: Callable[[Any], Any] | None, task: bool, ctx: Any
    ) -> Callable[[Any], Any]:
        """``rate=`` on ``fan_out``/``stage`` (see ``_patterns/_rate.py``)."""
        return _wrap(self, call, cost, task, ctx)

    def __repr__(self) -> str:
        return f"<corral.threads.redis.Limits of {len(self._limiters)}>"
