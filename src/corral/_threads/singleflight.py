"""``corral.threads.SingleFlight``: the blocking view of a SingleFlight, and the runner of
every flight whose ``fn`` is a plain function (whichever flavour started it).

The call table and the waiters' rules are ``_core.singleflight``'s. A flight of a plain
``fn`` runs in a thread of its own rather than in the calling thread (Go's choice): the
caller may then leave (``timeout=``, ``ctx=``, Ctrl-C in the main thread) without taking
the call down for the others, and a ``KeyboardInterrupt`` meant for the main thread never
lands inside a call other threads wait for. The cost is one thread start per flight,
against the call it deduplicates.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import itertools
from collections.abc import Awaitable, Callable, Coroutine, Hashable
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar, TypeVarTuple, overload

from .._core.context import Context
from .._core.singleflight import (
    CURRENT_FLIGHT,
    Flight,
    FlightResult,
    SingleFlightBase,
    SingleFlightState,
    cancel_task_soon,
    deliver_to_channel,
    fresh_copy,
    result_of,
)
from .._core.threads import start_thread as new_thread
from .._core.waiter import ThreadWaiter, Waiter
from .channel import Channel
from .wait import park

if TYPE_CHECKING:
    from .._aio.singleflight import SingleFlight as AsyncSingleFlight

__all__ = ["SingleFlight", "start_thread"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
Ts = TypeVarTuple("Ts")

_names = itertools.count(1)


def start_thread(st: SingleFlightState, f: Flight, fn: Callable[..., Any], args: Any) -> None:
    """Run the flight's call in a new (daemon) thread, with the leader's contextvars and
    ``current_context()`` set to the flight's Context."""
    cv = contextvars.copy_context()
    assert f.ctx is not None
    cv.run(CURRENT_FLIGHT.set, f.ctx)
    try:
        new_thread(
            _run_flight,
            st,
            f,
            cv,
            fn,
            args,
            name=f"corral-singleflight-{next(_names)}",
            what="SingleFlight.do",
            context=None,
        )
    except BaseException as exc:  # no thread could be started: every waiter learns it
        st.finish(f, None, exc)


def _run_flight(
    st: SingleFlightState, f: Flight, cv: contextvars.Context, fn: Callable[..., Any], args: Any
) -> None:
    try:
        value = cv.run(fn, *args)
        if inspect.iscoroutine(value):
            # An async fn whose flight a thread started: it gets an event loop of its
            # own here (a task on some caller's loop is started only by asyncio callers).
            value = cv.run(asyncio.run, _in_private_loop(st, f, value))
    except BaseException as exc:
        if not st.finish(f, None, exc) and isinstance(exc, KeyboardInterrupt | SystemExit):
            raise  # nobody received it: let threading.excepthook report it
    else:
        st.finish(f, value, None)


async def _in_private_loop(st: SingleFlightState, f: Flight, coro: Awaitable[Any]) -> Any:
    task = asyncio.current_task()
    assert task is not None
    st.on_cancel(f, partial(cancel_task_soon, asyncio.get_running_loop(), task))
    return await coro


class _ChannelWaiter(Waiter):
    """A waiter that delivers into ``do_chan``'s channel when it is woken."""

    __slots__ = ("ch",)

    def __init__(self, ch: Channel[Any]) -> None:
        super().__init__()
        self.ch = ch

    def _wake(self) -> bool:
        deliver_to_channel(self, self.ch)
        return True


