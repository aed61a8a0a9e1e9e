"""The rate limit's rules, once: GCRA (the generic cell rate algorithm), weighted, FIFO.

A rate limit is a semaphore whose permits come back with time. GCRA keeps one number,
``tat`` (the *theoretical arrival time*): the instant at which everything granted so far
would have been paid for at the sustained rate. With ``T = per / rate`` seconds per unit
of cost, a request of cost ``c`` conforms at ``now`` iff ``now >= tat + (c - burst) * T``,
and taking it moves ``tat`` to ``max(tat, now) + c * T``. Hence, exactly and with no
refill task: at most ``burst`` units at one instant, and at most ``burst + w / T`` units in
any window of ``w`` seconds (with the default ``burst=1`` and unit costs: never more than
``rate`` in any window of ``per`` seconds).

The queue follows the semaphore's rules (``semaphore.py``): strict FIFO, head-of-line
blocking (a large cost at the head is not overtaken by small ones, so it is not starved),
no barging (``try_acquire`` fails while anyone waits), a cost above ``burst`` is a
``ValueError`` at once, and the claim protocol decides a race between a grant and an
abort. A grant that has to be undone (the waiter was cancelled after it, or its loop is
gone) gives its cost back: ``tat -= c * T``.

Only the head waiter can be the next one granted, so one clock call-back is armed, for the
head's due time; it re-runs the grant loop. A waiter granted by that call-back is charged
as of the instant it became due when the wake-up came at most ``CATCH_UP`` seconds late:
the timer thread's latency must not lower the rate (charging from ``now`` would add every
wake-up's lateness to the schedule: at 500/s, 0.1 ms late per grant is 5 % slow). After a
longer stall it is charged from ``now - CATCH_UP``, so a stall is not made up in a burst.
(``CATCH_UP`` is capped at one interval ``T``: a late wake-up then lets at most one unit
more through at once than an on-time one would.)
Only a timer's lateness is made up: a waiter granted because someone ahead left, or a
joint acquire granted because another limiter freed up, is charged from ``now``.

Entries of a joint acquire (``Limits``, see ``joint.py``) are never granted here: when
one reaches the head and fits, the grant loop stops and returns it, and the caller runs
the joint attempt after releasing this lock.
"""

from __future__ import annotations

import math
import threading
import weakref
from collections import deque
from dataclasses import dataclass
from typing import Any

from . import tracking
from .clock import Clock
from .joint import CATCH_UP, Joint, run_joints
from .waiter import Entry, Waiter, WaiterFactory

