"""``corral.threads.Channel``: the blocking view of a channel."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from .._core.channel import CLOSED
from .._core.context import Context, _check_timeout
from .._core.waiter import ThreadWaiter
from .._errors import ChannelClosed
from .._shells import ChannelBase, check_ctx
from .wait import park

if TYPE_CHECKING:
    from .._aio.channel import Channel as AsyncChannel

__all__ = ["Channel"]

T = TypeVar("T")


class Channel(ChannelBase[T]):
    """Channel(capacity=0): a Go channel for threads; rendezvous by default.

    Same rules as ``corral.Channel``, with blocking calls and plain iteration. Share it
    with asyncio tasks through :meth:`as_async`.

    >>> import threading, corral.threads
    >>> ch = corral.threads.Channel(0)
    >>> t = threading.Thread(target=lambda: [ch.send(i) for i in range(3)] and ch.close())
    >>> t.start(); print(list(ch)); t.join()
    [0, 1, 2]
    """

    __slots__ = ()
    _flavour = "threads"

    def send(self, item: T, *, timeout: float | None = None, ctx: Context | None = None) -> None:
        """Send ``item``, blocking for a receiver or a free slot (see ``corral.Channel.send``)."""
        if ctx is not None:
            check_ctx(ctx, "Channel.send")
        if timeout is not None:
            _check_timeout(timeout)
        w = self._st.send(item, ThreadWaiter)
        if w is None:
            return
        assert isinstance(w, ThreadWaiter)
        park(w, timeout, ctx)
        if w.value is CLOSED:
            raise ChannelClosed("channel closed while the send was waiting")

    def recv(self, *, timeout: float | None = None, ctx: Context | None = None) -> T:
        """Receive the next item, blocking; ``EndOfChannel`` once closed and drained."""
        if ctx is not None:
            check_ctx(ctx, "Channel.recv")
        if timeout is not None:
            _check_timeout(timeout)
        st = self._st
        r: Any = st.recv(ThreadWaiter)
        if r.__class__ is ThreadWaiter:
            park(r, timeout, ctx)
            r = r.value
        if r is CLOSED:
            raise st.ended()
        return r  # type: ignore[no-any-return]

    def __iter__(self) -> Iterator[T]:
        st = self._st
        recv = st.recv
        while True:
            r: Any = recv(ThreadWaiter)
            if r.__class__ is ThreadWaiter:
                park(r, None, None)
                r = r.value
            if r is CLOSED:
                if st.failure is not None:
                    raise st.ended()
                return
            yield r

    def as_async(self) -> AsyncChannel[T]:
        """The same channel as a ``corral.Channel`` (awaitable calls)."""
        view: AsyncChannel[T] = self._family["aio"]._view(self._st)
        return view
