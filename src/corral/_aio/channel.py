"""``corral.Channel``: the asyncio view of a channel."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, TypeVar

from .._core.channel import CLOSED
from .._core.context import Context, _check_timeout
from .._core.waiter import AsyncWaiter
from .._errors import ChannelClosed
from .._shells import ChannelBase, check_ctx
from .wait import cancelled_while_parked, owed, park, pay_owed

if TYPE_CHECKING:
    from .._threads.channel import Channel as ThreadChannel

__all__ = ["Channel", "new_waiter"]

T = TypeVar("T")

_get_running_loop = asyncio.get_running_loop


def new_waiter() -> AsyncWaiter:
    return AsyncWaiter(_get_running_loop())


class Channel(ChannelBase[T]):
    """Channel(capacity=0): a Go channel for asyncio tasks; rendezvous by default.

    ``capacity`` N buffers N items; ``math.inf`` never blocks a sender. The same channel
    can be used from threads through :meth:`as_threads` (one shared state), and from tasks
    on several event loops.

    >>> import asyncio, corral
    >>> async def main():
    ...     ch = corral.Channel(2)
    ...     await ch.send("a"); await ch.send("b"); ch.close()
    ...     return [x async for x in ch]
    >>> asyncio.run(main())
    ['a', 'b']
    """

    __slots__ = ()
    _flavour = "aio"

    async def send(
        self, item: T, *, timeout: float | None = None, ctx: Context | None = None
    ) -> None:
        """Send ``item``, waiting for a receiver (capacity 0) or a free buffer slot.

        Raises ``ChannelClosed`` if the channel is or becomes closed (the item was not
        sent), ``DeadlineExceeded`` after ``timeout`` seconds, ``Cancelled`` when ``ctx``
        is done. Cancelled or timed out, the send had no effect.
        """
        if owed:
            pay_owed()
        st = self._st
        if ctx is not None:
            check_ctx(ctx, "Channel.send")
        if timeout is not None:
            _check_timeout(timeout)
        # inline of corral._core.channel.ChannelState.send: its buffered fast path (a method
        # call is a sixth of this operation's cost), else its rule under the same lock.
        lock = st.lock
        lock.acquire()
        try:
            if not st.recvq and len(st.buf) < st.cap and not st.closed:
                st.buf.append(item)
                return
            w = st.send_or_park_locked(item, new_waiter)
        finally:
            lock.release()
        if w is None:
            return
        assert isinstance(w, AsyncWaiter)
        if timeout is None and ctx is None:
            try:  # inline of corral._aio.wait.park (no timeout, no ctx)
                await w.fut
            except asyncio.CancelledError:
                if cancelled_while_parked(w):
                    raise
        else:
            await park(w, timeout, ctx)
        if w.value is CLOSED:
            raise ChannelClosed("channel closed while the send was waiting")

    async def recv(self, *, timeout: float | None = None, ctx: Context | None = None) -> T:
        """Receive the next item; ``EndOfChannel`` once closed and drained.

        Cancelled or timed out, nothing was taken from the channel.
        """
        if owed:
            pay_owed()
        st = self._st
        if ctx is not None:
            check_ctx(ctx, "Channel.recv")
        if timeout is not None:
            _check_timeout(timeout)
        # inline of corral._core.channel.ChannelState.recv (see send)
        lock = st.lock
        lock.acquire()
        try:
            buf = st.buf
            if buf and not st.sendq:
                return buf.popleft()
            r: Any = st.recv_or_park_locked(new_waiter)
        finally:
            lock.release()
        if r.__class__ is AsyncWaiter:
            if timeout is None and ctx is None:
                try:  # inline of corral._aio.wait.park (no timeout, no ctx)
                    await r.fut
                except asyncio.CancelledError:
                    if cancelled_while_parked(r):
                        raise
            else:
                await park(r, timeout, ctx)
            r = r.value
        if r is CLOSED:
            raise st.ended()
        return r  # type: ignore[no-any-return]

    def __aiter__(self) -> Channel[T]:
        return self

    async def __anext__(self) -> T:
        if owed:
            pay_owed()
        st = self._st
        lock = st.lock
        lock.acquire()
        try:
            buf = st.buf
            if buf and not st.sendq:  # inline of corral._core.channel.ChannelState.recv
                return buf.popleft()
            r: Any = st.recv_or_park_locked(new_waiter)
        finally:
            lock.release()
        if r.__class__ is AsyncWaiter:
            try:  # inline of corral._aio.wait.park (no timeout, no ctx)
                await r.fut
            except asyncio.CancelledError:
                if cancelled_while_parked(r):
                    raise
            r = r.value
        if r is CLOSED:
            if st.failure is not None:
                raise st.ended()
            raise StopAsyncIteration
        return r  # type: ignore[no-any-return]

    def as_threads(self) -> ThreadChannel[T]:
        """The same channel as a ``corral.threads.Channel`` (blocking calls)."""
        view: ThreadChannel[T] = self._family["threads"]._view(self._st)
        return view
