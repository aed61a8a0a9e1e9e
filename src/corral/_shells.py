"""What both flavours' shells share: the non-blocking half of each public class.

Only waiting differs between ``corral.Channel`` and ``corral.threads.Channel``; the
non-blocking methods, statistics and select cases are written here once. Likewise for
``Semaphore`` and for ``Group`` (whose shells differ in how workers run and are waited for).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import TracebackType
from typing import Any, ClassVar, Generic, Literal, Self, TypeVar

from ._core import views
from ._core.channel import (
    CLOSED,
    EMPTY,
    UNBOUNDED,
    ChannelState,
    ChannelStatistics,
    RecvCase,
    SendCase,
    check_capacity,
)
from ._core.clock import Clock, check_clock
from ._core.context import CancelContext, Context, check_ctx
from ._core.group import GroupState, GroupStatistics, check_group_args, check_limit
from ._core.joint import JointLimiter, named_costs, run_joints
from ._core.ratelimit import RateLimitState, RateLimitStatistics, check_cost, check_rate_args
from ._core.semaphore import SemaphoreState, SemaphoreStatistics, check_size, check_weight
from ._errors import GroupError, WouldBlock

__all__ = [
    "ChannelBase",
    "Grant",
    "GroupBase",
    "LimitsBase",
    "RateLimitBase",
    "SemaphoreBase",
    "check_ctx",
]

T = TypeVar("T")


class ChannelBase(views.Flavoured, Generic[T]):
    __slots__ = ("__weakref__", "_st")
    _flavour: str = ""
    _family = views.family("channel")

    def __init__(self, capacity: float = 0) -> None:
        self._st: ChannelState[T] = ChannelState(check_capacity(capacity))
        views.register(self._st, self._flavour, self)

    @classmethod
    def _view(cls, st: ChannelState[Any]) -> Self:
        return views.view_of(cls, cls._flavour, st)

    def send_nowait(self, item: T) -> None:
        """Send without waiting; raise ``WouldBlock`` if no receiver or buffer slot is free."""
        st = self._st
        with st.lock:
            if st.send_locked(item):
                return
        raise WouldBlock("send_nowait: channel is full and no receiver is waiting")

    def recv_nowait(self) -> T:
        """Receive without waiting; ``WouldBlock`` if nothing is ready, ``EndOfChannel`` at end."""
        st = self._st
        with st.lock:
            item = st.recv_locked()
        if item is EMPTY:
            raise WouldBlock("recv_nowait: no item is ready")
        if item is CLOSED:
            raise st.ended()
        return item  # type: ignore[no-any-return]

    def close(self, error: BaseException | None = None) -> bool:
        """Close the channel; ``True`` the first time, ``False`` (and no effect) after.

        Buffered items are still delivered; then receivers get ``EndOfChannel``, or, if
        ``error`` is given, ``error`` (the first receiver; later ones a copy chained to it):
        a producer that fails says so to its consumers. Waiting senders get
        ``ChannelClosed`` (their items were not sent). ``select`` sees either end alike.

        >>> import corral.threads
        >>> ch = corral.threads.Channel(1)
        >>> ch.send_nowait("last")
        >>> ch.close(error=OSError("disk gone"))
        True
        >>> ch.recv()
        'last'
        >>> ch.recv()
        Traceback (most recent call last):
        OSError: disk gone
        """
        if error is not None and not isinstance(error, BaseException):
            raise TypeError(
                f"Channel.close: error must be an exception, got {type(error).__name__}"
            )
        return self._st.close(error)

    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called (items may still be buffered)."""
        return self._st.closed

    @property
    def capacity(self) -> float:
        """The buffer size: 0 for a rendezvous channel, ``math.inf`` for an unbounded one."""
        cap = self._st.cap
        return math.inf if cap == UNBOUNDED else cap

    def __len__(self) -> int:
        return len(self._st.buf)

    def statistics(self) -> ChannelStatistics:
        """A :class:`ChannelStatistics` snapshot."""
        return self._st.statistics()

    def recv_case(self) -> RecvCase:
        """A receive case for ``select``."""
        return RecvCase(self._st)

    def send_case(self, item: T) -> SendCase:
        """A case for ``select`` that sends ``item``."""
        return SendCase(self._st, item)

    def __repr__(self) -> str:
        s = self._st
        state = "closed" if s.closed else "open"
        return (
            f"<{type(self).__module__}.Channel capacity={self.capacity} len={len(s.buf)} {state}>"
        )


