"""SingleFlight's rules, once: the call table and each flight's waiters.

A *flight* is one shared call of ``fn`` for a key. The first caller starts it; callers
that arrive while it runs *join* it. Every caller, the first one included, waits on a core
``Waiter`` (see ``waiter``), so tasks on any event loop and threads wait on the same
flight, and the claim protocol settles every race between a result and a caller leaving.

The flight does not belong to the caller who started it (Go runs ``fn`` in the first
caller's goroutine; in Python that caller could be cancelled or time out and take the
call down with it: the failure lessons-from-peers item 1 lists for the PyPI ports). It
runs on its own, as a task on the starting caller's loop (an ``async def`` ``fn``) or in
a thread of its own (a plain ``fn``), and counts its waiters:

* a waiter that leaves (cancelled, timed out, its Context done) unlinks itself; the
  flight goes on for the others, and stays in the table, so the next caller joins it
  rather than starting a duplicate;
* when the *last* waiter leaves before ``fn`` finished, nobody wants the result: the
  flight is removed from the table and its Context is cancelled, which cancels its task
  or tells its thread (``SingleFlight.current_context()``). A caller arriving after that
  starts a fresh flight instead of joining one that is being cancelled (tailscale#18919);
* when ``fn`` finishes, the flight leaves the table *before* its waiters are woken, so no
  key is ever stuck, whatever ``fn`` raised (``BaseException`` included).

Every waiter gets the same value; an exception is handed to each waiter as its own copy
(:func:`fresh_copy`), because raising one exception object from many tasks or threads
splices their tracebacks together.

Lock order: ``lock`` → a waiter's claim lock (leaf). Context callbacks (which cancel a
flight's task) run only after ``lock`` is released.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import threading
import weakref
from collections.abc import Callable, Coroutine, Hashable
from dataclasses import dataclass
from functools import partial
from types import FunctionType
from typing import Any, Generic, NamedTuple, ParamSpec, Protocol, Self, TypeVar, overload

from .._errors import Cancelled, ChannelClosed
from . import tracking, views
from .context import (
    CancelContext,
    Context,
    _check_timeout,
    background,
    check_ctx,
    check_ctx_arg,
    with_cancel,
)
from .group import check_fn
from .waiter import Entry, Waiter

__all__ = [
    "CURRENT_FLIGHT",
    "Deduplicated",
    "Flight",
    "FlightResult",
    "SingleFlightBase",
    "SingleFlightState",
    "SingleFlightStatistics",
    "cancel_task_soon",
    "deliver_to_channel",
    "fresh_copy",
    "result_of",
]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)
P = ParamSpec("P")
E = TypeVar("E", bound=BaseException)
W = TypeVar("W", bound=Waiter)

#: The Context of the flight running the current code (see SingleFlight.current_context).
CURRENT_FLIGHT: contextvars.ContextVar[Context] = contextvars.ContextVar("corral_flight")

_MISSING = object()
_BACKGROUND = background()


class FlightResult(NamedTuple, Generic[V]):
    """What a caller of ``do_shared`` / ``do_chan`` gets: the value, and whether other
    callers shared the call (Go's ``shared``).

    >>> import corral.threads
    >>> value, shared = corral.threads.SingleFlight().do_shared("k", str.upper, "go")
    >>> value, shared
    ('GO', False)
    """

    value: V
    shared: bool


@dataclass(frozen=True, slots=True)
class SingleFlightStatistics:
    """A snapshot of a ``SingleFlight`` (``sf.statistics()``).

    >>> import corral.threads
    >>> sf = corral.threads.SingleFlight()
    >>> sf.do("k", len, "abc")
    3
    >>> sf.statistics()
    SingleFlightStatistics(in_flight=0, waiters=0, started=1, joined=0)
    """

    in_flight: int  #: keys whose call is running (forgotten ones not counted)
    waiters: int  #: callers waiting on those calls
    started: int  #: calls started since the SingleFlight was made
    joined: int  #: callers that joined a running call instead of starting one


def fresh_copy(exc: E) -> E:
    """A shallow copy of ``exc`` for one waiter: same type, args, attributes, notes, cause
    and context, and the original traceback (where ``fn`` failed) to start from.

    Built the way pickle would rebuild it (``__reduce_ex__``, so ``OSError.filename`` and
    custom ``__reduce__`` survive), except that a class with its own Python ``__init__`` is
    made with ``__new__`` and its attributes restored, never by calling ``__init__`` again:
    ``copy.copy`` does call it, with ``args``, which breaks for the common
    ``def __init__(self, code): super().__init__(f"error {code}")`` (and repeats side
    effects). If even that fails, ``exc`` itself is returned: sharing one object is the
    lesser evil than losing it.
    """
    cls = type(exc)
    try:
        rv = exc.__reduce_ex__(2)
        if not isinstance(rv, tuple) or len(rv) < 2:
            return exc
        func, args = rv[0], rv[1]
        state = rv[2] if len(rv) > 2 else None
        if func is cls and isinstance(getattr(cls, "__init__", None), FunctionType):
            new = cls.__new__(cls, *args)
        else:
            new = func(*args)
        if state:
            new.__setstate__(state)
        if type(new) is not cls:
            return exc
        notes = getattr(exc, "__notes__", None)
        if isinstance(notes, list):
            new.__notes__ = list(notes)  # each copy gets its own list to add_note() to
    except Exception:
        return exc
    new.__cause__ = exc.__cause__
    new.__context__ = exc.__context__
    new.__suppress_context__ = exc.__suppress_context__
    new.__traceback__ = exc.__traceback__
    return new


class Flight:
    """One running call of ``fn`` for a key, and the callers waiting for it."""

    __slots__ = (
        "cancelled",
        "ctx",
        "done",
        "dups",
        "entries",
        "key",
        "owner",
        "stop_hook",
    )

    def __init__(self, owner: SingleFlightState, key: Hashable) -> None:
        self.owner = owner
        self.key = key
        self.entries: dict[Entry, None] = {}  # an ordered set: wake in arrival order
        self.dups = 0
        self.done = False
        self.cancelled = False
        self.ctx: CancelContext | None = None
        #: Withdraws the hook that cancels the flight's task when its Context is done.
        self.stop_hook: Callable[[], bool] | None = None

    def _unlink(self, entry: Entry) -> None:
        self.owner._leave(self, entry)

    def __repr__(self) -> str:
        state = "done" if self.done else "cancelled" if self.cancelled else "running"
        return f"<Flight key={self.key!r} {state} waiters={len(self.entries)}>"


def cancel_task_soon(loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` from any thread (a flight's Context callback runs in the thread of
    the waiter that left last)."""
    if asyncio.events._get_running_loop() is loop:
        task.cancel()
        return
    try:
        loop.call_soon_threadsafe(task.cancel)
    except RuntimeError:  # the loop is closed: the task will never run again anyway
        pass


def result_of(w: Waiter) -> FlightResult[Any]:
    """The outcome handed to ``w``: its :class:`FlightResult`, or the call's exception
    raised as a copy of its own."""
    value, error, shared = w.value
    if error is not None:
        raise fresh_copy(error)
    return FlightResult(value, shared)


def deliver_to_channel(w: Waiter, ch: Any) -> None:
    """Hand the outcome ``w`` received to ``do_chan``'s channel (capacity 1): one
    :class:`FlightResult`, then the close; a failure (a copy of the call's exception, or
    why the waiter was aborted) closes it with that error, which receiving raises
    (``Channel.close(error=)``'s rule). A channel its caller closed is left as it is."""
    if w.error is not None:  # aborted (the SingleFlight's ctx is done, say)
        ch.close(error=w.error)
        return
    value, error, shared = w.value
    if error is not None:
        ch.close(error=fresh_copy(error))
        return
    with contextlib.suppress(ChannelClosed):  # the caller closed it: nobody wants it
        ch.send_nowait(FlightResult(value, shared))
    ch.close()


class SingleFlightState:
    __slots__ = ("__weakref__", "calls", "joined", "live", "lock", "parent", "started", "views")

    def __init__(self, parent: Context | None = None) -> None:
        self.lock = threading.Lock()
        self.parent = background() if parent is None else parent
        self.calls: dict[Hashable, Flight] = {}
        # Flights with waiters, in the table or forgotten (for the leak check).
        self.live: set[Flight] = set()
        self.started = 0
        self.joined = 0
        self.views: dict[str, weakref.ref[Any]] = {}
        if tracking.enabled:
            tracking.track(self)

    # -- callers -----------------------------------------------------------------------

    def join(self, key: Hashable, w: Waiter, what: str) -> tuple[Flight, bool]:
        """Register ``w`` in the flight for ``key``, starting one if none runs;
        ``(flight, leader)``. The leader must then launch the call, which ends in
        ``finish``. (The waiter is made by the caller, outside the lock.)"""
        with self.lock:
            try:
                f = self.calls.get(key)
            except TypeError:
                raise TypeError(f"{what}: key must be hashable, got {type(key).__name__}") from None
            leader = f is None
            if f is None:
                f = self.calls[key] = Flight(self, key)
                self.live.add(f)
                self.started += 1
            else:
                f.dups += 1
                self.joined += 1
            e = Entry(w, 0, None, f)
            w.entries = [e]
            f.entries[e] = None
        if leader:
            # Made outside the lock: creating a Context takes the Context tree's lock.
            f.ctx = with_cancel(self.parent)
        return f, leader

    def on_cancel(self, f: Flight, hook: Callable[[], object]) -> None:
        """Run ``hook`` (cancel the flight's task) when the flight's Context is done,
        at once if it already is; ``finish`` withdraws it."""
        assert f.ctx is not None
        f.stop_hook = f.ctx.after_func(hook)

    def _leave(self, f: Flight, entry: Entry) -> None:
        """A waiter gave up (called through ``Waiter.unlink`` after its abort)."""
        with self.lock:
            if f.entries.pop(entry, _MISSING) is _MISSING or f.done or f.entries:
                return
            # The last waiter left before fn finished: nobody wants the result. New
            # callers must start afresh, not join a call that is being cancelled.
            f.cancelled = True
            self.live.discard(f)
            if self.calls.get(f.key) is f:
                del self.calls[f.key]
        if f.ctx is not None:
            f.ctx.cancel(Cancelled("SingleFlight: every caller waiting for this call left"))

    # -- the flight ----------------------------------------------------------------------

    def finish(self, f: Flight, value: Any, error: BaseException | None) -> int:
        """``fn`` returned ``value`` or raised ``error``: leave the table, then hand the
        outcome to every waiter. Returns how many waiters got it."""
        if isinstance(error, asyncio.CancelledError | GeneratorExit):
            # The flight's task was cancelled (or destroyed) by someone other than its
            # waiters (its loop shutting down, fn giving up): waiters get an error, not a
            # CancelledError that would look like their own cancellation.
            cause = error
            error = Cancelled("SingleFlight: the shared call was cancelled before it finished")
            error.__cause__ = cause
        stop = f.stop_hook
        if stop is not None:
            stop()
        with self.lock:
            if f.done:
                return 0
            f.done = True
            self.live.discard(f)
            if self.calls.get(f.key) is f:
                del self.calls[f.key]
            entries = list(f.entries)
            f.entries.clear()
            outcome = (value, error, f.dups > 0)
        if f.ctx is not None:
            f.ctx.cancel()  # Go's `defer cancel()`: drop it from its parent
        n = 0
        for e in entries:
            if e.waiter.complete(0, outcome):
                n += 1
        return n

    # -- the table -----------------------------------------------------------------------

    def forget(self, key: Hashable) -> None:
        with self.lock:
            self.calls.pop(key, None)

    def forget_unshared(self, key: Hashable) -> bool:
        with self.lock:
            f = self.calls.get(key)
            if f is None:
                return True
            if f.dups == 0:
                del self.calls[key]
                return True
            return False

    def queued_waiters(self) -> int:
        with self.lock:
            return sum(1 for f in self.live for e in f.entries if not e.waiter.done)

    def statistics(self) -> SingleFlightStatistics:
        with self.lock:
            return SingleFlightStatistics(
                in_flight=len(self.calls),
                waiters=sum(len(f.entries) for f in self.calls.values()),
                started=self.started,
                joined=self.joined,
            )

    def __repr__(self) -> str:
        return f"<SingleFlightState in_flight={len(self.calls)}>"


# --- the non-blocking half of both flavours' public class ------------------------------------


class Deduplicated(Protocol[P, R_co]):
    """A function wrapped by ``SingleFlight.deduplicate``: call it as the original; calls
    with equal arguments made while one runs share its result."""

    singleflight: SingleFlightBase[Any, Any]

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R_co: ...

    def forget(self, *args: P.args, **kwargs: P.kwargs) -> None:
        """``SingleFlight.forget`` for the key of these arguments."""


class _Decorator(Protocol):
    @overload
    def __call__(
        self, fn: Callable[P, Coroutine[Any, Any, R]], /
    ) -> Deduplicated[P, Coroutine[Any, Any, R]]: ...

    @overload
    def __call__(self, fn: Callable[P, R], /) -> Deduplicated[P, R]: ...


class SingleFlightBase(views.Flavoured, Generic[K, V]):
    __slots__ = ("__weakref__", "_st")
    _flavour: str = ""
    _family = views.family("singleflight")

    def __init__(self, *, ctx: Context | None = None) -> None:
        check_ctx_arg(ctx, "SingleFlight", optional=True)
        self._st = SingleFlightState(ctx)
        views.register(self._st, self._flavour, self)

    @classmethod
    def _view(cls, st: SingleFlightState) -> Self:
        return views.view_of(cls, cls._flavour, st)

    def forget(self, key: K) -> None:
        """Forget ``key``: the next call starts a new flight even if one is running (its
        waiters still get its result). Go's ``Forget``."""
        self._st.forget(key)

    def forget_unshared(self, key: K) -> bool:
        """Forget ``key`` only if nobody joined its running call; ``True`` if it is now
        forgotten (or was not running). Go's internal ``ForgetUnshared``."""
        return self._st.forget_unshared(key)

    def statistics(self) -> SingleFlightStatistics:
        """A :class:`SingleFlightStatistics` snapshot."""
        return self._st.statistics()

    def _join(
        self,
        key: K,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        timeout: float | None,
        ctx: Context | None,
        what: str,
        w: W,
    ) -> W:
        """Check the arguments, then make ``w`` a waiter of the flight for ``key``,
        starting the flight (:meth:`_launch`) if there is none."""
        if not callable(fn):
            check_fn(fn, what)  # raises the right TypeError
        if timeout is not None:
            _check_timeout(timeout)
        if ctx is not None:
            check_ctx(ctx, what)
        st = self._st
        f, leader = st.join(key, w, what)
        if leader:
            self._launch(f, fn, args, w)
        return w

    def _launch(self, f: Flight, fn: Callable[..., Any], args: tuple[Any, ...], w: Waiter) -> None:
        """Start the call of the new flight ``f``, whose first waiter is ``w``."""
        raise NotImplementedError

    @staticmethod
    def current_context() -> Context:
        """The Context of the shared call running this code, for ``fn`` to watch.

        It is cancelled when every caller waiting for the call has left (and when the
        SingleFlight's ``ctx`` is). An ``async def`` ``fn`` is also cancelled as a task;
        a plain ``fn`` runs in a thread, which cannot be interrupted, so it checks this
        (``raise_if_cancelled()``, ``wait_blocking()``, ``ctx=`` on corral calls).
        Outside a shared call: ``background()``.
        """
        return CURRENT_FLIGHT.get(_BACKGROUND)

    @overload
    def deduplicate(
        self, fn: Callable[P, Coroutine[Any, Any, R]], /
    ) -> Deduplicated[P, Coroutine[Any, Any, R]]: ...

    @overload
    def deduplicate(self, fn: Callable[P, R], /) -> Deduplicated[P, R]: ...

    @overload
    def deduplicate(self, fn: None = None, /, *, key: Callable[..., Hashable]) -> _Decorator: ...

    def deduplicate(
        self, fn: Callable[..., Any] | None = None, /, *, key: Callable[..., Hashable] | None = None
    ) -> Any:
        """Decorate ``fn`` so that concurrent calls with equal arguments share one call.

        The wrapper keeps ``fn``'s calling convention: an ``async def`` gives an
        ``async def`` (run through ``corral.SingleFlight``), a plain function a blocking
        function (``corral.threads.SingleFlight``, the same table: threads and tasks share
        calls). The key is the arguments (they must be hashable) or ``key(*args,
        **kwargs)``; each decorated function has keys of its own, so one SingleFlight can
        serve many. ``wrapper.forget(*args, **kwargs)`` forgets one key.

        >>> import corral.threads
        >>> sf = corral.threads.SingleFlight()
        >>> @sf.deduplicate(key=lambda user_id, fresh=False: user_id)
        ... def load_user(user_id, fresh=False):
        ...     return {"id": user_id}
        >>> load_user(7)
        {'id': 7}
        """
        if key is not None and not callable(key):
            raise TypeError(f"deduplicate: key must be callable, got {type(key).__name__}")
        if fn is None:
            return partial(self._decorate, key=key)
        return self._decorate(fn, key=key)

    def _decorate(self, fn: Callable[..., Any], key: Callable[..., Hashable] | None) -> Any:
        from .group import is_async_callable

        if not callable(fn):
            raise TypeError(f"deduplicate: fn must be callable, got {type(fn).__name__}")
        name = getattr(fn, "__qualname__", repr(fn))
        namespace = object()  # this function's keys never meet another function's

        def make_key(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Hashable:
            if key is not None:
                k: Hashable = (namespace, key(*args, **kwargs))
            elif kwargs:
                k = (namespace, args, tuple(sorted(kwargs.items())))
            else:
                k = (namespace, args)
            try:
                hash(k)
            except TypeError:
                raise TypeError(
                    f"deduplicate: the arguments of {name} are not hashable; pass "
                    "key=lambda *args, **kwargs: ... to say what identifies a call"
                ) from None
            return k

        st = self._st
        wrapper: Any
        if is_async_callable(fn):
            asf = self._family["aio"]._view(st)

            @functools.wraps(fn)
            async def awrapper(*args: Any, **kwargs: Any) -> Any:
                return await asf.do(make_key(args, kwargs), partial(fn, *args, **kwargs))

            wrapper = awrapper
        else:
            tsf = self._family["threads"]._view(st)

            @functools.wraps(fn)
            def twrapper(*args: Any, **kwargs: Any) -> Any:
                return tsf.do(make_key(args, kwargs), partial(fn, *args, **kwargs))

            wrapper = twrapper

        def forget(*args: Any, **kwargs: Any) -> None:
            st.forget(make_key(args, kwargs))

        wrapper.forget = forget
        wrapper.singleflight = self
        return wrapper

    def __repr__(self) -> str:
        s = self._st.statistics()
        where = "corral" if self._flavour == "aio" else "corral.threads"
        return f"<{where}.SingleFlight in_flight={s.in_flight} waiters={s.waiters}>"