__all__ = [
    "CATCH_UP",
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


class RateLimitState:
    __slots__ = (
        "__weakref__",
        "burst",
        "catch_up",
        "clock",
        "granted",
        "interval",
        "lock",
        "now",
        "per",
        "rate",
        "tat",
        "timer",
        "timer_when",
        "views",
        "waiters",
    )

    def __init__(self, rate: float, per: float, burst: float, clock: Clock) -> None:
        self.lock = threading.Lock()
        self.rate = rate
        self.per = per
        self.burst = burst
        self.clock = clock
        self.now = clock.now  # bound once: the uncontended acquire reads it inline
        self.interval = per / rate  # T: seconds of schedule one unit of cost uses
        # A late timer is made up for at most one interval: then a late wake-up lets at
        # most one unit more through at once than an on-time one would have.
        self.catch_up = min(CATCH_UP, self.interval)
        self.tat = -math.inf  # never used: the whole burst is available
        self.granted: float = 0
        self.waiters: deque[Entry] = deque()
        self.timer: object = None
        self.timer_when = math.nan
        self.views: dict[str, weakref.ref[Any]] = {}
        if tracking.enabled:
            tracking.track(self)

    def __repr__(self) -> str:
        return (
            f"<rate limit {id(self):#x} {self.rate}/{self.per}s burst={self.burst} "
            f"queued={len(self.waiters)}>"
        )

    # -- the GCRA rule, under the lock ------------------------------------------------------

    def _take_locked(self, c: float, at: float) -> None:
        tat = self.tat
        self.tat = (tat if tat > at else at) + c * self.interval
        self.granted += c

    def _give_back_locked(self, c: float) -> None:
        self.tat -= c * self.interval
        self.granted -= c

    def try_take_locked(self, c: float) -> bool:
        """The uncontended case: grant ``c`` now if nobody waits and it conforms."""
        if self.waiters:
            return False
        now = self.clock.now()
        if now + EPS >= self.tat + (c - self.burst) * self.interval:
            self._take_locked(c, now)
            return True
        return False

    # -- blocking entry points ----------------------------------------------------------------

    def acquire(self, c: float, make_waiter: WaiterFactory) -> Waiter | None:
        lock = self.lock
        lock.acquire()
        try:
            if self.try_take_locked(c):
                return None
            w = make_waiter()
            e = Entry(w, 0, c, self)
            w.entries = [e]
            self.waiters.append(e)
            if len(self.waiters) == 1:
                self._arm_locked(self.tat + (c - self.burst) * self.interval)
            return w
        finally:
            lock.release()

    def try_acquire(self, c: float) -> bool:
        with self.lock:
            return self.try_take_locked(c)

    def give_back(self, c: float) -> None:
        """Refund ``c`` (an undone grant, or a ``Grant.adjust`` down); may grant others."""
        with self.lock:
            self._give_back_locked(c)
            tries = self._grant_locked() if self.waiters else None
        if tries:
            run_joints(tries)

    def charge(self, c: float) -> None:
        """Charge ``c`` more after the fact (``Grant.adjust`` up): never waits, may owe."""
        with self.lock:
            self._take_locked(c, self.clock.now())
            # The head's due time moved later: re-arm (its grant cannot be sooner).
            tries = self._grant_locked() if self.waiters else None
        if tries:
            run_joints(tries)

    # -- the grant loop -----------------------------------------------------------------------

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
            tries = self._grant_locked(self.catch_up)
        if tries:
            run_joints(tries, self)

    def _grant_locked(self, catch_up: float = 0.0) -> list[Joint] | None:
        """Grant from the head while it conforms. ``catch_up``: how far back a grant may be
        charged (only a timer wake-up's lateness is made up; a waiter that was due long ago
        because it waited behind someone is charged from now)."""
        q = self.waiters
        clock = self.clock
        while q:
            e = q[0]
            if e.waiter.done:  # stale: timed out or cancelled, not yet unlinked
                q.popleft()
                continue
            c = e.item
            due = self.tat + (c - self.burst) * self.interval
            now = clock.now()
            if now + EPS < due:
                self._arm_locked(due)
                return None  # head-of-line: nobody behind may overtake it
            if e.index < 0:  # a joint acquire: granted with its other limiters or not at all
                self._disarm_locked()
                return [e.joint]  # type: ignore[attr-defined]
            q.popleft()
            floor = now - catch_up
            self._take_locked(c, due if due > floor else floor)
            if not e.waiter.complete(0, None):
                self._give_back_locked(c)  # lost the claim race to an abort, or loop gone
        self._disarm_locked()
        return None

    def _unlink(self, entry: Entry) -> None:
        with self.lock:
            q = self.waiters
            was_head = bool(q) and q[0] is entry
            try:
                q.remove(entry)
            except ValueError:
                return
            tries = self._grant_locked() if was_head else None
        if tries:
            run_joints(tries)

    # -- the joint-acquire protocol (see joint.py); called with this lock held -----------------

    def can_take_locked(self, c: float) -> bool:
        return not self.waiters and (
            self.clock.now() + EPS >= self.tat + (c - self.burst) * self.interval
        )

    def take_now_locked(self, c: float) -> None:
        self._take_locked(c, self.clock.now())

    def joint_ready_locked(self, entry: Entry) -> bool:
        # A stale head is left for its own unlink, which runs the grant loop for the next
        # head (see SemaphoreState.joint_ready_locked: popping it here loses that wake-up).
        q = self.waiters
        if not q or q[0] is not entry:
            return False
        due = self.tat + (entry.item - self.burst) * self.interval
        now = self.clock.now()
        if now + EPS < due:
            self._arm_locked(due)
            return False
        return True

    def joint_take_locked(self, entry: Entry, timed: bool) -> None:
        self.waiters.popleft()
        c = entry.item
        due = self.tat + (c - self.burst) * self.interval
        floor = self.clock.now() - (self.catch_up if timed else 0.0)
        self._take_locked(c, due if due > floor else floor)

    def joint_untake_locked(self, entry: Entry) -> None:
        self._give_back_locked(entry.item)

    # -- introspection ------------------------------------------------------------------------

    def statistics(self) -> RateLimitStatistics:
        with self.lock:
            live = [e for e in self.waiters if not e.waiter.done]
            ahead = max(self.tat - self.clock.now(), 0.0) / self.interval
            return RateLimitStatistics(
                rate=self.rate,
                per=self.per,
                burst=self.burst,
                available=round(self.burst - ahead, 9),  # float sums: 0.9999999999999996
                waiting=len(live),
                waiting_cost=sum(e.item for e in live),
                granted=self.granted,
            )

    def queued_waiters(self) -> int:
        with self.lock:
            return sum(1 for e in self.waiters if not e.waiter.done)
