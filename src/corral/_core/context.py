"""Context: Go's ``context`` for Python, shared by tasks and threads.

A Context carries cancellation (with a *cause*), an optional deadline and request-scoped
values down a call tree. The tree rules, as in Go:

* cancelling a context cancels every descendant, never an ancestor;
* a child's deadline is ``min(parent's, its own)``;
* ``without_cancel`` keeps the values and drops the cancellation (for cleanup that must
  outlive a request);
* a cancelled node drops its children and leaves its parent's child set, so a cancelled
  tree holds no reference cycle and is freed by reference counting alone.

All state sits behind one module lock (``_tree``): creating and cancelling contexts is
rare next to channel traffic, and one lock makes whole-subtree cancellation atomic.
Callbacks (waiters to wake, ``after_func`` functions) run after the lock is released, in
the thread that cancelled (the timer thread for deadlines).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import threading
import time
from collections.abc import Callable
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING, Any, NoReturn, Self

from .._errors import Cancelled, DeadlineExceeded
from . import timer as _timer
from . import views
from .waiter import AsyncWaiter, ThreadWaiter, Waiter

if TYPE_CHECKING:
    from .._aio.channel import Channel
    from .cancel_scope import CancelScope

__all__ = [
    "CancelContext",
    "Context",
    "background",
    "with_cancel",
    "with_deadline",
    "with_timeout",
    "with_value",
    "without_cancel",
]

_log = logging.getLogger("corral")
_tree = threading.Lock()
_handles = itertools.count()
_get_running_loop = asyncio.events._get_running_loop
# The channel classes by flavour: done() returns a ``corral.Channel``, which the asyncio
# shell defines (and registers there) above this module; see _core/views.py.
_channels = views.family("channel")


# The key the constructors below check: only this module makes Contexts (users call
# background() and the with_* functions; a Context built by hand would skip their checks).
_MAKE = object()


class Context:
    """A node in a cancellation tree; see the module docs. Make one with ``background()``.

    ``Context`` objects are immutable and thread-safe; every method may be called from any
    thread or task.

    >>> import corral
    >>> with corral.with_cancel(corral.background()) as ctx:
    ...     ctx.cancelled
    False
    >>> ctx.cancelled, type(ctx.err).__name__
    (True, 'Cancelled')
    """

    __slots__ = ("__weakref__", "_gov", "_parent")

    def __init__(
        self, parent: Context | None, governor: CancelContext | None, key: object = None, /
    ) -> None:
        if key is not _MAKE:  # one identity test: creation stays as cheap as it was
            raise TypeError(
                f"{type(self).__name__}: make a Context with corral.background(), "
                "with_cancel(), with_timeout(), with_deadline(), with_value() or "
                "without_cancel(); its constructor is internal"
            )
        self._parent = parent
        # The nearest cancellable context that decides this one's fate, None when nothing
        # can cancel it. A CancelContext governs itself: it answers through the
        # ``_governor`` property below instead of storing ``self`` (a self-reference is
        # a cycle that only the garbage collector could free).
        self._gov = governor

    @property
    def _governor(self) -> CancelContext | None:
        return self._gov

    # -- state ---------------------------------------------------------------------------

    @property
    def err(self) -> Cancelled | None:
        """``None`` while live; then a :class:`Cancelled` (or :class:`DeadlineExceeded`)."""
        g = self._governor
        return None if g is None else g._current_err()

    @property
    def cancelled(self) -> bool:
        """Whether the context is done (cancelled or past its deadline)."""
        return self.err is not None

    @property
    def cause(self) -> BaseException | None:
        """Why it was cancelled: the ``cause`` given to ``cancel``, else :attr:`err`."""
        g = self._governor
        if g is None or g._current_err() is None:
            return None
        return g._cause if g._cause is not None else g._err

    @property
    def deadline(self) -> float | None:
        """The ``time.monotonic()`` instant this context expires, or ``None``."""
        g = self._governor
        return None if g is None else g._deadline

    def value(self, key: object, default: Any = None) -> Any:
        """The value bound to ``key`` by ``with_value`` here or in an ancestor."""
        ctx: Context | None = self
        while ctx is not None:
            if isinstance(ctx, _ValueContext) and ctx._key == key:
                return ctx._value
            ctx = ctx._parent
        return default

    def raise_if_cancelled(self) -> None:
        """Raise a fresh :class:`Cancelled` / :class:`DeadlineExceeded` if done.

        Threads cannot be interrupted, so thread work calls this at safe points.
        """
        g = self._governor
        if g is not None and g._current_err() is not None:
            raise g._fresh_error()

    # -- waiting -------------------------------------------------------------------------

    async def wait(self) -> None:
        """Return once the context is done (never, for an uncancellable one)."""
        g = self._governor
        loop = asyncio.get_running_loop()
        w = AsyncWaiter(loop)
        handle = None if g is None else g._on_cancel(lambda: w.complete(0, None))
        if g is not None and handle is None:
            return
        try:
            await w.fut
        finally:
            if g is not None and handle is not None:
                g._remove_callback(handle)

    def wait_blocking(self, timeout: float | None = None) -> bool:
        """Block this thread until done or ``timeout`` seconds pass; return :attr:`cancelled`."""
        _check_timeout(timeout)
        g = self._governor
        w = ThreadWaiter()
        handle = None if g is None else g._on_cancel(lambda: w.complete(0, None))
        if g is not None and handle is None:
            return True
        try:
            w.park(timeout)
        finally:
            if g is not None and handle is not None:
                g._remove_callback(handle)
        return self.cancelled

    def done(self) -> Channel[NoReturn]:
        """A channel that is closed when the context is done: Go's ``ctx.Done()``.

        Use it as a case in ``select`` (``ctx.done().recv_case()``); a receive on it
        raises ``EndOfChannel`` once the context is done.
        """
        g = self._governor
        if g is None:
            # Never closed, like Go's nil Done channel.
            never: Channel[NoReturn] = _channels["aio"]()
            return never
        return g._done_channel()

    def after_func(self, fn: Callable[[], object]) -> Callable[[], bool]:
        """Call ``fn()`` once, when the context is done; return a ``stop`` function.

        ``stop()`` returns ``True`` if it prevented ``fn`` from running. ``fn`` runs in the
        thread that cancels the context (the timer thread for a deadline), or right now
        if the context is already done: keep it short, or hand work to a loop or pool.
        """
        if not callable(fn):
            raise TypeError(f"after_func: fn must be callable, got {type(fn).__name__}")
        once = threading.Lock()

        def run() -> None:
            if once.acquire(blocking=False):
                try:
                    fn()
                except Exception:  # nobody can catch it in the cancelling thread
                    _log.exception("corral after_func callback %r failed", fn)

        g = self._governor
        handle = None if g is None else g._on_cancel(run)
        if g is not None and handle is None:
            run()

        def stop() -> bool:
            if not once.acquire(blocking=False):
                return False
            if g is not None and handle is not None:
                g._remove_callback(handle)
            return True

        return stop

    def cancel_scope(self) -> CancelScope:
        """``async with ctx.cancel_scope():`` cancels the current task when ctx is done.

        On exit, the ``CancelledError`` that the context caused is turned into the
        context's :class:`Cancelled` / :class:`DeadlineExceeded` (its ``cause`` attached);
        a cancellation that came from elsewhere passes through untouched.
        """
        from .cancel_scope import CancelScope  # asyncio-only: imported when first used

        return CancelScope(self)

    def __repr__(self) -> str:
        state = "cancelled" if self.cancelled else "live"
        return f"<{type(self).__name__} {state}>"


class CancelContext(Context):
    """A context that can be cancelled: made by ``with_cancel`` / ``with_timeout`` /
    ``with_deadline``. Leaving ``with ctx:`` cancels it, as Go's ``defer cancel()``.
    """

    __slots__ = (
        "_callbacks",
        "_cause",
        "_children",
        "_deadline",
        "_done_chan",
        "_err",
        "_registered_in",
        "_timer",
    )

    def __init__(self, parent: Context, deadline: float | None, key: object = None, /) -> None:
        super().__init__(parent, None, key)
        self._children: set[CancelContext] = set()
        self._callbacks: dict[int, Callable[[], object]] | None = {}
        self._err: Cancelled | None = None
        self._cause: BaseException | None = None
        self._deadline = deadline
        self._registered_in: CancelContext | None = None
        self._timer: _timer.Timer | None = None
        self._done_chan: Channel[NoReturn] | None = None

    @property
    def _governor(self) -> CancelContext:
        return self

    def cancel(self, cause: BaseException | None = None) -> bool:
        """Cancel this context and every descendant; ``False`` if it was already done."""
        if cause is not None and not isinstance(cause, BaseException):
            raise TypeError(f"cancel: cause must be an exception, got {type(cause).__name__}")
        return self._finish(Cancelled("context cancelled", cause), cause)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.cancel()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.cancel()

    # -- internals -----------------------------------------------------------------------

    def _current_err(self) -> Cancelled | None:
        err = self._err
        if err is None and self._deadline is not None:
            now = time.monotonic()
            if now >= self._deadline:
                # The timer thread may lag; a reader must never see a live context past
                # its deadline, so expire it here. Expire the outermost ancestor whose
                # deadline passed, as its timer would have: its error and cause then reach
                # this context through the tree.
                target = self
                up = self._registered_in
                while up is not None and up._deadline is not None and up._deadline <= now:
                    target = up
                    up = up._registered_in
                target._expire()
                err = self._err
        return err

    def _fresh_error(self) -> Cancelled:
        # Each raise gets its own exception object: raising one object from many tasks or
        # threads would splice their tracebacks together.
        err = self._err
        assert err is not None
        fresh = type(err)(str(err), err.cause)
        fresh.__cause__ = err.cause
        return fresh

    def _expire(self) -> None:
        self._finish(DeadlineExceeded("context deadline exceeded", self._cause), self._cause)

    def _finish(self, err: Cancelled, cause: BaseException | None) -> bool:
        fired: list[CancelContext] = []
        with _tree:
            if self._err is not None:
                return False
            stack = [self]
            while stack:
                c = stack.pop()
                if c._err is not None:
                    continue
                c._err = err
                c._cause = cause
                fired.append(c)
                stack.extend(c._children)
                c._children = set()
                c._registered_in = None
            parent = self._registered_in
            if parent is not None:
                parent._children.discard(self)
            self._registered_in = None
            callbacks: list[Callable[[], object]] = []
            for c in fired:
                if c._callbacks:
                    callbacks.extend(c._callbacks.values())
                c._callbacks = None
        for c in fired:
            if c._timer is not None:
                _timer.cancel(c._timer)
                c._timer = None
        for cb in callbacks:
            try:
                cb()
            except Exception:
                _log.exception("corral context callback %r failed", cb)
        return True

    def _on_cancel(self, fn: Callable[[], object]) -> int | None:
        """Register ``fn`` to run on cancellation; ``None`` if already done (not registered)."""
        if self._current_err() is not None:
            return None
        with _tree:
            if self._callbacks is None:
                return None
            handle = next(_handles)
            self._callbacks[handle] = fn
            return handle

    def _abort_on_cancel(self, w: Waiter) -> int | None:
        """Abort the parked ``w`` with this context's error when it is cancelled (now, if
        it is done already): how every blocking operation's ``ctx=`` ends its wait, in both
        flavours. Returns the handle to :meth:`_remove_callback` once the wait is over."""
        handle = self._on_cancel(partial(_abort_waiter, w, self))
        if handle is None:
            _abort_waiter(w, self)
        return handle

    def _remove_callback(self, handle: int) -> None:
        with _tree:
            if self._callbacks is not None:
                self._callbacks.pop(handle, None)

    def _callback_count(self) -> int:
        with _tree:
            return 0 if self._callbacks is None else len(self._callbacks)

    def _done_channel(self) -> Channel[NoReturn]:
        with _tree:
            chan = self._done_chan
            if chan is not None:
                return chan
            new: Channel[NoReturn] = _channels["aio"]()
            chan = self._done_chan = new
        if self._on_cancel(chan.close) is None:  # registered once, with the channel
            chan.close()
        return chan


class _ValueContext(Context):
    __slots__ = ("_key", "_value")

    def __init__(self, parent: Context, key: object, value: Any) -> None:
        super().__init__(parent, parent._governor, _MAKE)
        self._key = key
        self._value = value


def _abort_waiter(w: Waiter, g: CancelContext) -> None:
    w.abort(g._fresh_error())


def _check_timeout(timeout: float | None, name: str = "timeout") -> None:
    if timeout is None:
        return
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise TypeError(f"{name} must be a number of seconds or None, got {timeout!r}")
    if math.isnan(timeout) or timeout < 0:
        raise ValueError(f"{name} must be >= 0, got {timeout!r}")


def check_ctx_arg(ctx: object, what: str, *, optional: bool = False) -> Context | None:
    """The one check of a ``ctx=`` argument: a corral Context (or, if ``optional``, None).

    Every entry point that takes a ctx calls this (or :func:`check_ctx`, which adds the
    fail-fast test), so the message is the same everywhere: ``"<what>: ctx must be a
    corral Context[ or None], got <type>"``.
    """
    if isinstance(ctx, Context):
        return ctx
    if ctx is None and optional:
        return None
    alt = " or None" if optional else ""
    raise TypeError(f"{what}: ctx must be a corral Context{alt}, got {type(ctx).__name__}")


def check_ctx(ctx: object, what: str) -> None:
    """Reject a non-Context; fail fast if the Context is already done (as Go does).

    For a blocking operation's ``ctx=``: a call bound to a done Context raises
    ``Cancelled`` before it has any effect, even when it could complete at once.
    """
    if isinstance(ctx, Context):
        ctx.raise_if_cancelled()
    else:
        check_ctx_arg(ctx, what)  # not a Context: raises, with the one message


def _check_parent(parent: object, fn: str) -> Context:
    if not isinstance(parent, Context):
        raise TypeError(f"{fn}: parent must be a corral Context, got {type(parent).__name__}")
    return parent


_BACKGROUND = Context(None, None, _MAKE)


def background() -> Context:
    """The root context: never cancelled, no deadline, no values (Go's ``Background``)."""
    return _BACKGROUND


def _derive(
    parent: Context,
    deadline: float | None,
    cause: BaseException | None,
    cls: type[CancelContext] = CancelContext,
) -> CancelContext:
    # ``cls``: a subclass with the same constructor (``corral.redis``'s lease contexts).
    pg = parent._governor
    if pg is not None and pg._deadline is not None:
        deadline = pg._deadline if deadline is None else min(deadline, pg._deadline)
    child = cls(parent, deadline, _MAKE)
    if pg is not None:
        perr = pg._current_err()
        with _tree:
            if pg._err is None:
                pg._children.add(child)
                child._registered_in = pg
                perr = None
            else:
                perr = pg._err
        if perr is not None:  # born dead: a parent that is done has no live children
            child._finish(perr, pg._cause)
            return child
    own_deadline = deadline is not None and (pg is None or deadline != pg._deadline)
    if own_deadline and deadline is not None:
        if time.monotonic() >= deadline:
            child._cause = cause
            child._expire()
        else:
            child._cause = cause
            try:
                child._timer = _timer.schedule(deadline, child._expire)
            except BaseException:  # no timer thread (ThreadStartError): no child either
                if pg is not None:
                    with _tree:
                        pg._children.discard(child)
                        child._registered_in = None
                raise
    return child


def with_cancel(parent: Context) -> CancelContext:
    """A child of ``parent`` cancelled by ``ctx.cancel(cause=None)`` or leaving ``with``."""
    return _derive(_check_parent(parent, "with_cancel"), None, None)


def with_deadline(
    parent: Context, deadline: float, *, cause: BaseException | None = None
) -> CancelContext:
    """A child that expires at ``deadline`` (a ``time.monotonic()`` instant).

    ``cause`` is reported by :attr:`Context.cause` when the deadline passes.
    """
    _check_parent(parent, "with_deadline")
    if isinstance(deadline, bool) or not isinstance(deadline, int | float):
        raise TypeError(f"with_deadline: deadline must be a monotonic time, got {deadline!r}")
    if math.isnan(deadline):
        raise ValueError("with_deadline: deadline must not be NaN")
    return _derive(parent, float(deadline), cause)


def with_timeout(
    parent: Context, timeout: float, *, cause: BaseException | None = None
) -> CancelContext:
    """A child that expires ``timeout`` seconds from now."""
    _check_parent(parent, "with_timeout")
    _check_timeout(timeout)
    return _derive(parent, time.monotonic() + timeout, cause)


def with_value(parent: Context, key: object, value: Any) -> Context:
    """A child carrying ``value`` under ``key``; cancelled exactly when ``parent`` is."""
    _check_parent(parent, "with_value")
    try:
        hash(key)
    except TypeError:
        raise TypeError(f"with_value: key must be hashable, got {type(key).__name__}") from None
    return _ValueContext(parent, key, value)


class _DetachedContext(Context):
    __slots__ = ()


def without_cancel(parent: Context) -> Context:
    """A child with ``parent``'s values that is never cancelled and has no deadline."""
    _check_parent(parent, "without_cancel")
    return _DetachedContext(parent, None, _MAKE)
