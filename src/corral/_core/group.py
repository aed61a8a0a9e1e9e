"""Group's rules, once: Go's errgroup bookkeeping, shared by the asyncio and thread shells.

The state counts workers, records their outcomes, owns the group's Context and the
optional limit, and decides what ``wait()`` / leaving ``with`` raises. It never waits:
the shells spawn workers (tasks, pool threads) and park on the waiters it hands out.

Outcomes, in the order a worker's end is classified:

* returned normally: nothing to record;
* ``asyncio.CancelledError``, or a corral ``Cancelled`` raised while ``g.ctx`` is done: a
  *secondary* cancellation, caused by the group's own abort or by the parent Context. It is
  not an error (filtering these is what spares users an ExceptionGroup of one real error
  among N cancellations), but it marks the work as cut short;
* anything else is an *error*, kept in ``errors`` in arrival order. The first one fails the
  group: ``g.ctx`` is cancelled with it as the cause (Go's ``WithContext``), which cancels
  sibling tasks, aborts ``go()`` calls waiting for a slot, and makes every later ``go()``
  refuse to start work (errgroup would still run it: golang/go#54045). A non-``Exception``
  (``KeyboardInterrupt``, ``SystemExit``) is also kept as ``base_error`` and wins over
  every ``Exception`` when the group reports.

Lock order: ``lock`` may be held while taking a semaphore's lock or a waiter's claim lock.
Nothing that can run Context callbacks (``ctx.cancel``, or even reading ``ctx.cancelled``,
which may expire a deadline) is called while ``lock`` is held: those callbacks come back
into this state.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from inspect import CO_COROUTINE
from types import FunctionType
from typing import Literal, NoReturn

from .._errors import Cancelled, GroupError
from . import tracking
from .context import CancelContext, Context, check_ctx_arg, with_cancel
from .semaphore import SemaphoreState
from .waiter import Entry, Waiter

__all__ = [
    "GroupState",
    "GroupStatistics",
    "check_fn",
    "check_group_args",
    "check_limit",
    "is_async_callable",
    "raise_preserving_context",
]

ErrorMode = Literal["first", "all"]


@dataclass(frozen=True, slots=True)
class GroupStatistics:
    """A snapshot of a ``Group`` (``g.statistics()``).

    >>> import corral.threads
    >>> corral.threads.Group(limit=4).statistics()
    GroupStatistics(running=0, waiting=0, limit=4, errors=0, finished=False)
    """

    running: int  #: workers started whose function has not returned yet
    waiting: int  #: ``go()`` calls waiting for a free slot under the limit
    limit: int | None  #: the limit (``None``: no limit)
    errors: int  #: errors recorded so far (cancellations are not errors)
    finished: bool  #: ``wait()`` returned or the ``with`` block exited


def check_limit(limit: object, what: str) -> int | None:
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise TypeError(f"{what}: limit must be an int or None, got {type(limit).__name__}")
    if limit < 0:
        raise ValueError(f"{what}: limit must be >= 0 (None for no limit), got {limit}")
    return limit


def check_group_args(ctx: object, limit: object, report: object) -> tuple[Context, int | None]:
    from .context import background

    checked = check_ctx_arg(ctx, "Group", optional=True)
    if report not in ("first", "all"):
        raise ValueError(f"Group: report must be 'first' or 'all', got {report!r}")
    return background() if checked is None else checked, check_limit(limit, "Group")


def _on_ctx_done(ref: weakref.ReferenceType[GroupState]) -> None:
    st = ref()
    if st is not None:
        st._ctx_done()


class GroupState:
    __slots__ = (
        "__weakref__",
        "_note_added",
        "base_error",
        "ctx",
        "ctx_done",
        "cut_short",
        "errors",
        "finished",
        "joiners",
        "lock",
        "mode",
        "on_ctx_done",
        "outside",
        "own_cancel",
        "running",
        "sem",
        "settling",
        "stopped",
    )

    def __init__(self, parent: Context, limit: int | None, mode: ErrorMode) -> None:
        self.lock = threading.Lock()
        self.mode = mode
        # A limit of 0 is a semaphore of size 0: try_go always fails, go() waits (until
        # the group fails or its Context is done), as Go's SetLimit(0).
        self.sem = None if limit is None else SemaphoreState(limit)
        self.running = 0
        # Workers whose function returned but whose result is not yet published (a
        # thread worker's Future): wait() waits for these too, so it never returns
        # before every worker's Future is resolved.
        self.settling = 0
        self.errors: list[BaseException] = []
        self.base_error: BaseException | None = None
        self.cut_short = False
        self.ctx_done = False  # set by g.ctx's callback: a cheap check for every go()
        self.outside = False  # g.ctx was cancelled by someone else (parent, user)
        self.own_cancel = False  # we cancel g.ctx ourselves (failure, abort, finish)
        self.finished = False
        self.stopped = False  # Group.cancel() was called: ending early is not a failure
        self._note_added = False
        self.joiners: dict[Entry, None] = {}
        #: The shell's hook, run (in the cancelling thread) when g.ctx is done.
        self.on_ctx_done: Callable[[], object] | None = None
        self.ctx: CancelContext = with_cancel(parent)
        # A weak reference: the Context must not keep an abandoned group alive (its
        # never-retrieved errors are reported when it is collected).
        self.ctx.after_func(partial(_on_ctx_done, weakref.ref(self)))
        if tracking.enabled:
            tracking.track(self)

    # -- Context -----------------------------------------------------------------------

    def _ctx_done(self) -> None:
        with self.lock:
            self.ctx_done = True
            if not self.own_cancel:
                self.outside = True
        hook = self.on_ctx_done
        if hook is not None:
            hook()

    def abort(self, cause: BaseException | None = None) -> None:
        """Cancel g.ctx ourselves (the body was cancelled or interrupted)."""
        with self.lock:
            self.own_cancel = True
        self.ctx.cancel(cause)

    def stop(self) -> bool:
        """``Group.cancel()``: end the group early without an error. g.ctx is cancelled (by
        us): workers are cancelled or see it, queued ``go()`` calls give up, no new work
        starts, and work cut short is not the group's failure (errors already recorded,
        or raised later by workers, still are). False if finished or already stopped."""
        with self.lock:
            if self.finished or self.stopped:
                return False
            self.stopped = True
            if not self.ctx_done:
                self.own_cancel = True
        self.ctx.cancel()
        return True

    # -- starting workers --------------------------------------------------------------

    def refusal(self, what: str) -> BaseException | None:
        """Why no new work may start now, or ``None``. Not under ``lock`` (reads ctx)."""
        if not (self.finished or self.errors or self.ctx_done or self.ctx.cancelled):
            return None  # the common case
        if self.finished:
            return GroupError(
                f"{what}: the group has finished (wait() returned or its with block exited); "
                "start a new Group"
            )
        errors = self.errors
        if errors:
            err = Cancelled(f"{what}: the group failed; no new work is started", errors[0])
            err.__cause__ = errors[0]
            return err
        if self.ctx.cancelled:
            return self.ctx._fresh_error()
        return None

    def check_open(self, what: str) -> None:
        err = self.refusal(what)
        if err is not None:
            raise err

    def start(self, sem: SemaphoreState | None, what: str) -> None:
        """Count a worker about to be spawned; it holds a slot of ``sem`` if not None.

        Re-checks under the lock what ``check_open`` checked before a possibly long wait
        for a slot: a group that failed meanwhile starts nothing (the slot is returned).
        """
        with self.lock:
            if not (self.finished or self.errors or self.ctx_done):
                self.running += 1
                return
        err = self.refusal(what)  # the conditions are sticky: not None now
        if sem is not None:
            sem.release(1)
        assert err is not None
        raise err

    # The asyncio shell's hot path. An asyncio group's counters only ever change in its
    # loop's thread (go() checks it is on that loop; task callbacks run there), so these
    # two skip the lock: two acquisitions per task were a quarter of the cost of spawning
    # one. Other threads only set flags (ctx_done, outside) and read snapshots; a start
    # racing a ctx_done set from another thread is cancelled by that Context's callback,
    # which runs on the loop after it.

    def start_local(self) -> bool:
        """``start`` without a limit, from the owning loop's thread; False if the group
        refuses (the caller then takes the locked path, which raises the refusal)."""
        if self.finished or self.errors or self.ctx_done:
            return False
        self.running += 1
        return True

    def start_local_slot(self, sem: SemaphoreState) -> bool:
        """``start`` under a limit, from the owning loop's thread, only if a slot is free
        at once (and nobody queues for one: no barging); False sends the caller to the
        locked path, which waits in line or raises the refusal."""
        if self.finished or self.errors or self.ctx_done or not sem.try_acquire(1):
            return False
        self.running += 1
        return True

    def done_local(self) -> None:
        """A worker without a slot returned normally, in the owning loop's thread."""
        self.running -= 1
        if self.joiners:
            self._wake_joiners_locked()

    def pass_slot(self, sem: SemaphoreState, value: object) -> Waiter | None:
        """A worker holding a slot of ``sem`` returned normally: if a ``go()`` waits in line
        for a slot and the group may still start work, the slot passes straight to the
        head of that line, whose work this worker then runs itself.

        Returns that ``go()``'s waiter, claimed and woken with ``value`` (or ``None``: the
        caller then ends the worker with ``worker_returned``). ``running`` is unchanged
        (one worker ended, the next started); the ended one is ``settling`` until the
        caller's ``settle``. The same checks as ``start``, under the same lock: a group
        that failed, finished or whose Context is done hands over nothing (its queued
        ``go()`` calls are being refused).
        """
        lock = self.lock
        lock.acquire()
        try:
            if self.finished or self.errors or self.ctx_done:
                return None
            slock = sem.lock
            slock.acquire()
            try:
                q = sem.waiters
                while q:
                    e = q[0]
                    if e.item != 1:
                        return None  # head-of-line: only a one-slot request fits
                    q.popleft()
                    w = e.waiter
                    if w.complete(0, value):  # False: stale (aborted), try the next
                        self.settling += 1
                        return w
                return None
            finally:
                slock.release()
        finally:
            lock.release()

    def unstart(self, sem: SemaphoreState | None) -> None:
        """Undo ``start`` for a worker that could not be spawned (nothing ran)."""
        with self.lock:
            self.running -= 1
            self._wake_joiners_locked()
        if sem is not None:
            sem.release(1)

    # -- workers ending ----------------------------------------------------------------

    def _classify(self, exc: BaseException) -> bool:
        """True for a secondary cancellation. Reads ctx, so never called under lock."""
        if isinstance(exc, asyncio.CancelledError):
            return True
        return isinstance(exc, Cancelled) and self.ctx.cancelled

    def _record_locked(self, exc: BaseException) -> bool:
        """Keep an error; True if it is the one that fails the group."""
        self.errors.append(exc)
        first = len(self.errors) == 1
        if not isinstance(exc, Exception) and self.base_error is None:
            self.base_error = exc
        if first:
            self.own_cancel = True
        return first

    def worker_returned(self, exc: BaseException | None, sem: SemaphoreState | None) -> bool:
        """A worker's function ended with ``exc`` (None: returned). True if it failed the
        group (the shell then also cancels the body, for asyncio). Call ``settle`` once
        its result is published."""
        secondary = exc is not None and self._classify(exc)
        first = False
        with self.lock:
            self.running -= 1
            self.settling += 1
            if exc is not None:
                if secondary:
                    self.cut_short = True
                else:
                    first = self._record_locked(exc)
        if first:
            # Cancel before giving the slot back: go() calls queued for a slot are
            # aborted rather than granted a slot they would only have to return.
            self.ctx.cancel(exc)
        if sem is not None:
            sem.release(1)
        return first

    def worker_done(self, exc: BaseException | None, sem: SemaphoreState | None) -> bool:
        """``worker_returned`` and ``settle`` at once (a task's result is already public)."""
        if exc is None:
            with self.lock:
                self.running -= 1
                if self.joiners:
                    self._wake_joiners_locked()
            if sem is not None:
                sem.release(1)
            return False
        first = self.worker_returned(exc, sem)
        self.settle()
        return first

    def settle(self) -> None:
        with self.lock:
            self.settling -= 1
            self._wake_joiners_locked()

    def record_body(self, exc: BaseException) -> bool:
        """The ``with`` body (or a joiner) raised ``exc``: classified like a worker's."""
        secondary = self._classify(exc)
        with self.lock:
            if secondary:
                self.cut_short = True
                return False
            first = self._record_locked(exc)
        if first:
            self.ctx.cancel(exc)
        return first

    # -- joining -----------------------------------------------------------------------

    def _wake_joiners_locked(self) -> None:
        if self.running == 0 and self.settling == 0 and self.joiners:
            joiners = list(self.joiners)
            self.joiners.clear()
            for e in joiners:
                e.waiter.complete(0, None)

    def join(self, make_waiter: Callable[[], Waiter]) -> Waiter | None:
        """A waiter completed once no worker runs; ``None`` if none runs now."""
        with self.lock:
            if self.running == 0 and self.settling == 0:
                return None
            w = make_waiter()
            e = Entry(w, 0, None, self)
            w.entries = [e]
            self.joiners[e] = None
            return w

    def _unlink(self, entry: Entry) -> None:
        with self.lock:
            self.joiners.pop(entry, None)

    def try_finish(self) -> bool:
        """Mark the group finished if no worker runs (False: one started meanwhile)."""
        with self.lock:
            if self.running or self.settling:
                return False
            first = not self.finished
            self.finished = True
            self.own_cancel = True
        if first:
            # Go: "the derived Context is canceled ... the first time Wait returns". A
            # failed group's ctx is already cancelled with the error as its cause.
            self.ctx.cancel()
        return True

    # -- reporting ---------------------------------------------------------------------

    def outcome(self) -> BaseException | None:
        """What wait() / leaving ``with`` raises, or ``None``. Sticky: the same each time."""
        with self.lock:
            if self.base_error is not None:
                return self.base_error
            errors = list(self.errors)
            cancelled_from_outside = self.outside and self.cut_short and not self.stopped
        if errors:
            if self.mode == "all":
                n = len(errors)
                # No base_error: every error is an Exception.
                excs = [e for e in errors if isinstance(e, Exception)]
                return ExceptionGroup(
                    f"{n} worker{'s' if n > 1 else ''} of a corral Group failed", excs
                )
            first = errors[0]
            if len(errors) > 1 and not self._note_added:
                self._note_added = True
                first.add_note(
                    f"corral.Group: {len(errors) - 1} more worker error(s) after this one; "
                    "all are in Group.errors (or use Group(report='all'))"
                )
            return first
        if cancelled_from_outside:
            # The group's Context was cancelled by its parent (or by a caller) and that cut
            # work short: the group did not do its job, so it must not look successful.
            return self.ctx._fresh_error()
        return None

    def unretrieved(self) -> BaseException | None:
        """The first error of a group that never finished (nobody waited for it)."""
        if self.finished or not self.errors:
            return None
        return self.errors[0]

    def queued_waiters(self) -> int:
        with self.lock:
            return sum(1 for e in self.joiners if not e.waiter.done)

    def set_limit(self, limit: int | None, what: str) -> None:
        with self.lock:
            if self.finished:
                raise GroupError(f"{what}: the group has finished")
            waiting = self.sem.queued_waiters() if self.sem is not None else 0
            if self.running or waiting:
                raise GroupError(
                    f"{what}: cannot change the limit while {self.running} worker(s) run and "
                    f"{waiting} go() call(s) wait for a slot (Go's SetLimit panics here too)"
                )
            # A go() between acquiring a slot and starting keeps its own semaphore
            # (workers release the one they took), so replacing it is safe.
            self.sem = None if limit is None else SemaphoreState(limit)

    def statistics(self) -> GroupStatistics:
        with self.lock:
            sem = self.sem
            return GroupStatistics(
                running=self.running,
                waiting=sem.queued_waiters() if sem is not None else 0,
                limit=sem.size if sem is not None else None,
                errors=len(self.errors),
                finished=self.finished,
            )

    def __repr__(self) -> str:
        return (
            f"<GroupState running={self.running} errors={len(self.errors)} "
            f"finished={self.finished}>"
        )


