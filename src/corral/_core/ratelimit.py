"""The rate limit's rules, once: GCRA (the generic cell rate algorithm), weighted, FIFO.

A rate limit is a semaphore whose permits come back with time. GCRA keeps one number,
``tat`` (the *theoretical arrival time*): the instant at which everything taken so far
would have been paid for at the sustained rate. With ``T = per / rate`` seconds per unit
of cost, a cost ``c`` taken at ``t`` conforms iff ``t >= tat + (c - burst) * T``, and
moves ``tat`` to ``max(tat, t) + c * T``. Hence, with no refill task: at most ``burst``
units at one instant, and at most ``burst + w / T`` units in any window of ``w`` seconds
(with the default ``burst=1`` and unit costs: never more than ``rate`` in any window of
``per`` seconds, and consecutive acquires at least ``T`` apart).

**Whose instants.** The promise is about the instants at which ``acquire`` *returns to
its caller*, the ones a server counting requests sees. An uncontended acquire returns at
once: it is charged at ``now``. A parked one is granted here (by the timer, a refund, a
waiter ahead leaving) but returns only when its task or thread runs, later by a varying
amount (the loop was busy, the thread descheduled). Charging it at the grant let a late
return sit next to the following on-time one: 11 calls in a second at ``rate=10``. So a
grant to a parked waiter is *handed over*: its cost is ``pending`` (it counts against the
burst at once, so nothing more is granted on its account) and it is charged to ``tat``
when the waiter's shell calls :meth:`RateLimitState.land` as it returns, from that
instant; a grant the waiter never takes (cancelled or timed out after it) is abandoned
and costs nothing. By construction the returned instants then follow the GCRA rule
(``pending * T`` plus the schedule's debt never exceeds ``burst * T``; a landing moves
cost from one to the other and a grant is made only if the sum stays within the burst).

**The cost.** A waiter's wake-up latency is no longer made up: with ``burst=1`` each
return is spaced ``T`` from the previous *return*, so a queue of waiters is served at
``1 / (T + latency)``: at 10/s and 1 ms latency 1 % under the rate, at 1000/s and
0.1 ms 10 %. With ``burst >= 2`` the latency is absorbed (the next grant is due while
the previous one lands) and the sustained rate is kept, at the price of the burst.

The queue is the limiters' shared FIFO (``limiter.FifoLimiter``: head-of-line blocking,
no barging, the claim protocol, joint acquires); a cost above ``burst`` is a
``ValueError`` at once. Only the head waiter can be the next one granted, so one clock
call-back is armed, for the head's due time; it re-runs the grant loop. While a grant is
pending and the head cannot go before it lands, no call-back is armed: the landing
re-runs the loop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .clock import Clock
from .joint import run_joints
from .limiter import FifoLimiter

__all__ = [
    "EPS",
    "RateLimitState",
    "RateLimitStatistics",
    "check_cost",
    "check_rate_args",
]

#: Due times are sums of float intervals: one due "at 0.3 s" may be 0.30000000000000004.
#: A nanosecond of tolerance keeps a clock that reads exactly 0.3 from missing it.
EPS = 1e-9


@dataclass(frozen=True, slots=True)
class RateLimitStatistics:
    """A snapshot of a rate limit."""

    rate: float  #: units of cost per ``per`` seconds
    per: float
    burst: float  #: the most cost granted at one instant
    available: float  #: cost that could be granted now (negative: in debt after an adjust)
    waiting: int  #: number of queued acquires
    waiting_cost: float  #: cost the queued acquires ask for, in total
    granted: float  #: cost granted since creation, net of refunds


def _check_positive(x: object, name: str, what: str) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise TypeError(f"{what}: {name} must be a number, got {type(x).__name__}")
    if not (x > 0 and math.isfinite(x)):
        raise ValueError(f"{what}: {name} must be finite and > 0, got {x}")
    return x


def check_rate_args(rate: object, per: object, burst: object) -> tuple[float, float, float]:
    r = _check_positive(rate, "rate", "RateLimit")
    p = _check_positive(per, "per", "RateLimit")
    b = 1 if burst is None else _check_positive(burst, "burst", "RateLimit")
    return r, p, b


def check_cost(c: object, burst: float, what: str) -> float:
    if c.__class__ is int and 0 <= c <= burst:
        return c
    if isinstance(c, bool) or not isinstance(c, (int, float)):
        raise TypeError(f"{what}: cost must be a number, got {type(c).__name__}")
    if not (c >= 0 and math.isfinite(c)):
        raise ValueError(f"{what}: cost must be finite and >= 0, got {c}")
    if c > burst:
        raise ValueError(
            f"{what}: cost={c} is larger than the burst {burst}: it could never be granted "
            "(pass a larger burst= to the RateLimit)"
        )
    return c


class RateLimitState(FifoLimiter):
    __slots__ = (
        "burst",
        "clock",
        "granted",
        "interval",
        "now",
        "pending",
        "per",
        "rate",
        "tat",
        "timer",
        "timer_when",
    )

    def __init__(self, rate: float, per: float, burst: float, clock: Clock) -> None:
        self.rate = rate
        self.per = per
        self.burst = burst
        self.clock = clock
        self.now = clock.now  # bound once: the uncontended acquire reads it inline
        self.interval = per / rate  # T: seconds of schedule one unit of cost uses
        self.tat = -math.inf  # never used: the whole burst is available
        # Cost granted to parked waiters that have not returned yet (see the module docs).
        self.pending: float = 0
        self.granted: float = 0
        self.timer: object = None
        self.timer_when = math.nan
        super().__init__()

    def __repr__(self) -> str:
        return (
            f"<rate limit {id(self):#x} {self.rate}/{self.per}s burst={self.burst} "
            f"queued={len(self.waiters)}>"
        )

    # -- the GCRA rule, once ------------------------------------------------------------------

    def due_locked(self, c: float) -> float:
        """The instant from which ``c`` conforms (``inf``: not before a pending grant
        returns). Every "may ``c`` go now?" of this module is ``now + EPS >= due``."""
        owed = self.pending + c
        if owed - self.burst > EPS:
            return math.inf
        return self.tat + (owed - self.burst) * self.interval

    def _charge_locked(self, c: float, at: float) -> None:
        """Advance the schedule by ``c`` taken at ``at`` (an instant some acquire returned)."""
        tat = self.tat
        self.tat = (tat if tat > at else at) + c * self.interval

    # -- what FifoLimiter asks of a limiter (with the lock held) --------------------------------

    def _fits_locked(self, c: float) -> bool:
        return self.now() + EPS >= self.due_locked(c)

    def _take_locked(self, c: float) -> None:
        self._charge_locked(c, self.now())
        self.granted += c

    def _try_take_locked(self, c: float) -> bool:
        # _fits_locked then _take_locked, reading the clock once (the uncontended path).
        now = self.now()
        if now + EPS >= self.due_locked(c):
            self._charge_locked(c, now)
            self.granted += c
            return True
        return False

    def _hand_over_locked(self, c: float) -> None:
        # Not charged to the schedule yet: that happens when the waiter returns (land),
        # as of that instant. Until then it counts against the burst (due_locked).
        self.pending += c
        self.granted += c

    def _abandon_locked(self, c: float) -> None:
        self.pending = _settle(self.pending - c)
        self.granted -= c

    def _blocked_locked(self, c: float) -> None:
        due = self.due_locked(c)
        if due == math.inf:
            self._disarm_locked()  # the grant loop re-runs when a pending grant lands
        else:
            self._arm_locked(due)

    def _settled_locked(self) -> None:
        self._disarm_locked()

    # -- a parked acquire returns -------------------------------------------------------------

    def land(self, c: float) -> None:
        """The parked acquire granted ``c`` is returning to its caller now: charge ``c``
        from this instant (the one the caller sees); may grant the next waiter."""
        with self.lock:
            self.pending = _settle(self.pending - c)
            self._charge_locked(c, self.now())
            tries = self._grant_locked() if self.waiters else None
        if tries:
            run_joints(tries)

    # -- corrections after the fact (Grant.adjust) ----------------------------------------------

    def give_back(self, c: float) -> None:
        """Refund ``c`` taken earlier (``Grant.adjust`` down); may grant others."""
        with self.lock:
            self.tat -= c * self.interval
            self.granted -= c
            tries = self._grant_locked() if self.waiters else None
        if tries:
            run_joints(tries)

    def charge(self, c: float) -> None:
        """Charge ``c`` more after the fact (``Grant.adjust`` up): never waits, may owe."""
        with self.lock:
            self._take_locked(c)
            # The head's due time moved later: re-arm (its grant cannot be sooner).
            tries = self._grant_locked() if self.waiters else None
        if tries:
            run_joints(tries)

    # -- the timer ----------------------------------------------------------------------------

    def _arm_locked(self, due: float) -> None:
        when = due - EPS / 2  # then "now + EPS >= due" holds when it fires
        if self.timer is not None:
            if self.timer_when == when:
                return
            self.clock.cancel(self.timer)
        self.timer_when = when
        self.timer = self.clock.call_at(when, self._on_timer)

    def _disarm_locked(self) -> None:
        if self.timer is not None:
            self.clock.cancel(self.timer)
            self.timer = None

    def _on_timer(self) -> None:
        with self.lock:
            self.timer = None
            tries = self._grant_locked()
        if tries:
            run_joints(tries)

    # -- introspection ------------------------------------------------------------------------

    def statistics(self) -> RateLimitStatistics:
        with self.lock:
            waiting, cost = self._live_locked()
            ahead = max(self.tat - self.now(), 0.0) / self.interval + self.pending
            return RateLimitStatistics(
                rate=self.rate,
                per=self.per,
                burst=self.burst,
                available=round(self.burst - ahead, 9),  # float sums: 0.9999999999999996
                waiting=waiting,
                waiting_cost=cost,
                granted=self.granted,
            )


def _settle(pending: float) -> float:
    # Float costs (0.5 + 0.25 - ...) leave a residue: zero it, so the uncontended path
    # (which needs nothing pending) is not lost to 1e-17.
    return pending if pending > EPS else 0
