"""Where ``corral.threads.redis`` truly differs from ``corral.redis`` (asyncio).

The twin of ``_rt_aio`` (same names): ``threads.py``, generated from ``aio.py`` by
``scripts/unasync_patterns.py``, imports it as ``rt``. A thread cannot be interrupted inside
a socket read, so a follower's wait watches its flight's Context (``flight_context``), and
leases are renewed by helper threads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from .._core.context import Context
from .._core.singleflight import SingleFlightBase
from .._core.threads import start_thread
from .common import IO_ERRORS, Bound

__all__ = ["Guard", "Lock", "Renewer", "Ticker", "acquiring", "call", "flight_context"]

Lock = threading.Lock
#: A wait's limits: the flavour-neutral ones (nothing to add for a thread).
Guard = Bound
#: How long a Ticker's thread waits for a new holder before it ends.
_LINGER = 0.25
_now = time.monotonic
T = TypeVar("T")


def call(fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    """``fn(*args)``, in this thread (the local flight's own)."""
    return fn(*args)


def flight_context() -> Context:
    """The Context a follower's wait watches: its flight's, cancelled when every caller in
    this process left (the thread cannot be interrupted otherwise)."""
    return SingleFlightBase.current_context()


class Renewer:
    """A thread calling ``tick()`` every ``every`` seconds until ``stop()`` or a falsy tick
    (a lost lease); a connection blip is retried while the lease may still run."""

    __slots__ = ("_stop", "_thread")

    def __init__(self, every: float, tick: Callable[[], Any], name: str) -> None:
        self._stop = threading.Event()

        def run() -> None:
            while not self._stop.wait(every):
                try:
                    if not tick():
                        return  # lost: the finish says so to the callers
                except IO_ERRORS:
                    continue

        self._thread = start_thread(run, name=name, what=name, context=None)

    def stop(self) -> None:
        """Stop the thread and wait until it has ended."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join()


class Ticker:
    """A thread calling ``tick()`` every ``every`` seconds while ``busy()``; ``tick`` handles
    its own errors. The thread ends once ``busy()`` is false (``poke()`` starts another), at
    most ``_LINGER`` seconds later, so back-to-back holders do not start a thread each."""

    __slots__ = ("_busy", "_every", "_lock", "_name", "_thread", "_tick", "_wake")

    def __init__(
        self, every: float, tick: Callable[[], None], busy: Callable[[], bool], name: str
    ) -> None:
        self._every = every
        self._tick = tick
        self._busy = busy
        self._name = name
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None

    def poke(self) -> None:
        """Something is held now (``busy()`` is true): make sure the thread runs."""
        with self._lock:
            if self._thread is None:
                self._thread = start_thread(
                    self._run, name=self._name, what=self._name, context=None
                )

    def idle(self) -> None:
        """Something was released: the thread notices by itself within ``_LINGER``."""

    def _run(self) -> None:
        every = self._every
        due = _now() + every
        while True:
            with self._lock:
                # Nobody notifies this thread (a notify per holder would cost a context
                # switch each): it wakes at least every _LINGER seconds, and ends at the
                # first wake-up that finds nothing held. Deciding that under the lock
                # poke() takes means a holder added meanwhile is never left unrenewed.
                self._wake.wait(min(_LINGER, max(due - _now(), 0.0)))
                if not self._busy():
                    self._thread = None
                    return
            if _now() < due:
                continue
            due = _now() + every
            self._tick()


def acquiring(start: Callable[..., T], *args: Any) -> T:
    """What ``sem.acquire()`` returns: ``start(*args)``, blocking until it is done."""
    return start(*args)
