"""What both flavours' shells share: the non-blocking half of each public class.

Only waiting differs between ``corral.Channel`` and ``corral.threads.Channel``; the
non-blocking methods, statistics and select cases are written here once. Likewise for
``Semaphore`` and for ``Group`` (whose shells differ in how workers run and are waited for).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Generic, Literal, Self, TypeVar

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
from ._core.context import CancelContext, Context
from ._core.group import GroupState, GroupStatistics, check_group_args, check_limit
from ._core.semaphore import SemaphoreState, SemaphoreStatistics, check_size, check_weight
from ._errors import EndOfChannel, GroupError, WouldBlock

__all__ = ["ChannelBase", "GroupBase", "SemaphoreBase", "check_ctx"]

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
        # SemaphoreState.release, inlined (a third of an uncontended acquire+release pair
        # is call overhead): one lock acquisition gives the permits back and grants the
        # queued acquires they satisfy. Releasing more than is held falls through to the
        # state method, which raises under its own lock.
        lock = st.lock
        lock.acquire()
        try:
            if n <= st.cur:
                st.cur -= n
                if st.waiters:
                    st._grant_locked()
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


class GroupBase:
    """Everything of a ``Group`` but starting workers and waiting for them.

    A subclass adds ``go``/``try_go``/``wait`` and its ``with`` protocol, :meth:`_init_flavour`
    and a ``_pool`` slot (the worker threads it owns, or ``None``), which ``__del__`` shuts
    down.
    """

    __slots__ = ("__weakref__", "_entered", "_st")
    #: the public name, for messages and the repr
    _public_name: ClassVar[str] = ""
    #: the block that waits for the group (``with`` or ``async with``), for messages
    _block: ClassVar[str] = ""

    def __init__(
        self,
        ctx: Context | None = None,
        *,
        limit: int | None = None,
        errors: Literal["first", "all"] = "first",
    ) -> None:
        parent, lim = check_group_args(ctx, limit, errors)
        self._st = GroupState(parent, lim, errors)
        self._entered = False
        self._init_flavour()

    def _init_flavour(self) -> None:
        """Set up the flavour's own slots (called last by ``__init__``)."""
        raise NotImplementedError

    def _check_enter(self) -> None:
        if self._entered:
            raise GroupError("Group: a Group can be entered only once")
        if self._st.finished:
            raise GroupError("Group: the group has finished (wait() returned); start a new one")

    @property
    def ctx(self) -> CancelContext:
        """The group's Context: a child of ``ctx``, cancelled by the first error (its
        ``cause``) and when the group finishes. Workers watch it to stop early (a thread
        cannot be interrupted)."""
        return self._st.ctx

    @property
    def errors(self) -> tuple[BaseException, ...]:
        """Every error recorded so far, in order (cancellations excluded)."""
        return tuple(self._st.errors)

    def set_limit(self, n: int | None) -> None:
        """Run at most ``n`` workers at once (``None``: no limit; 0 blocks every ``go``).

        ``GroupError`` while workers run or wait for a slot, as Go's ``SetLimit`` panics.
        """
        self._st.set_limit(check_limit(n, "Group.set_limit"), "Group.set_limit")

    def statistics(self) -> GroupStatistics:
        """A :class:`GroupStatistics` snapshot."""
        return self._st.statistics()

    def __del__(self) -> None:
        st: GroupState | None = getattr(self, "_st", None)
        if st is None:
            return
        pool = getattr(self, "_pool", None)
        if pool is not None and not st.finished:
            pool.shutdown(join=False)
        first = st.unretrieved()
        if first is not None:
            raise GroupError(
                f"a {self._public_name} was garbage-collected without wait() or "
                f"`{self._block}`, and {len(st.errors)} of its workers failed; "
                "the first error is the cause"
            ) from first

    def __repr__(self) -> str:
        s = self._st.statistics()
        return (
            f"<{self._public_name} running={s.running} limit={s.limit} errors={s.errors}"
            f"{' finished' if s.finished else ''}>"
        )
