"""The weighted semaphore's rules, once: Go's ``semaphore.Weighted``.

* Strict FIFO with head-of-line blocking: permits go to waiters in arrival order, and a
  large request at the head holds back smaller ones behind it, so it cannot be starved
  by a stream of small requests (Go's ``notifyWaiters`` comment).
* No barging: an acquire or ``try_acquire`` that finds anyone waiting waits (or fails),
  even if enough permits are free for it.
* A request larger than the size can never be granted: a ``ValueError`` at once rather
  than a waiter that would block the queue forever.
* Granting happens under the claim protocol (see ``waiter``): a waiter that timed out or
  was cancelled is never granted; one granted and then cancelled gives its permits back
  (Go: "acquired the semaphore after we were canceled"), which re-runs the grant loop.
* When the head waiter leaves, the grant loop runs again: the ones behind it may fit.
* A joint acquire (``Limits``, see ``joint.py``) at the head is never granted here: the
  grant loop stops at it (head-of-line still) and returns it, to be attempted across all
  of its limiters once this lock is released.
"""

from __future__ import annotations

import threading
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import tracking
from .joint import Joint, run_joints
from .waiter import Entry, Waiter

__all__ = ["SemaphoreState", "SemaphoreStatistics", "check_size", "check_weight"]


@dataclass(frozen=True, slots=True)
class SemaphoreStatistics:
    """A snapshot of a semaphore."""

    size: int
    held: int  #: permits currently acquired
    waiting: int  #: number of queued acquires
    waiting_weight: int  #: permits the queued acquires ask for, in total


def check_size(size: object) -> int:
    if isinstance(size, bool) or not isinstance(size, int):
        raise TypeError(f"Semaphore: size must be an int, got {type(size).__name__}")
    if size < 1:
        raise ValueError(f"Semaphore: size must be >= 1, got {size}")
    return size


def check_weight(n: object, size: int, what: str) -> int:
    if n.__class__ is int and 0 <= n <= size:
        return n
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"{what}: n must be an int, got {type(n).__name__}")
    if n < 0:
        raise ValueError(f"{what}: n must be >= 0, got {n}")
    if n > size:
        raise ValueError(f"{what}: n={n} is larger than the semaphore's size {size}")
    return n


class SemaphoreState:
    __slots__ = ("__weakref__", "cur", "lock", "size", "views", "waiters")

    def __init__(self, size: int) -> None:
        self.lock = threading.Lock()
        self.size = size
        self.cur = 0
        # A plain acquire's waiter queued as its own entry (``item``: the weight asked
        # for), or a joint acquire's JointEntry (``index`` -1).
        self.waiters: deque[Waiter | Entry] = deque()
        self.views: dict[str, weakref.ref[Any]] = {}
        if tracking.enabled:
            tracking.track(self)

    def __repr__(self) -> str:
        n = len(self.waiters)
        return f"<semaphore {id(self):#x} size={self.size} held={self.cur} queued={n}>"

    # ``lock.acquire()`` + ``try/finally`` rather than ``with``: see ChannelState.send.

    def acquire(self, n: int, make_waiter: Callable[[], Waiter]) -> Waiter | None:
        lock = self.lock
        lock.acquire()
        try:
            if self.size - self.cur >= n and not self.waiters:
                self.cur += n
                return None
            w = make_waiter()
            w.item = n
            w.owner = self
            self.waiters.append(w)
            return w
        finally:
            lock.release()

    def try_acquire(self, n: int) -> bool:
        lock = self.lock
        lock.acquire()
        try:
            if self.size - self.cur >= n and not self.waiters:
                self.cur += n
                return True
            return False
        finally:
            lock.release()

    def release(self, n: int) -> None:
        lock = self.lock
        lock.acquire()
        try:
            if n > self.cur:
                raise ValueError(
                    f"Semaphore.release: n={n} is more than the {self.cur} permit(s) held"
                )
            self.cur -= n
            tries = self._grant_locked() if self.waiters else None
        finally:
            lock.release()
        if tries:
            run_joints(tries)

    def give_back(self, n: int) -> None:
        self.release(n)

    def _grant_locked(self) -> list[Joint] | None:
        q = self.waiters
        while q:
            e = q[0]  # a plain acquire's waiter itself, or a joint acquire's JointEntry
            w = e.waiter
            if w.done:  # stale: timed out or cancelled, not yet unlinked
                q.popleft()
                continue
            k = e.item
            if self.size - self.cur < k:
                break  # head-of-line: nobody behind may overtake it
            if e.index < 0:  # a joint acquire: granted with its other limiters or not at all
                return [e.joint]  # type: ignore[union-attr]
            q.popleft()
            self.cur += k
            if not w.complete(0, None):
                self.cur -= k  # lost the claim race to an abort, or its loop is gone
        return None

    def _unlink(self, entry: Waiter | Entry) -> None:
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

    def can_take_locked(self, n: int) -> bool:
        return not self.waiters and self.size - self.cur >= n

    def take_now_locked(self, n: int) -> None:
        self.cur += n

    def joint_ready_locked(self, entry: Entry) -> bool:
        # A stale head (timed out or cancelled, not yet unlinked) is left in place: its
        # unlink finds it at the head and runs the grant loop for whoever is next. Popping
        # it here would lose that wake-up: the next head (a plain waiter, or another joint)
        # would wait for a release that may never come (found by the Limits hammer).
        q = self.waiters
        return bool(q) and q[0] is entry and self.size - self.cur >= entry.item

    def joint_take_locked(self, entry: Entry, timed: bool) -> None:
        self.waiters.popleft()
        self.cur += entry.item

    def joint_untake_locked(self, entry: Entry) -> None:
        self.cur -= entry.item

    def statistics(self) -> SemaphoreStatistics:
        with self.lock:
            live = [e for e in self.waiters if not e.waiter.done]
            return SemaphoreStatistics(
                size=self.size,
                held=self.cur,
                waiting=len(live),
                waiting_weight=sum(e.item for e in live),
            )

    def queued_waiters(self) -> int:
        with self.lock:
            return sum(1 for e in self.waiters if not e.waiter.done)