def is_async_callable(fn: object) -> bool:
    """Whether calling ``fn`` makes a coroutine: ``async def`` functions, methods and
    partials of them, and objects whose ``__call__`` is ``async def``."""
    # The common case first, cheaply: spawning 100k tasks must not pay for inspect.
    if type(fn) is FunctionType:
        if fn.__code__.co_flags & CO_COROUTINE:
            return True
        if not fn.__dict__:
            # A plain function without attributes: no inspect.markcoroutinefunction mark
            # (an attribute), so inspect would say False too; skip its slower checks.
            return False
    if inspect.iscoroutinefunction(fn):
        return True
    if isinstance(fn, type):
        return False
    call = type(fn).__dict__.get("__call__") or getattr(type(fn), "__call__", None)  # noqa: B004
    return inspect.iscoroutinefunction(call)


def check_fn(fn: object, what: str) -> bool:
    """Reject a non-callable (closing a coroutine object passed by mistake, so it does not
    warn "never awaited" on top of the TypeError); return whether ``fn`` is async."""
    if not callable(fn):
        if inspect.iscoroutine(fn):
            fn.close()
            raise TypeError(
                f"{what}: pass the function and its arguments, not a coroutine object: "
                f"{what.rsplit('.', 1)[-1]}(fn, *args)"
            )
        raise TypeError(f"{what}: fn must be callable, got {type(fn).__name__}")
    return is_async_callable(fn)


def raise_preserving_context(err: BaseException) -> NoReturn:
    """``raise err`` without letting the raise overwrite ``err.__context__``.

    A worker's exception re-raised from ``__exit__`` would otherwise get the body's
    exception (often the group's own cancellation of the body) as its context, replacing
    the context it had when the worker raised it.
    """
    context, suppress = err.__context__, err.__suppress_context__
    try:
        raise err
    finally:
        err.__context__ = context
        err.__suppress_context__ = suppress
