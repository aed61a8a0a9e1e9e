"""The non-blocking half of ``RateLimit`` and ``Limits``, shared by both flavours.

(Kept apart from ``_shells.py`` only for size; ``_shells`` re-exports these names.)
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self

from ._core import views
from ._core.clock import Clock, check_clock
from ._core.joint import JointLimiter
from ._core.ratelimit import RateLimitState, RateLimitStatistics, check_cost, check_rate_args
from ._core.semaphore import SemaphoreState, check_weight

__all__ = ["Grant", "LimitsBase", "RateLimitBase", "flavour_class", "register_flavour"]

# The flavours' classes, registered by their modules on import, so that ``as_threads()`` /
# ``as_async()`` find the other flavour without the two modules importing each other.
_CLASSES: dict[tuple[str, str], type] = {}
_NAMESPACES = {"aio": "corral", "threads": "corral.threads"}


def register_flavour(flavour: str, cls: type) -> None:
    _CLASSES[flavour, cls.__name__] = cls


def flavour_class(flavour: str, name: str) -> Any:
    """The class ``name`` of ``flavour`` (``"aio"`` or ``"threads"``), importing its public
    namespace first if nothing imported it yet."""
    cls = _CLASSES.get((flavour, name))
    if cls is None:
        importlib.import_module(_NAMESPACES[flavour])
        cls = _CLASSES[flavour, name]
    return cls


class RateLimitBase:
    __slots__ = ("__weakref__", "_st")
    _flavour: str = ""

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
            st.give_back(c)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        state = " released" if self._released else ""
        return f"<corral.Grant costs={list(self._costs.values())}{state}>"


class LimitsBase:
    __slots__ = ("_limiters", "_states")
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

    @property
    def limiters(self) -> tuple[Limiter, ...]:
        """The limiters, as given."""
        return self._limiters

    def _parts(self, costs: Mapping[Limiter, float] | None, what: str) -> list[tuple[Any, Any]]:
        """One ``(state, cost)`` per limiter, in ``id(state)`` order (the lock order)."""
        given: dict[Any, Any] = {}
        if costs is not None:
            if not isinstance(costs, Mapping):
                raise TypeError(
                    f"{what}: costs must be a mapping of limiter to cost, "
                    f"got {type(costs).__name__}"
                )
            for lim, c in costs.items():
                st = _state_of(lim, what)
                if st not in self._states:
                    raise ValueError(f"{what}: costs names {lim!r}, which is not in these Limits")
                given[st] = _check_part(st, c, what)
        parts = [(st, given.get(st, 1)) for st in self._states]
        for st, c in parts:
            if st not in given:
                _check_part(st, c, what)  # the default cost 1 must fit too
        parts.sort(key=lambda p: id(p[0]))
        return parts

    def __repr__(self) -> str:
        return f"<{type(self).__module__}.Limits {list(self._limiters)!r}>"