class SemaphoreBase(views.Flavoured):
    __slots__ = ("__weakref__", "_st")
    _flavour: str = ""
    _family = views.family("semaphore")

    def __init__(self, size: int = 1) -> None:
        self._st = SemaphoreState(check_size(size))
        views.register(self._st, self._flavour, self)

    @classmethod
    def _view(cls, st: SemaphoreState) -> Self:
        return views.view_of(cls, cls._flavour, st)

    @property
    def size(self) -> int:
        """The number of permits."""
        return self._st.size

    def try_acquire(self, n: int = 1) -> bool:
        """Take ``n`` permits if free *and nobody is waiting*; never waits."""
        st = self._st
        return st.try_acquire(check_weight(n, st.size, "Semaphore.try_acquire"))

    def release(self, n: int = 1) -> None:
        """Give back ``n`` permits; ``ValueError`` if fewer than ``n`` are held."""
        st = self._st
        if n.__class__ is not int or not 0 <= n <= st.size:
            check_weight(n, st.size, "Semaphore.release")  # raises the right error
        # inline of corral._core.semaphore.SemaphoreState.release (a third of an
        # uncontended acquire+release pair is call overhead): one lock acquisition gives
        # the permits back and grants the queued acquires they satisfy. Releasing more
        # than is held falls through to the state method, which raises under its own
        # lock. Checked against the original by tests/reliability/test_rel_inlines.py.
        lock = st.lock
        lock.acquire()
        try:
            held = n <= st.cur
            if held:
                st.cur -= n
                tries = st._grant_locked() if st.waiters else None
        finally:
            lock.release()
        if not held:
            st.release(n)  # raises under the state's lock
        elif tries:
            run_joints(tries)  # joint acquires at the head: outside the lock (joint.py)

    def statistics(self) -> SemaphoreStatistics:
        """A :class:`SemaphoreStatistics` snapshot."""
        return self._st.statistics()

    def __repr__(self) -> str:
        st = self._st
        return f"<{type(self).__module__}.Semaphore size={st.size} held={st.cur}>"


class GroupBase:
    """Everything of a ``Group`` but starting workers and waiting for them.

    A subclass adds ``go``/``try_go``/``wait`` and its ``with`` protocol, :meth:`_init_flavour`
    and a ``_pool`` slot (the worker threads it owns, or ``None``), which ``__del__`` shuts
    down.
    """

    __slots__ = ("__weakref__", "_entered", "_st")
    #: the public name, for messages and the repr
    _public_name: ClassVar[str] = ""
    #: the block that waits for the group (``with`` or ``async with``), for messages
    _block: ClassVar[str] = ""

    def __init__(
        self,
        *,
        ctx: Context | None = None,
        limit: int | None = None,
        report: Literal["first", "all"] = "first",
    ) -> None:
        parent, lim = check_group_args(ctx, limit, report)
        self._st = GroupState(parent, lim, report)
        self._entered = False
        self._init_flavour()

    def _init_flavour(self) -> None:
        """Set up the flavour's own slots (called last by ``__init__``)."""
        raise NotImplementedError

    def _check_enter(self) -> None:
        if self._entered:
            raise GroupError("Group: a Group can be entered only once")
        if self._st.finished:
            raise GroupError("Group: the group has finished (wait() returned); start a new one")

    @property
    def ctx(self) -> CancelContext:
        """The group's Context: a child of ``ctx``, cancelled by the first error (its
        ``cause``) and when the group finishes. Workers watch it to stop early (a thread
        cannot be interrupted)."""
        return self._st.ctx

    @property
    def errors(self) -> tuple[BaseException, ...]:
        """Every error recorded so far, in order (cancellations excluded)."""
        return tuple(self._st.errors)

    def set_limit(self, n: int | None) -> None:
        """Run at most ``n`` workers at once (``None``: no limit; 0 blocks every ``go``).

        ``GroupError`` while workers run or wait for a slot, as Go's ``SetLimit`` panics.
        """
        self._st.set_limit(check_limit(n, "Group.set_limit"), "Group.set_limit")

    def statistics(self) -> GroupStatistics:
        """A :class:`GroupStatistics` snapshot."""
        return self._st.statistics()

    def __del__(self) -> None:
        st: GroupState | None = getattr(self, "_st", None)
        if st is None:
            return
        pool = getattr(self, "_pool", None)
        if pool is not None and not st.finished:
            pool.shutdown(join=False)
        first = st.unretrieved()
        if first is not None:
            raise GroupError(
                f"a {self._public_name} was garbage-collected without wait() or "
                f"`{self._block}`, and {len(st.errors)} of its workers failed; "
                "the first error is the cause"
            ) from first

    def __repr__(self) -> str:
        s = self._st.statistics()
        return (
            f"<{self._public_name} running={s.running} limit={s.limit} errors={s.errors}"
            f"{' finished' if s.finished else ''}>"
        )


