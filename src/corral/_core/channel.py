"""The channel's rules, once: buffer, waiting senders and receivers, close, select.

Go's ``chan`` semantics (runtime/chan.go, runtime/select.go), restated for a world where a
waiter can be an asyncio task on any loop or a thread:

* A send hands its item straight to the longest-waiting receiver, else buffers it if
  there is room, else waits. A receive takes the oldest buffered item (and moves the
  longest-waiting sender's item into the freed slot), else takes a waiting sender's item
  directly (capacity 0), else waits. Waiters are strict FIFO; an operation that can
  complete at once never yields, and never overtakes a queued waiter (a receiver only
  waits when the buffer is empty, a sender only when it is full).
* ``close()`` is idempotent. Buffered items are still delivered; then receives end with
  ``EndOfChannel``. Every waiting receiver (the buffer is empty if any wait) ends, and
  every waiting sender fails with ``ChannelClosed`` and keeps its item. ``close(error)``
  ends receives with ``error`` instead, once the buffer is drained (the first receiver gets
  it, later ones a copy chained to it): a producer's failure reaches its consumers rather
  than looking like a normal end. ``select`` sees either end alike (``ok`` is False).
* Completing a waiter and handing it the item happen in one claim (see ``waiter``), so an
  item is never given to a waiter that has timed out or been cancelled: it goes to the
  next one instead.

Items live in the buffer or in a waiting sender's entry, never in between.
"""

from __future__ import annotations

import copy
import math
import random
import sys
import threading
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .._errors import ChannelClosed, CorralError, EndOfChannel
from . import tracking
from .waiter import Entry, Waiter

Queued = Entry | Waiter  # a select's entry, or a plain operation's waiter itself

__all__ = [
    "CLOSED",
    "EMPTY",
    "ChannelState",
    "ChannelStatistics",
    "RecvCase",
    "SendCase",
    "select_poll_or_park",
]

T = TypeVar("T")

UNBOUNDED = sys.maxsize


class _Sentinel:
    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


EMPTY: Any = _Sentinel("EMPTY")  # a receive would block
CLOSED: Any = _Sentinel("CLOSED")  # the channel is closed (and drained, for a receive)


@dataclass(frozen=True, slots=True)
class ChannelStatistics:
    """A snapshot of a channel: what a dashboard or a leak check wants to know."""

    capacity: float  #: ``math.inf`` for an unbounded channel
    buffered: int  #: items in the buffer now
    waiting_senders: int
    waiting_receivers: int
    closed: bool


def check_capacity(capacity: object) -> int:
    if capacity == math.inf and isinstance(capacity, float):
        return UNBOUNDED
    if isinstance(capacity, bool) or not isinstance(capacity, int):
        raise TypeError(
            f"Channel: capacity must be an int >= 0 or math.inf, got {type(capacity).__name__}"
        )
    if capacity < 0:
        raise ValueError(f"Channel: capacity must be >= 0, got {capacity}")
    return capacity


