"""Where a rate limiter reads the time and how it asks to be called back later.

A rate limit's permits come back with time, so a waiter at the head of its queue must be
woken when enough time has passed. That wake-up is the only thing a limiter needs from a
clock: ``now()`` and ``call_at(when, fn)``. The default clock is ``time.monotonic`` with
the shared deadline thread of :mod:`._core.timer` (started on demand, gone when idle; no
refill task per limiter). :class:`ManualClock` is the same interface driven by hand, so
tests of rate limits advance time explicitly and never sleep.
"""

from __future__ import annotations

import heapq
import itertools
import math
import threading
import time
from collections.abc import Callable
from typing import Protocol

from . import timer

__all__ = ["MONOTONIC", "Clock", "ManualClock", "MonotonicClock", "check_clock"]


class Clock(Protocol):
    """What a rate limiter needs from time: read it, and be called back at an instant."""

    def now(self) -> float: ...

    def call_at(self, when: float, callback: Callable[[], None]) -> object:
        """Run ``callback`` (in any thread) once ``now() >= when``; returns a handle."""
        ...

    def cancel(self, handle: object) -> None:
        """Stop a callback from :meth:`call_at` if it has not run; idempotent."""
        ...


class MonotonicClock:
    """``time.monotonic()``; call-backs run on corral's timer thread."""

    __slots__ = ()

    now = staticmethod(time.monotonic)

    def call_at(self, when: float, callback: Callable[[], None]) -> object:
        return timer.schedule(when, callback)

    def cancel(self, handle: object) -> None:
        assert isinstance(handle, timer.Timer)
        timer.cancel(handle)

    def __repr__(self) -> str:
        return "MonotonicClock()"


MONOTONIC = MonotonicClock()


class _Call:
    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False


class ManualClock:
    """ManualClock(start=0.0): a clock that moves only when :meth:`advance` is called.

    Call-backs that come due run inside ``advance``, in the advancing thread, in time
    order; one that schedules another due call-back gets it run in the same ``advance``.

    >>> clock = ManualClock()
    >>> seen = []
    >>> _ = clock.call_at(2.0, lambda: seen.append(clock.now()))
    >>> clock.advance(1.5); seen
    []
    >>> clock.advance(1.0); seen
    [2.5]
    """

    __slots__ = ("_heap", "_lock", "_now", "_seq")

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)
        self._heap: list[tuple[float, int, _Call]] = []
        self._seq = itertools.count()
        self._lock = threading.Lock()

    def now(self) -> float:
        """The current manual time (``start`` plus every ``advance`` so far)."""
        return self._now

    def call_at(self, when: float, callback: Callable[[], None]) -> object:
        """Run ``callback`` in the ``advance`` that reaches ``when``; returns a handle."""
        call = _Call(when, callback)
        with self._lock:
            heapq.heappush(self._heap, (when, next(self._seq), call))
        return call

    def cancel(self, handle: object) -> None:
        """Stop a call-back from :meth:`call_at` if it has not run; idempotent."""
        assert isinstance(handle, _Call)
        handle.cancelled = True

    @property
    def pending(self) -> int:
        """How many call-backs are scheduled and not cancelled."""
        with self._lock:
            return sum(1 for _, _, c in self._heap if not c.cancelled)

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` (>= 0) and run every call-back that came due."""
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
            raise TypeError(f"ManualClock.advance: seconds must be a number, got {seconds!r}")
        if not seconds >= 0 or math.isinf(seconds):
            raise ValueError(f"ManualClock.advance: seconds must be finite and >= 0, got {seconds}")
        with self._lock:
            self._now += seconds
            target = self._now
        while True:
            with self._lock:
                if not self._heap or self._heap[0][0] > target:
                    return
                _, _, call = heapq.heappop(self._heap)
            if not call.cancelled:
                call.cancelled = True
                call.callback()

    def __repr__(self) -> str:
        return f"ManualClock(now={self._now})"


def check_clock(clock: object, what: str) -> Clock:
    if clock is None:
        return MONOTONIC
    for attr in ("now", "call_at", "cancel"):
        if not callable(getattr(clock, attr, None)):
            raise TypeError(
                f"{what}: clock must have now(), call_at() and cancel() methods, "
                f"got {type(clock).__name__}"
            )
    return clock  # type: ignore[return-value]