# -- rate limits (RateLimit, Limits and their Grant) ------------------------------------------


class RateLimitBase(views.Flavoured):
    __slots__ = ("__weakref__", "_st")
    _flavour: str = ""
    _family = views.family("ratelimit")

    def __init__(
        self,
        rate: float,
        per: float = 1.0,
        burst: float | None = None,
        *,
        clock: Clock | None = None,
    ) -> None:
        r, p, b = check_rate_args(rate, per, burst)
        self._st = RateLimitState(r, p, b, check_clock(clock, "RateLimit"))
        views.register(self._st, self._flavour, self)

    @classmethod
    def _view(cls, st: RateLimitState) -> Self:
        return views.view_of(cls, cls._flavour, st)

    @property
    def rate(self) -> float:
        """Units of cost granted per ``per`` seconds, sustained."""
        return self._st.rate

    @property
    def per(self) -> float:
        """The period ``rate`` is counted over, in seconds."""
        return self._st.per

    @property
    def burst(self) -> float:
        """The most cost granted at one instant, and the largest cost one acquire may ask."""
        return self._st.burst

    def try_acquire(self, cost: float = 1) -> bool:
        """Take ``cost`` now if it conforms *and nobody is waiting*; never waits."""
        st = self._st
        return st.try_acquire(check_cost(cost, st.burst, "RateLimit.try_acquire"))

    def statistics(self) -> RateLimitStatistics:
        """A :class:`RateLimitStatistics` snapshot."""
        return self._st.statistics()

    def __repr__(self) -> str:
        st = self._st
        return f"<{type(self).__module__}.RateLimit rate={st.rate} per={st.per} burst={st.burst}>"


Limiter = Any  # a RateLimit or Semaphore of either flavour (typed loosely: no import cycle)


def _state_of(limiter: object, what: str) -> RateLimitState | SemaphoreState:
    st = getattr(limiter, "_st", None)
    if not isinstance(st, (RateLimitState, SemaphoreState)):
        raise TypeError(
            f"{what}: expected a corral RateLimit or Semaphore, got {type(limiter).__name__}"
        )
    return st


def _check_part(st: RateLimitState | SemaphoreState, c: object, what: str) -> float:
    if isinstance(st, SemaphoreState):
        return check_weight(c, st.size, what)
    return check_cost(c, st.burst, what)


