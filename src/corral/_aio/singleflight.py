"""``corral.SingleFlight``: the asyncio view of a SingleFlight.

The call table and the waiters' rules are ``_core.singleflight``'s. A flight of an
``async def`` ``fn`` runs as a task of its own on the starting caller's loop (never inside
the caller's task: cancelling the first caller must not cancel, fail or hang the others);
a plain ``fn`` runs in a thread (``_threads.singleflight.start_thread``).
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
from collections.abc import Callable, Coroutine, Hashable
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar, TypeVarTuple, overload

from .._core.context import Context
from .._core.group import check_fn, is_async_callable
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
from .._core.waiter import AsyncWaiter, Waiter
from .._threads.singleflight import start_thread
from .callgraph import CALL_GRAPH, await_flight, flight_started
from .channel import Channel
from .wait import owed, park, pay_owed

if TYPE_CHECKING:
    from .._threads.singleflight import SingleFlight as ThreadSingleFlight

__all__ = ["SingleFlight"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
Ts = TypeVarTuple("Ts")

_get_running_loop = asyncio.get_running_loop
# Flight tasks are referenced here while they run: the event loop keeps only weak
# references to tasks, and nobody else holds this one.
_running: set[asyncio.Task[None]] = set()


def _start_flight(
    st: SingleFlightState,
    f: Flight,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    loop: asyncio.AbstractEventLoop | None,
) -> None:
    """Start the call of the flight ``f``: a task on ``loop`` for an async ``fn``, else a
    thread. A failure to start (``fn(*args)`` raising at once) is the call's outcome."""
    if loop is None:
        start_thread(st, f, fn, args)
        return
    cv = contextvars.copy_context()  # the leader's contextvars, as create_task would
    assert f.ctx is not None
    cv.run(CURRENT_FLIGHT.set, f.ctx)
    coro = None
    try:
        coro = cv.run(fn, *args)
        task = loop.create_task(_drive(st, f, coro), context=cv)
    except BaseException as exc:
        if inspect.iscoroutine(coro):
            coro.close()
        st.finish(f, None, exc)
        return
    _running.add(task)
    task.add_done_callback(_running.discard)
    if CALL_GRAPH:
        flight_started(f, task)
    st.on_cancel(f, partial(cancel_task_soon, loop, task))


async def _drive(st: SingleFlightState, f: Flight, coro: Coroutine[Any, Any, Any]) -> None:
    try:
        value = await coro
    except BaseException as exc:
        # Every outcome reaches the waiters, BaseExceptions included (the key is freed
        # either way). A CancelledError here is the flight being cancelled because its
        # last waiter left: nobody to tell, and the task simply ends.
        delivered = st.finish(f, None, exc)
        if isinstance(exc, GeneratorExit) or (
            not delivered and isinstance(exc, KeyboardInterrupt | SystemExit)
        ):
            raise
    else:
        st.finish(f, value, None)


