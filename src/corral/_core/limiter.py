"""The FIFO queue every limiter shares: the weighted semaphore and the rate limit.

What a limiter *counts* differs (permits held; the GCRA schedule); how it *queues* does
not, and is written here once:

* Strict FIFO with head-of-line blocking: grants go to waiters in arrival order, and a
  large request at the head holds back smaller ones behind it, so it cannot be starved
  by a stream of small requests (Go's ``notifyWaiters`` comment).
* No barging: an acquire or ``try_acquire`` that finds anyone waiting waits (or fails),
  even if there is room for it.
* Granting happens under the claim protocol (see ``waiter``): a waiter that timed out or
  was cancelled is never granted; a grant whose waiter cannot be woken (its loop is gone)
  is undone at once, and one granted and then cancelled is undone by the waiter's shell
  (``abandon``), which re-runs the grant loop.
* When the head waiter leaves, the grant loop runs again: the ones behind it may fit.
* A joint acquire (``Limits``, see ``joint.py``) at the head is never granted here: the
  grant loop stops at it (head-of-line still) and returns it, to be attempted across all
  of its limiters once this lock is released. A stale head is left for its own unlink.

A subclass says what "fits" means and what taking a cost does, with five ``*_locked``
hooks; each is called with :attr:`lock` held.
"""

from __future__ import annotations

import threading
import weakref
from collections import deque
from typing import Any

from . import tracking
from .joint import Joint, run_joints
from .waiter import Entry, Waiter, WaiterFactory

__all__ = ["FifoLimiter"]


class FifoLimiter:
    """A lock, a FIFO queue of waiters (each its own entry, ``item`` = its cost, or a
    joint acquire's ``JointEntry``), and the grant loop over it."""

    __slots__ = ("__weakref__", "lock", "views", "waiters")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        # A plain acquire's waiter queued as its own entry (``item``: the cost asked for),
        # or a joint acquire's JointEntry (``index`` -1).
        self.waiters: deque[Waiter | Entry] = deque()
        self.views: dict[str, weakref.ref[Any]] = {}
        if tracking.enabled:
            tracking.track(self)

    # -- what a subclass defines (all with ``lock`` held) -------------------------------------

    def _fits_locked(self, c: Any) -> bool:
        """Whether ``c`` could be taken now, the queue aside."""
        raise NotImplementedError

    def _take_locked(self, c: Any) -> None:
        """Charge ``c`` taken at once: the acquire returns to its caller now."""
        raise NotImplementedError

    def _try_take_locked(self, c: Any) -> bool:
        """Take ``c`` now if it fits, the queue aside (a subclass may do both at once:
        the uncontended acquire runs this and nothing else)."""
        if self._fits_locked(c):
            self._take_locked(c)
            return True
        return False

    def _hand_over_locked(self, c: Any) -> None:
        """Charge ``c`` granted to a parked waiter (it returns when it is woken)."""
        raise NotImplementedError

    def _abandon_locked(self, c: Any) -> None:
        """Undo :meth:`_hand_over_locked`: the grant never reached its caller."""
        raise NotImplementedError

    def _blocked_locked(self, c: Any) -> None:
        """The head (cost ``c``) does not fit: arrange to be re-run when it may (a rate
        limit arms its timer; a semaphore waits for a release)."""

    def _settled_locked(self) -> None:
        """The grant loop found nobody to wait for (empty queue, or a joint at the head)."""

    # -- acquiring ----------------------------------------------------------------------------

    def acquire(self, c: Any, make_waiter: WaiterFactory) -> Waiter | None:
        """Take ``c`` now (``None``), or queue a waiter from ``make_waiter`` and return it."""
        lock = self.lock
        lock.acquire()  # + try/finally rather than ``with``: see ChannelState.send
        try:
            if not self.waiters and self._try_take_locked(c):
                return None
            w = make_waiter()
            w.item = c
            w.owner = self
            self.waiters.append(w)
            if len(self.waiters) == 1:
                self._blocked_locked(c)
            return w
        finally:
            lock.release()

    def try_acquire(self, c: Any) -> bool:
        lock = self.lock
        lock.acquire()
        try:
            return not self.waiters and self._try_take_locked(c)
        finally:
            lock.release()

    def abandon(self, c: Any) -> None:
        """A grant made to a waiter that then did not take it (cancelled or timed out
        after the grant): undo it; may grant others."""
        with self.lock:
            self._abandon_locked(c)
            tries = self._grant_locked() if self.waiters else None
        if tries:
            run_joints(tries)

    # -- the grant loop -----------------------------------------------------------------------

    def _grant_locked(self) -> list[Joint] | None:
        q = self.waiters
        while q:
            e = q[0]  # a plain acquire's waiter itself, or a joint acquire's JointEntry
            w = e.waiter
            if w.done:  # stale: timed out or cancelled, not yet unlinked
                q.popleft()
                continue
            c = e.item
            if not self._fits_locked(c):
                self._blocked_locked(c)
                return None  # head-of-line: nobody behind may overtake it
            if e.index < 0:  # a joint acquire: granted with its other limiters or not at all
                self._settled_locked()
                return [e.joint]  # type: ignore[union-attr]
            q.popleft()
            self._hand_over_locked(c)
            if not w.complete(0, None):
                self._abandon_locked(c)  # lost the claim race to an abort, or loop gone
        self._settled_locked()
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

    def can_take_locked(self, c: Any) -> bool:
        return not self.waiters and self._fits_locked(c)

    def take_now_locked(self, c: Any) -> None:
        self._take_locked(c)

    def joint_ready_locked(self, entry: Entry) -> bool:
        # A stale head (timed out or cancelled, not yet unlinked) is left in place: its
        # unlink finds it at the head and runs the grant loop for whoever is next. Popping
        # it here would lose that wake-up: the next head (a plain waiter, or another joint)
        # would wait for a release that may never come (found by the Limits hammer).
        q = self.waiters
        if not q or q[0] is not entry:
            return False
        if self._fits_locked(entry.item):
            return True
        self._blocked_locked(entry.item)
        return False

    def joint_take_locked(self, entry: Entry) -> None:
        self.waiters.popleft()
        self._hand_over_locked(entry.item)

    def joint_untake_locked(self, entry: Entry) -> None:
        self._abandon_locked(entry.item)

    # -- introspection ------------------------------------------------------------------------

    def _live_locked(self) -> tuple[int, Any]:
        """How many queued acquires are live, and the cost they ask for in total."""
        live = [e.item for e in self.waiters if not e.waiter.done]
        return len(live), sum(live)

    def queued_waiters(self) -> int:
        with self.lock:
            return sum(1 for e in self.waiters if not e.waiter.done)