class Grant:
    """What a ``Limits.acquire`` took: every part at once. Use it as a context manager (or
    call :meth:`release`) to give back the semaphore permits; rate-limit costs are spent,
    but can be corrected after the fact with :meth:`adjust`.

    >>> import corral.threads as ct
    >>> tpm, conns = ct.RateLimit(1000, per=60.0, burst=500), ct.Semaphore(4)
    >>> with ct.Limits(tpm, conns).acquire({tpm: 400}) as grant:
    ...     grant.adjust(tpm, 250)  # the reply used 250 tokens: 150 go back
    ...     print(grant.cost(tpm), tpm.statistics().granted, conns.statistics().held)
    250 250 1
    >>> conns.statistics().held
    0
    """

    __slots__ = ("_costs", "_released")

    def __init__(self, parts: list[tuple[JointLimiter, Any]]) -> None:
        self._costs: dict[Any, Any] = dict(parts)
        self._released = False

    @property
    def costs(self) -> dict[Any, float]:
        """The cost currently charged to each limiter's state (after adjustments)."""
        return dict(self._costs)

    def cost(self, limiter: Limiter) -> float:
        """What is currently charged to ``limiter`` by this grant."""
        st = _state_of(limiter, "Grant.cost")
        if st not in self._costs:
            raise ValueError("Grant.cost: limiter is not one of this grant's limiters")
        return self._costs[st]  # type: ignore[no-any-return]

    def adjust(self, limiter: Limiter, actual: float) -> None:
        """Correct what this grant charged ``limiter`` to ``actual``: the difference is
        charged (more) or refunded (less) now.

        A rate limit may be charged beyond its burst: it is then in debt and later
        acquires wait until it is paid off. A semaphore's permits can only be given back
        (``actual`` at most what is held): taking more would skip its queue.
        """
        st = _state_of(limiter, "Grant.adjust")
        if st not in self._costs:
            raise ValueError("Grant.adjust: limiter is not one of this grant's limiters")
        old = self._costs[st]
        if isinstance(st, SemaphoreState):
            if self._released:
                raise ValueError("Grant.adjust: the grant's semaphore permits were released")
            if actual.__class__ is not int or not 0 <= actual <= old:
                if isinstance(actual, int) and not isinstance(actual, bool) and actual > old:
                    raise ValueError(
                        f"Grant.adjust: actual={actual} is more than the {old} semaphore "
                        "permit(s) held: permits can only be given back"
                    )
                check_weight(actual, old, "Grant.adjust")  # raises the right error
            self._costs[st] = actual
            if actual < old:
                st.release(old - int(actual))
            return
        if isinstance(actual, bool) or not isinstance(actual, (int, float)):
            raise TypeError(f"Grant.adjust: actual must be a number, got {type(actual).__name__}")
        if not (actual >= 0 and actual < float("inf")):
            raise ValueError(f"Grant.adjust: actual must be finite and >= 0, got {actual}")
        self._costs[st] = actual
        if actual > old:
            st.charge(actual - old)
        elif actual < old:
            st.give_back(old - actual)

    def release(self) -> None:
        """Give back the semaphore permits (rate costs stay spent); idempotent."""
        if self._released:
            return
        self._released = True
        for st, c in self._costs.items():
            if isinstance(st, SemaphoreState) and c:
                st.release(c)

    def _undo(self) -> None:
        # Granted after it was cancelled or timed out: it must leave no effect at all.
        self._released = True
        for st, c in self._costs.items():
            st.abandon(c)

    def _land(self) -> None:
        # A parked joint acquire returns: its rate costs are charged as of now.
        for st, c in self._costs.items():
            if isinstance(st, RateLimitState):
                st.land(c)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        state = " released" if self._released else ""
        return f"<corral.Grant costs={list(self._costs.values())}{state}>"


class LimitsBase(views.Flavoured):
    __slots__ = ("_limiters", "_states", "_twin")
    _flavour: str = ""
    _family = views.family("limits")
    _public_name = "Limits"

    def __init__(self, *limiters: Limiter) -> None:
        if not limiters:
            raise ValueError("Limits: limiters must name at least one RateLimit or Semaphore")
        states: list[RateLimitState | SemaphoreState] = []
        for lim in limiters:
            st = _state_of(lim, "Limits")
            if st in states:
                raise ValueError(f"Limits: limiters lists {lim!r} twice")
            states.append(st)
        self._limiters = limiters
        self._states = states
        self._twin: LimitsBase | None = None  # the other flavour's view, made once

    def _view_as(self, flavour: str) -> Any:
        """The one other-flavour view (``as_threads()`` / ``as_async()``), as every ``as_*``:
        made on first use, then the same object both ways (a cycle the GC collects)."""
        twin = self._twin
        if twin is None:
            twin = self._family[flavour](*self._limiters)
            twin._twin = self
            self._twin = twin
        return twin

    @property
    def limiters(self) -> tuple[Limiter, ...]:
        """The limiters, as given."""
        return self._limiters

    def _parts(self, costs: Mapping[Limiter, float] | None, what: str) -> list[tuple[Any, Any]]:
        """One ``(state, cost)`` per limiter, in ``id(state)`` order (the lock order)."""
        states = self._states

        def member(lim: object) -> RateLimitState | SemaphoreState | None:
            st = _state_of(lim, what)
            return st if st in states else None

        named: dict[RateLimitState | SemaphoreState, Any] = named_costs(costs, member, what)
        given = {st: _check_part(st, c, what) for st, c in named.items()}
        parts = [(st, given.get(st, 1)) for st in self._states]
        for st, c in parts:
            if st not in given:
                _check_part(st, c, what)  # the default cost 1 must fit too
        parts.sort(key=lambda p: id(p[0]))
        return parts

    def __repr__(self) -> str:
        return f"<{type(self).__module__}.Limits {list(self._limiters)!r}>"
