"""What both flavours' shells share: the non-blocking half of each public class.

Only waiting differs between ``corral.Channel`` and ``corral.threads.Channel``; the
non-blocking methods, statistics and select cases are written here once.
"""

from __future__ import annotations

import math
from typing import Any, Generic, Self, TypeVar

from ._core import views
from ._core.channel import (
    CLOSED,
    EMPTY,
    UNBOUNDED,
    ChannelState,
    ChannelStatistics,
    RecvCase,
    SendCase,
    check_capacity,
)
from ._core.context import Context
from ._core.semaphore import SemaphoreState, SemaphoreStatistics, check_size, check_weight
from ._errors import EndOfChannel, WouldBlock

__all__ = ["ChannelBase", "SemaphoreBase", "check_ctx"]

T = TypeVar("T")


def check_ctx(ctx: object, what: str) -> None:
    """Reject a non-Context; fail fast if the Context is already done (as Go does)."""
    if not isinstance(ctx, Context):
        raise TypeError(f"{what}: ctx must be a corral Context, got {type(ctx).__name__}")
    ctx.raise_if_cancelled()


class ChannelBase(Generic[T]):
    __slots__ = ("__weakref__", "_st")
    _flavour: str = ""

    def __init__(self, capacity: float = 0) -> None:
        self._st: ChannelState[T] = ChannelState(check_capacity(capacity))
        views.register(self._st, self._flavour, self)

    @classmethod
    def _view(cls, st: ChannelState[Any]) -> Self:
        return views.view_of(cls, cls._flavour, st)

    def send_nowait(self, item: T) -> None:
        """Send without waiting; raise ``WouldBlock`` if no receiver or buffer slot is free."""
        st = self._st
        with st.lock:
            if st.send_locked(item):
                return
        raise WouldBlock("send_nowait: channel is full and no receiver is waiting")

    def recv_nowait(self) -> T:
        """Receive without waiting; ``WouldBlock`` if nothing is ready, ``EndOfChannel`` at end."""
        st = self._st
        with st.lock:
            item = st.recv_locked()
        if item is EMPTY:
            raise WouldBlock("recv_nowait: no item is ready")
        if item is CLOSED:
            raise EndOfChannel("channel is closed and drained")
        return item  # type: ignore[no-any-return]

    def close(self) -> bool:
        """Close the channel; ``True`` the first time, ``False`` (and no effect) after.

        Buffered items are still delivered; waiting receivers get ``EndOfChannel``,
        waiting senders ``ChannelClosed`` (their items were not sent).
        """
        return self._st.close()

    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called (items may still be buffered)."""
        return self._st.closed

    @property
    def capacity(self) -> float:
        """The buffer size: 0 for a rendezvous channel, ``math.inf`` for an unbounded one."""
        cap = self._st.cap
        return math.inf if cap == UNBOUNDED else cap

    def __len__(self) -> int:
        return len(self._st.buf)

    def statistics(self) -> ChannelStatistics:
        """A :class:`ChannelStatistics` snapshot."""
        return self._st.statistics()

    def recv_case(self) -> RecvCase:
        """A receive case for ``select``."""
        return RecvCase(self._st)

    def send_case(self, item: T) -> SendCase:
        """A case for ``select`` that sends ``item``."""
        return SendCase(self._st, item)

    def __repr__(self) -> str:
        s = self._st
        state = "closed" if s.closed else "open"
        return (
            f"<{type(self).__module__}.Channel capacity={self.capacity} len={len(s.buf)} {state}>"
        )


class SemaphoreBase:
    __slots__ = ("__weakref__", "_st")
    _flavour: str = ""

    def __init__(self, size: int = 1) -> None:
        self._st = SemaphoreState(check_size(size))
        views.register(self._st, self._flavour, self)

    @classmethod
    def _view(cls, st: SemaphoreState) -> Self:
        return views.view_of(cls, cls._flavour, st)

    @property
    def size(self) -> int:
        """The number of permits."""
        return self._st.size

    def try_acquire(self, n: int = 1) -> bool:
        """Take ``n`` permits if free *and nobody is waiting*; never waits."""
        st = self._st
        return st.try_acquire(check_weight(n, st.size, "Semaphore.try_acquire"))

    def release(self, n: int = 1) -> None:
        """Give back ``n`` permits; ``ValueError`` if fewer than ``n`` are held."""
        st = self._st
        if n.__class__ is not int or not 0 <= n <= st.size:
            check_weight(n, st.size, "Semaphore.release")  # raises the right error
        # SemaphoreState.release's uncontended case, inlined (a third of an uncontended
        # acquire+release pair is call overhead); the state method keeps the full rule.
        lock = st.lock
        lock.acquire()
        try:
            if not st.waiters and n <= st.cur:
                st.cur -= n
                return
        finally:
            lock.release()
        st.release(n)

    def statistics(self) -> SemaphoreStatistics:
        """A :class:`SemaphoreStatistics` snapshot."""
        return self._st.statistics()

    def __repr__(self) -> str:
        st = self._st
        return f"<{type(self).__module__}.Semaphore size={st.size} held={st.cur}>"