class ChannelState(Generic[T]):
    """The shared state behind every view (asyncio or thread) of one channel."""

    __slots__ = (
        "__weakref__",
        "buf",
        "cap",
        "closed",
        "failure",
        "failure_raised",
        "lock",
        "recvq",
        "sendq",
        "views",
    )

    def __init__(self, capacity: int) -> None:
        self.lock = threading.Lock()
        self.cap = capacity
        self.buf: deque[T] = deque()
        self.recvq: deque[Queued] = deque()
        self.sendq: deque[Queued] = deque()
        self.closed = False
        self.failure: BaseException | None = None  # what receives raise at the end
        self.failure_raised = False
        self.views: dict[str, weakref.ref[Any]] = {}
        if tracking.enabled:
            tracking.track(self)

    def __repr__(self) -> str:
        cap = "inf" if self.cap == UNBOUNDED else self.cap
        return (
            f"<channel {id(self):#x} capacity={cap} buffered={len(self.buf)} "
            f"senders={len(self.sendq)} receivers={len(self.recvq)} closed={self.closed}>"
        )

    # -- the non-blocking steps, called with ``lock`` held ----------------------------------

    def send_locked(self, item: T) -> bool:
        """Deliver ``item`` now if possible; ``False`` means the caller must wait."""
        if self.closed:
            raise ChannelClosed("send on a closed channel")
        recvq = self.recvq
        while recvq:
            e = recvq.popleft()
            if e.waiter.complete(e.index, item):
                return True
        if len(self.buf) < self.cap:
            self.buf.append(item)
            return True
        return False

    def recv_locked(self) -> Any:
        """Take an item now if possible; else ``EMPTY`` (would wait) or ``CLOSED``."""
        buf = self.buf
        sendq = self.sendq
        if buf:
            item = buf.popleft()
            while sendq:  # the freed slot goes to the longest-waiting sender
                e = sendq.popleft()
                if e.waiter.complete(e.index, None):
                    buf.append(e.item)
                    break
            return item
        while sendq:  # capacity 0: take straight from a waiting sender
            e = sendq.popleft()
            if e.waiter.complete(e.index, None):
                return e.item
        return CLOSED if self.closed else EMPTY

    # -- blocking entry points: complete now (return None) or return a parked waiter -------
    # ``lock.acquire()`` + ``try/finally`` rather than ``with``: on CPython 3.11 ``with`` on
    # a lock costs more than the whole buffered fast path (measured: 150 vs 75 ns a pair).

    def send(self, item: T, make_waiter: Callable[[], Waiter]) -> Waiter | None:
        lock = self.lock
        lock.acquire()
        try:
            if not self.recvq and len(self.buf) < self.cap and not self.closed:
                self.buf.append(item)  # inline of corral._core.channel.ChannelState.send_locked
                return None
            return self.send_or_park_locked(item, make_waiter)
        finally:
            lock.release()

    def send_or_park_locked(self, item: T, make_waiter: Callable[[], Waiter]) -> Waiter | None:
        """``send``'s rule with ``lock`` held: a shell whose inlined fast path failed
        calls it without releasing the lock, so a send that parks locks once."""
        if self.send_locked(item):
            return None
        w = make_waiter()
        w.item = item  # queued as its own entry (no Entry object)
        w.owner = self
        self.sendq.append(w)
        return w

    def recv(self, make_waiter: Callable[[], Waiter]) -> Any:
        """The item, ``CLOSED``, or a parked :class:`Waiter`."""
        lock = self.lock
        lock.acquire()
        try:
            buf = self.buf
            if buf and not self.sendq:
                return buf.popleft()  # inline of corral._core.channel.ChannelState.recv_locked
            return self.recv_or_park_locked(make_waiter)
        finally:
            lock.release()

    def recv_or_park_locked(self, make_waiter: Callable[[], Waiter]) -> Any:
        """``recv``'s rule with ``lock`` held (see :meth:`send_or_park_locked`)."""
        item = self.recv_locked()
        if item is not EMPTY:
            return item
        w = make_waiter()
        w.owner = self  # queued as its own entry (no Entry object)
        self.recvq.append(w)
        return w

    def fail(self, error: BaseException) -> bool:
        """Record ``error`` as what receives raise at the end (the first one wins)."""
        with self.lock:
            if self.failure is not None or self.closed:
                return False
            self.failure = error
            return True

    def ended(self, message: str = "channel is closed and drained") -> BaseException:
        """What a receive raises at the end: the failure (the first receiver gets the
        original, later ones a copy that points to it: one exception object raised in many
        tasks would splice their tracebacks), else ``EndOfChannel(message)``."""
        with self.lock:
            err = self.failure
            if err is None:
                return EndOfChannel(message)
            if not self.failure_raised:
                self.failure_raised = True
                return err
        try:
            dup = copy.copy(err)
        except Exception:
            dup = CorralError(f"the channel was closed with an error: {err!r}")
        dup.__traceback__ = None
        dup.__cause__ = err
        return dup

    def close(self, error: BaseException | None = None) -> bool:
        with self.lock:
            if self.closed:
                return False
            if error is not None:
                self.failure = error
            self.closed = True
            recvq, self.recvq = self.recvq, deque()
            sendq, self.sendq = self.sendq, deque()
            for e in recvq:
                e.waiter.complete(e.index, CLOSED)
            for e in sendq:
                e.waiter.complete(e.index, CLOSED)
            return True

    def _unlink(self, entry: Queued) -> None:
        with self.lock:
            for q in (self.recvq, self.sendq):
                try:
                    q.remove(entry)
                    return
                except ValueError:  # not here, or already popped by a waker as stale
                    pass

    def statistics(self) -> ChannelStatistics:
        with self.lock:
            return ChannelStatistics(
                capacity=math.inf if self.cap == UNBOUNDED else self.cap,
                buffered=len(self.buf),
                waiting_senders=sum(1 for e in self.sendq if not e.waiter.done),
                waiting_receivers=sum(1 for e in self.recvq if not e.waiter.done),
                closed=self.closed,
            )

    def queued_waiters(self) -> int:
        """Entries still queued whose waiter is not finished (for leak checks)."""
        with self.lock:
            return sum(1 for e in self.recvq if not e.waiter.done) + sum(
                1 for e in self.sendq if not e.waiter.done
            )


