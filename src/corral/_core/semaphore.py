"""The weighted semaphore's rules, once: Go's ``semaphore.Weighted``.

The queue is the limiters' shared FIFO (``limiter.FifoLimiter``: strict FIFO with
head-of-line blocking, no barging, the claim protocol, joint acquires at the head); what
is counted here is the permits held, ``cur``:

* A request larger than the size can never be granted: a ``ValueError`` at once rather
  than a waiter that would block the queue forever.
* One granted and then cancelled gives its permits back (Go: "acquired the semaphore
  after we were canceled"), which re-runs the grant loop.
"""

from __future__ import annotations

from dataclasses import dataclass

from .joint import Joint, run_joints
from .limiter import FifoLimiter

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


class SemaphoreState(FifoLimiter):
    __slots__ = ("cur", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self.cur = 0
        super().__init__()

    def __repr__(self) -> str:
        n = len(self.waiters)
        return f"<semaphore {id(self):#x} size={self.size} held={self.cur} queued={n}>"

    # -- what FifoLimiter asks of a limiter (with the lock held) --------------------------------

    def _fits_locked(self, n: int) -> bool:
        return self.size - self.cur >= n

    def _take_locked(self, n: int) -> None:
        self.cur += n

    def _hand_over_locked(self, n: int) -> None:
        # As a take: permits are held from the grant, and the waiter's shell gives them
        # back if it never uses them.
        self.cur += n

    def _abandon_locked(self, n: int) -> None:
        self.cur -= n

    def _grant_locked(self) -> list[Joint] | None:
        # inline of corral._core.limiter.FifoLimiter._grant_locked, with this class's
        # hooks written in (fits: size - cur >= k; hand over: cur += k; abandon: cur -= k;
        # nothing to arm or settle): every contended release runs it, and the three hook
        # calls per grant cost 15 % of a release+grant (A/B in one run, see the design
        # notes). tests/core/test_semaphore.py drives both through the same operations.
        q = self.waiters
        while q:
            e = q[0]
            w = e.waiter
            if w.done:
                q.popleft()
                continue
            k = e.item
            if self.size - self.cur < k:
                return None
            if e.index < 0:
                return [e.joint]  # type: ignore[union-attr]
            q.popleft()
            self.cur += k
            if not w.complete(0, None):
                self.cur -= k
        return None

    # -- releasing ----------------------------------------------------------------------------

    def release(self, n: int) -> None:
        lock = self.lock
        lock.acquire()  # + try/finally rather than ``with``: see ChannelState.send
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

    def abandon(self, n: int) -> None:
        self.release(n)

    def statistics(self) -> SemaphoreStatistics:
        with self.lock:
            waiting, weight = self._live_locked()
            return SemaphoreStatistics(
                size=self.size, held=self.cur, waiting=waiting, waiting_weight=weight
            )