class SingleFlight(SingleFlightBase[K, V]):
    """SingleFlight(*, ctx=None): Go's singleflight for asyncio; flights are children of ``ctx``.

    ``await sf.do(key, fn, *args)`` calls ``fn(*args)`` once for all the callers that ask
    for ``key`` while that call runs, and returns its value to each (or raises, in each,
    its own copy of the exception). The call is a task of its own (a thread for a plain
    ``fn``), not the first caller's: a caller that is cancelled or times out leaves the
    call running for the others; when the last one leaves, the call is cancelled and the
    key is free for a fresh call. Threads and tasks on any loop share calls:
    ``as_threads()`` is the same table for ``corral.threads.SingleFlight``.

    >>> import asyncio, corral
    >>> calls = []
    >>> async def load(user_id):
    ...     calls.append(user_id)
    ...     await asyncio.sleep(0.01)
    ...     return {"id": user_id}
    >>> async def main():
    ...     sf = corral.SingleFlight()
    ...     users = await asyncio.gather(*(sf.do(7, load, 7) for _ in range(100)))
    ...     return users[0], len(users), calls
    >>> asyncio.run(main())
    ({'id': 7}, 100, [7])
    """

    __slots__ = ()
    _flavour = "aio"

    @overload
    async def do(
        self,
        key: K,
        fn: Callable[[*Ts], Coroutine[Any, Any, V]],
        /,
        *args: *Ts,
        timeout: float | None = None,
        ctx: Context | None = None,
    ) -> V: ...

    @overload
    async def do(
        self,
        key: K,
        fn: Callable[[*Ts], V],
        /,
        *args: *Ts,
        timeout: float | None = None,
        ctx: Context | None = None,
    ) -> V: ...

    async def do(
        self,
        key: K,
        fn: Callable[[*Ts], Any],
        /,
        *args: *Ts,
        timeout: float | None = None,
        ctx: Context | None = None,
    ) -> Any:
        """Return ``fn(*args)``, shared with every concurrent caller of ``key``.

        Waits until the call finishes; ``timeout`` (``DeadlineExceeded``), ``ctx``
        (``Cancelled``) or cancelling this task make *this caller* leave, not the call.
        An exception from ``fn`` is raised as a copy of its own in each caller (same type,
        args and attributes; the traceback starts where ``fn`` failed).
        """
        # Every wait goes through park(), the one place that says what a cancellation
        # racing the delivery means (issue 17: a hand-inlined copy here once forgot to
        # record the owed cancellation, and swallowed it). A cancellation still owed from
        # the task's previous operation is raised here, before joining (see wait.py).
        if owed:
            pay_owed()
        w = self._join(
            key, fn, args, timeout, ctx, "SingleFlight.do", AsyncWaiter(_get_running_loop())
        )
        if CALL_GRAPH:  # 3.14+
            await_flight(w)
        await park(w, timeout, ctx)
        value, error, _ = w.value
        if error is not None:
            raise fresh_copy(error)
        return value

    @overload
    async def do_shared(
        self,
        key: K,
        fn: Callable[[*Ts], Coroutine[Any, Any, V]],
        /,
        *args: *Ts,
        timeout: float | None = None,
        ctx: Context | None = None,
    ) -> FlightResult[V]: ...

    @overload
    async def do_shared(
        self,
        key: K,
        fn: Callable[[*Ts], V],
        /,
        *args: *Ts,
        timeout: float | None = None,
        ctx: Context | None = None,
    ) -> FlightResult[V]: ...

    async def do_shared(
        self,
        key: K,
        fn: Callable[[*Ts], Any],
        /,
        *args: *Ts,
        timeout: float | None = None,
        ctx: Context | None = None,
    ) -> FlightResult[Any]:
        """:meth:`do`, also telling whether the result was shared with other callers
        (Go's third return value): ``value, shared = await sf.do_shared(key, fn)``."""
        if owed:
            pay_owed()
        waiter = AsyncWaiter(_get_running_loop())
        w = self._join(key, fn, args, timeout, ctx, "SingleFlight.do_shared", waiter)
        if CALL_GRAPH:  # 3.14+
            await_flight(w)
        await park(w, timeout, ctx)
        return result_of(w)

    def _launch(self, f: Flight, fn: Callable[..., Any], args: tuple[Any, ...], w: Waiter) -> None:
        assert isinstance(w, AsyncWaiter)
        _start_flight(self._st, f, fn, args, w.loop if is_async_callable(fn) else None)

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
        """Join (or start) the call for ``key`` now and return a channel (capacity 1) that
        receives its :class:`FlightResult`, then is closed (Go's ``DoChan``): use it in
        ``select`` beside a timeout or another channel.

        If the call raises, the channel is closed with (a copy of) its error:
        ``await ch.recv()`` raises it, and in ``select`` the case fires with ``ok`` False
        (receive then to get the error). As with Go's ``DoChan``, the caller cannot leave:
        it counts as waiting until the result is delivered. Call it from a running loop.

        >>> import asyncio, corral
        >>> async def main():
        ...     sf = corral.SingleFlight()
        ...     ch = sf.do_chan("k", asyncio.sleep, 0, "v")
        ...     s = await corral.select(ch.recv_case(), timeout=5)
        ...     return s.value
        >>> asyncio.run(main())
        FlightResult(value='v', shared=False)
        """
        if not callable(fn):  # before looking for the loop, as do() does
            check_fn(fn, "SingleFlight.do_chan")
        loop = _get_running_loop()
        w = self._join(key, fn, args, None, None, "SingleFlight.do_chan", AsyncWaiter(loop))
        out: Channel[FlightResult[Any]] = Channel(1)
        w.fut.add_done_callback(lambda _: deliver_to_channel(w, out))
        return out

    def as_threads(self) -> ThreadSingleFlight[K, V]:
        """The same SingleFlight (one call table) as a ``corral.threads.SingleFlight``."""
        view: ThreadSingleFlight[K, V] = self._family["threads"]._view(self._st)
        return view