# -- select ----------------------------------------------------------------------------------


class RecvCase:
    """A receive case for ``select``: made by ``channel.recv_case()``."""

    __slots__ = ("state",)

    def __init__(self, state: ChannelState[Any]) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"<RecvCase on channel {id(self.state):#x}>"


class SendCase:
    """A send case for ``select``: made by ``channel.send_case(item)``."""

    __slots__ = ("item", "state")

    def __init__(self, state: ChannelState[Any], item: Any) -> None:
        self.state = state
        self.item = item

    def __repr__(self) -> str:
        return f"<SendCase of {self.item!r} on channel {id(self.state):#x}>"


Case = RecvCase | SendCase

_rng = random.Random()


def check_cases(cases: Sequence[object]) -> None:
    if not cases:
        raise ValueError("select: needs at least one case (got none)")
    for i, c in enumerate(cases):
        if not isinstance(c, RecvCase | SendCase):
            raise TypeError(
                f"select: case {i} must be made by channel.recv_case() or "
                f"channel.send_case(item), got {type(c).__name__}"
            )


def select_poll_or_park(
    cases: Sequence[Case], make_waiter: Callable[[], Waiter] | None
) -> tuple[int, Any] | Waiter | None:
    """Run one select: fire a ready case, or park a waiter on every case.

    Returns ``(index, value)`` for a case that fired now (``value`` is the item received,
    ``None`` for a send, ``CLOSED`` for a receive on a closed, drained channel); else, with
    ``make_waiter`` None (a ``default`` select), ``None``; else the parked waiter.

    Every involved channel is locked for the whole step, in ``id()`` order (Go's
    ``sellock``): the readiness poll and the parking are then one atomic step, so a wake-up
    cannot slip between them, and no other operation can complete this waiter until it is
    fully parked. The poll visits cases in random order so no ready case starves, and a
    select that waits parks its cases in that order, so when it is completed later each
    of several cases on one channel is as likely to fire.
    """
    n = len(cases)
    if n == 1:
        order: list[int] | range = range(1)
    elif n == 2:
        order = [0, 1] if _rng.random() < 0.5 else [1, 0]
    else:
        order = list(range(n))
        _rng.shuffle(order)
    locks = sorted({id(c.state): c.state.lock for c in cases}.items())
    for _, lock in locks:
        lock.acquire()
    try:
        for i in order:
            c = cases[i]
            st = c.state
            if isinstance(c, SendCase):
                if st.send_locked(c.item):  # raises ChannelClosed if closed
                    return i, None
            else:
                v = st.recv_locked()
                if v is not EMPTY:
                    return i, v
        if make_waiter is None:
            return None
        w = make_waiter()
        entries: list[Entry] = []
        w.entries = entries
        # Park in the same random order: a later party completes the first live entry it
        # finds in a queue, so cases on one channel queued in argument order would always
        # resolve to the first (Go enqueues a blocked select in a shuffled order too).
        for i in order:
            c = cases[i]
            st = c.state
            if isinstance(c, SendCase):
                e = Entry(w, i, c.item, st)
                st.sendq.append(e)
            else:
                e = Entry(w, i, None, st)
                st.recvq.append(e)
            entries.append(e)
        return w
    finally:
        for _, lock in reversed(locks):
            lock.release()