class SingleFlight(SingleFlightBase[K, V]):
    """SingleFlight(*, ctx=None): Go's singleflight for threads; flights are children of ``ctx``.

    ``sf.do(key, fn, *args)`` calls ``fn(*args)`` once for all the callers that ask for
    ``key`` while that call runs, and returns its value to each (or raises, in each, its
    own copy of the exception). The call runs in a thread of its own, not in the first
    caller's: a caller that leaves (``timeout=``, ``ctx=``) leaves the call running for
    the others; when the last one leaves, the call's Context
    (:meth:`current_context`) is cancelled and the key is free for a fresh call. Threads
    and tasks share calls: ``as_async()`` is the same table for ``corral.SingleFlight``.

    >>> import corral.threads
    >>> sf = corral.threads.SingleFlight()
    >>> sf.do("answer", lambda: 42)
    42
    >>> sf.do_shared("answer", lambda: 42)
    FlightResult(value=42, shared=False)
    """

    __slots__ = ()
    _flavour = "threads"

    @overload
    def do(
        self,
        key: K,
        fn: Callable[[*Ts], Coroutine[Any, Any, V]],
        /,
        *args: *Ts,
        timeout: float | None = None,
        ctx: Context | None = None,
    ) -> V: ...

    @overload
    def do(
        self,
        key: K,
        fn: Callable[[*Ts], V],
        /,
        *args: *Ts,
        timeout: float | None = None,
        ctx: Context | None = None,
    ) -> V: ...

    def do(
        self,
        key: K,
        fn: Callable[[*Ts], Any],
        /,
        *args: *Ts,
        timeout: float | None = None,
        ctx: Context | None = None,
    ) -> Any:
        """Return ``fn(*args)``, shared with every concurrent caller of ``key``.

        Blocks until the call finishes, ``timeout`` seconds pass (``DeadlineExceeded``)
        or ``ctx`` is done (``Cancelled``); leaving early does not stop the call for the
        others. An exception from ``fn`` is raised as a copy of its own in each caller
        (same type, args and attributes; the traceback starts where ``fn`` failed). An
        ``async def`` ``fn`` started from a thread runs in an event loop of its own.
        """
        # do_shared's body, but the value alone (no FlightResult to build and unpack).
        w = self._join(key, fn, args, timeout, ctx, "SingleFlight.do", ThreadWaiter())
        park(w, timeout, ctx)
        value, error, _ = w.value
        if error is not None:
            raise fresh_copy(error)
        return value

    @overload
    def do_shared(
        self,
        key: K,
        fn: Callable[[*Ts], Coroutine[Any, Any, V]],
        /,
        *args: *Ts,
        timeout: float | None = None,
        ctx: Context | None = None,
    ) -> FlightResult[V]: ...

    @overload
    def do_shared(
        self,
        key: K,
        fn: Callable[[*Ts], V],
        /,
        *args: *Ts,
        timeout: float | None = None,
        ctx: Context | None = None,
    ) -> FlightResult[V]: ...

    def do_shared(
        self,
        key: K,
        fn: Callable[[*Ts], Any],
        /,
        *args: *Ts,
        timeout: float | None = None,
        ctx: Context | None = None,
    ) -> FlightResult[Any]:
        """:meth:`do`, also telling whether the result was shared with other callers
        (Go's third return value): ``value, shared = sf.do_shared(key, fn)``."""
        w = self._join(key, fn, args, timeout, ctx, "SingleFlight.do_shared", ThreadWaiter())
        park(w, timeout, ctx)
        return result_of(w)

    @overload
    def do_chan(
        self, key: K, fn: Callable[[*Ts], Coroutine[Any, Any, V]], /, *args: *Ts
    ) -> Channel[FlightResult[V]]: ...

    @overload
    def do_chan(
        self, key: K, fn: Callable[[*Ts], V], /, *args: *Ts
    ) -> Channel[FlightResult[V]]: ...

    def do_chan(
        self, key: K, fn: Callable[[*Ts], Any], /, *args: *Ts
    ) -> Channel[FlightResult[Any]]:
        """Join (or start) the call for ``key`` and return at once a channel (capacity 1)
        that receives its :class:`FlightResult`, then is closed (Go's ``DoChan``): use it
        in ``select`` beside a timeout or another channel.

        If the call raises, the channel is closed with (a copy of) its error: ``ch.recv()``
        raises it, and in ``select`` the case fires with ``ok`` False. As with Go's
        ``DoChan``, the caller cannot leave: it counts as waiting until the result is
        delivered.

        >>> import corral.threads
        >>> sf = corral.threads.SingleFlight()
        >>> ch = sf.do_chan("k", str.upper, "go")
        >>> corral.threads.select(ch.recv_case(), timeout=5).value
        FlightResult(value='GO', shared=False)
        """
        out: Channel[FlightResult[Any]] = Channel(1)
        self._join(key, fn, args, None, None, "SingleFlight.do_chan", _ChannelWaiter(out))
        return out

    def _launch(self, f: Flight, fn: Callable[..., Any], args: tuple[Any, ...], w: Waiter) -> None:
        start_thread(self._st, f, fn, args)

    def as_async(self) -> AsyncSingleFlight[K, V]:
        """The same SingleFlight (one call table) as a ``corral.SingleFlight``."""
        view: AsyncSingleFlight[K, V] = self._family["aio"]._view(self._st)
        return view
