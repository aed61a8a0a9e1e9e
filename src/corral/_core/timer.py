"""One lazily started timer thread for Context deadlines.

Deadlines must fire even when nobody is waiting (``after_func`` callbacks, ``ctx.err``
readers in other threads), so they cannot live on an event loop: a Context belongs to no
loop. A single daemon thread runs a heap of deadlines and exits as soon as no live timer
is left, so an idle program (and every test) has no extra thread. Callbacks run on the
timer thread and must be short: they cancel a Context, which only claims and wakes
waiters.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable

from .threads import start_thread

__all__ = ["Timer", "cancel", "schedule", "wait_idle"]

_log = logging.getLogger("corral")


class Timer:
    """A handle for a scheduled callback; :func:`cancel` it to stop it."""

    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False


_cond = threading.Condition(threading.Lock())
_heap: list[tuple[float, int, Timer]] = []
_seq = itertools.count()
_live = 0
_thread: threading.Thread | None = None


def _noop() -> None:
    pass


def schedule(when: float, callback: Callable[[], None]) -> Timer:
    """Run ``callback`` on the timer thread at ``time.monotonic() >= when``."""
    global _live, _thread
    timer = Timer(when, callback)
    entry = (when, next(_seq), timer)
    with _cond:
        if _thread is None:
            # An infrastructure thread: an empty context, whoever schedules first (its
            # callbacks, after_func ones included, must not see that caller's contextvars).
            # Started before the entry is pushed: if it cannot start, nothing was scheduled.
            _thread = start_thread(_run, name="corral-timer", what="a deadline", context=None)
        else:
            _cond.notify()
        heapq.heappush(_heap, entry)
        _live += 1
    return timer


def cancel(timer: Timer) -> None:
    """Stop ``timer`` if it has not fired; idempotent."""
    global _live
    with _cond:
        if timer.cancelled:
            return
        timer.cancelled = True
        # The heap keeps the entry until its deadline comes up; drop the callback now so
        # it does not keep the cancelled Context (and all it references) alive till then.
        timer.callback = _noop
        _live -= 1
        if _live == 0:
            # Let the thread see it has nothing to do and exit now, not at the old deadline.
            _heap.clear()
            _cond.notify()


def _run() -> None:
    global _live, _thread
    while True:
        with _cond:
            while True:
                while _heap and _heap[0][2].cancelled:
                    heapq.heappop(_heap)
                if not _heap:
                    _thread = None
                    _cond.notify_all()  # wake wait_idle()
                    return
                when, _, timer = _heap[0]
                delay = when - time.monotonic()
                if delay <= 0:
                    heapq.heappop(_heap)
                    timer.cancelled = True  # fired: a later cancel() is a no-op
                    _live -= 1
                    break
                _cond.wait(delay)
        try:
            timer.callback()
        except Exception:  # a broken callback must not stop every other deadline
            _log.exception("corral timer callback %r failed", timer.callback)


def wait_idle(timeout: float = 5.0) -> bool:
    """Wait until no timer is pending and the thread has exited (for leak checks)."""
    deadline = time.monotonic() + timeout
    with _cond:
        while _thread is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or _live > 0:
                return _thread is None
            _cond.wait(remaining)
        return True
