"""``corral.Group``: Go's errgroup for asyncio, structured like ``asyncio.TaskGroup``.

The rules (first error wins, secondary cancellations filtered, the limit, what ``wait()``
raises) are ``_core.group.GroupState``'s; this shell adds tasks and the parent task's
cancellation. Tasks live exactly as long as ``g.ctx``: when it is done (first error,
parent Context cancelled, the body cancelled from outside) every running task is
cancelled; a plain function runs in a group-owned thread and sees ``g.ctx`` instead.

Cancelling the parent task follows ``asyncio.TaskGroup`` (3.13), including its two
repairs: an error is never dropped because the body was also cancelled from outside
(gh-95704), and when the group raises an error while an outside cancellation is pending,
the parent is re-cancelled so that cancellation is not lost either (gh-116720). The
group's own request to cancel its parent is withdrawn (``uncancel``) before it exits,
so no cancellation leaks out of a group that handled it.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import itertools
import weakref
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from functools import partial
from inspect import CO_COROUTINE
from types import FunctionType, TracebackType
from typing import Any, TypeVar, TypeVarTuple, Unpack, overload

from .._core.group import check_fn, raise_preserving_context
from .._core.semaphore import SemaphoreState
from .._core.waiter import AsyncWaiter
from .._errors import Cancelled, GroupError
from .._shells import GroupBase
from .._threads.group import WorkerPool
from .callgraph import declare_awaiter, new_task_set
from .channel import new_waiter
from .group_go import (
    HANDED,
    GoWaiter,
    Unawaited,
    WaitingGo,
    fn_name,
    give_back,
    started,
)
from .wait import drop_withdrawn_cancel, park

__all__ = ["Group"]

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

_get_running_loop = asyncio.events._get_running_loop
_JOIN_ABORTED = asyncio.CancelledError()
_pool_names = itertools.count(1)


def _resolve(fut: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if fut.done():  # pragma: no cover - the waiting task never cancels this future
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)


async def _in_thread(
    pool: WorkerPool, fn: Callable[..., Any], args: tuple[Any, ...], what: str
) -> Any:
    """Run ``fn(*args)`` in ``pool`` and wait for it (a module function, so tracebacks
    through here do not keep the group alive)."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[Any] = loop.create_future()
    cv = contextvars.copy_context()

    def job() -> None:
        try:
            result = cv.run(fn, *args)
            if inspect.iscoroutine(result):
                result.close()
                raise TypeError(
                    f"{what}: {fn!r} returned a coroutine but is not an async function; "
                    "pass the async function itself: go(fetch, url), not "
                    "go(lambda: fetch(url))"
                )
        except BaseException as exc:
            outcome: tuple[Any, BaseException | None] = (None, exc)
        else:
            outcome = (result, None)
        try:
            loop.call_soon_threadsafe(_resolve, fut, *outcome)
        except RuntimeError:  # the loop was closed under its tasks: nobody to tell
            pass

    pool.submit(job)
    # The thread cannot be interrupted: a cancelled task keeps waiting for it (the thread
    # sees g.ctx done when the group cancels), so no thread outlives its task and none
    # outlives the group.
    cancelled = False
    while not fut.done():
        try:
            await asyncio.shield(fut)
        except asyncio.CancelledError:
            cancelled = True
    exc = fut.exception()
    if exc is not None:
        raise exc  # an error is reported even if the task was cancelled meanwhile
    if cancelled:
        raise asyncio.CancelledError()
    return fut.result()


class Group(GroupBase):
    """Group(*, ctx=None, limit=None, report="first"): Go's errgroup for asyncio; no limit.

    ``await g.go(fn, *args)`` runs ``fn(*args)`` as a task (an ``async def`` function)
    or in a thread of the group's own pool (a plain function; contextvars copied in) and
    returns the ``asyncio.Task``. Like ``TaskGroup.create_task`` it starts the work at the
    call when it can, so ``g.go(fn)`` without ``await`` still runs ``fn``. Leaving
    ``async with`` (or ``await g.wait()``) waits for every worker, then raises the
    **first** error itself, not an ExceptionGroup (unless ``report="all"``); the other
    errors are in :attr:`errors`. The first error cancels the
    sibling tasks and the body (like ``asyncio.TaskGroup``), cancels ``g.ctx`` with the
    error as its cause (thread workers watch it), aborts ``go()`` calls waiting for a
    slot, and stops any new work from starting.

    ``limit=n`` (or ``set_limit(n)``) keeps at most ``n`` workers alive: ``await g.go``
    waits for a free slot *before* creating the task, ``try_go`` returns ``False``
    instead. (A ``go()`` that has to wait and is never awaited never runs: leaving the
    block then raises ``GroupError`` naming its function.) Without ``async with``, call
    ``await g.wait()`` (Go's zero ``Group``); an error nobody waited for is reported
    when the group is garbage-collected.

    >>> import asyncio, corral
    >>> async def square(n):
    ...     await asyncio.sleep(0)
    ...     return n * n
    >>> async def main():
    ...     async with corral.Group(limit=2) as g:
    ...         tasks = [await g.go(square, n) for n in range(5)]
    ...     return [t.result() for t in tasks]
    >>> asyncio.run(main())
    [0, 1, 4, 9, 16]
    """

    __slots__ = (
        "_exiting",
        "_loop",
        "_missed_cancel",
        "_parent",
        "_parent_cancel_requested",
        "_parent_waiting",
        "_pool",
        "_starting",
        "_tasks",
        "_unawaited",
    )
    _public_name = "corral.Group"
    _block = "async with"

    def _init_flavour(self) -> None:
        self._tasks = new_task_set()  # tells asyncio's call graph who awaits them (3.14+)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._parent: asyncio.Task[Any] | None = None
        self._parent_cancel_requested = False
        self._parent_waiting = False  # the parent task is inside wait(): do not cancel it
        self._exiting = False
        self._pool: WorkerPool | None = None
        # The coroutine of a worker whose task is being created (see _create).
        self._starting: Coroutine[Any, Any, Any] | None = None
        self._missed_cancel = False
        # go() calls that must wait for a slot and are not awaited yet (a dict: ordered).
        self._unawaited: dict[Unawaited, None] = {}
        # Weakly: the Context's callback must not keep an abandoned group alive.
        ref = weakref.WeakMethod(self._on_ctx_done)
        self._st.on_ctx_done = lambda: (m := ref()) is not None and m()

    # -- binding -----------------------------------------------------------------------

    def _bind(self, what: str) -> asyncio.AbstractEventLoop:
        loop = _get_running_loop()
        if loop is None:
            raise RuntimeError(f"{what}: no running event loop (corral.Group is for asyncio)")
        if self._loop is None:
            self._loop = loop
        elif self._loop is not loop:
            raise GroupError(f"{what}: this group belongs to another event loop")
        return loop

    # -- starting work -----------------------------------------------------------------

    @overload
    def go(
        self, fn: Callable[[Unpack[Ts]], Coroutine[Any, Any, T]], /, *args: *Ts
    ) -> Awaitable[asyncio.Task[T]]: ...

    @overload
    def go(self, fn: Callable[[Unpack[Ts]], T], /, *args: *Ts) -> Awaitable[asyncio.Task[T]]: ...

    def go(self, fn: Callable[[Unpack[Ts]], Any], /, *args: *Ts) -> Awaitable[asyncio.Task[Any]]:
        """Start ``fn(*args)`` as a worker of the group; ``await`` the result for its task.

        With no limit, or a slot free, the task starts at the call, like
        ``TaskGroup.create_task``: the returned awaitable is already done, so a forgotten
        ``await`` loses nothing. Under a limit with no slot free, the call only checks its
        arguments; awaiting it waits (cancellably) for a slot, then starts the task. If it
        is never awaited, its work never runs and leaving ``async with`` (or ``wait()``)
        raises ``GroupError`` naming the function.

        What it returns is an awaitable, not a coroutine object: ``await`` it, or hand it
        to ``asyncio.ensure_future`` / ``asyncio.gather`` (``asyncio.create_task`` takes
        only coroutines since Python 3.12).

        Once the group has failed, raises ``Cancelled`` (its cause is the group's first
        error) instead of starting work, also when the failure happens during the wait
        for a slot; after the group finished, ``GroupError``.
        """
        st = self._st
        loop = self._loop
        if (
            type(fn) is FunctionType
            and fn.__code__.co_flags & CO_COROUTINE
            and loop is not None
            and loop is _get_running_loop()
        ):
            # The hot path (an async function, an open group, a free slot if limited):
            # what it skips checking is exactly what the path below checks.
            sem = st.sem
            if sem is None:
                if st.start_local():
                    return started(self._create(fn, args, None, loop))
            elif st.start_local_slot(sem):
                return started(self._create(fn, args, sem, loop))
        is_async = check_fn(fn, "Group.go")
        loop = self._bind("Group.go")
        st.check_open("Group.go")
        sem = st.sem
        if sem is None or sem.try_acquire(1):
            return started(self._spawn(fn, args, sem, is_async, loop, "Group.go"))
        token = Unawaited(fn, is_async)
        self._unawaited[token] = None
        return WaitingGo(self, token, args)

    async def _go_waiting(
        self, fn: Callable[..., Any], is_async: bool, args: tuple[Any, ...]
    ) -> asyncio.Task[Any]:
        """A ``go()`` that found no free slot, once awaited: wait in line for one."""
        loop = self._bind("Group.go")
        st = self._st
        st.check_open("Group.go")  # the group may have failed or finished since the call
        sem = st.sem  # set_limit may have replaced it since the call
        if sem is not None:
            w = sem.acquire(1, partial(GoWaiter, loop, (fn, args, is_async)))
            if w is not None:
                assert isinstance(w, GoWaiter)
                await park(w, None, st.ctx, partial(give_back, sem))
                if w.value is HANDED:
                    if w.spawn_error is not None:
                        raise w.spawn_error
                    assert w.task is not None
                    return w.task
        return self._spawn(fn, args, sem, is_async, loop, "Group.go")

    def _report_unawaited(self) -> None:
        """Record, as the group's error, every ``go()`` that waited for a slot and was
        never awaited (its work never ran). Called once the group finished."""
        if not self._unawaited:
            return
        names = [fn_name(token.fn) for token in self._unawaited]
        self._unawaited.clear()  # awaiting one now raises GroupError: the group finished
        n = len(names)
        counts = Counter(names)
        calls = ", ".join(f"go({name})" + (f" x{k}" if k > 1 else "") for name, k in counts.items())
        self._st.record_body(
            GroupError(
                f"{n} Group.go() call{'s were' if n > 1 else ' was'} never awaited: {calls}. "
                "Each had to wait for a free slot under the limit, which happens when it "
                "is awaited, so its work never ran; write `await g.go(fn, ...)`"
            )
        )

    def try_go(self, fn: Callable[[Unpack[Ts]], Any], /, *args: *Ts) -> bool:
        """Start ``fn(*args)`` only if a slot is free now; ``False`` (nothing started) if
        the limit is reached. Raises as :meth:`go` once the group failed or finished.
        Call it from the group's event loop."""
        is_async = check_fn(fn, "Group.try_go")
        loop = self._bind("Group.try_go")
        st = self._st
        st.check_open("Group.try_go")
        sem = st.sem
        if sem is not None and not sem.try_acquire(1):
            return False
        self._spawn(fn, args, sem, is_async, loop, "Group.try_go")
        return True

    def _spawn(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        sem: SemaphoreState | None,
        is_async: bool,
        loop: asyncio.AbstractEventLoop,
        what: str,
    ) -> asyncio.Task[Any]:
        self._st.start(sem, what)
        return self._create_worker(fn, args, sem, is_async, loop, what)

    def _create_worker(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        sem: SemaphoreState | None,
        is_async: bool,
        loop: asyncio.AbstractEventLoop,
        what: str,
    ) -> asyncio.Task[Any]:
        """The task of a worker already counted (``start``, or a slot handed over)."""
        if is_async:
            return self._create(fn, args, sem, loop)
        if self._pool is None:
            self._pool = WorkerPool(f"corral-group-aio-{next(_pool_names)}")
        return self._create(_in_thread, (self._pool, fn, args, what), sem, loop)

    def _create(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        sem: SemaphoreState | None,
        loop: asyncio.AbstractEventLoop,
    ) -> asyncio.Task[Any]:
        """Create the task of a worker already counted by ``start``.

        An eager task factory runs the task's first step inside ``create_task``, before
        it is in ``_tasks``: ``_starting`` names its coroutine meanwhile (``wait()`` knows
        the worker by it), and a cancellation of the group's tasks then is applied here.
        """
        coro = None
        starting = self._starting
        try:
            coro = fn(*args)
            self._starting = coro
            task = loop.create_task(coro)
        except BaseException:
            # Nothing started (fn's call raised, or it returned no coroutine): the caller
            # gets the error, as from any other call; it is not a worker's error.
            self._starting = starting
            if inspect.iscoroutine(coro):
                coro.close()
            self._st.unstart(sem)
            raise
        self._starting = starting
        if self._missed_cancel:  # the group's tasks were cancelled during its first step
            if self._starting is None:
                self._missed_cancel = False  # no other creation is still in progress
            task.cancel()
        self._tasks.add(task)
        task.add_done_callback(self._on_done_unlimited if sem is None else self._on_done_limited)
        return task

    def _on_done_unlimited(self, task: asyncio.Task[Any]) -> None:
        if task.cancelled() or task.exception() is not None:
            self._on_task_done(None, task)
        else:
            self._tasks.discard(task)
            self._st.done_local()

    def _on_done_limited(self, task: asyncio.Task[Any]) -> None:
        # The limit cannot change while workers run (set_limit refuses), so st.sem is
        # the semaphore this worker took its slot from.
        sem = self._st.sem
        assert sem is not None
        if task.cancelled() or task.exception() is not None:
            self._on_task_done(sem, task)
            return
        self._tasks.discard(task)
        st = self._st
        if sem.waiters:
            w = st.pass_slot(sem, HANDED)  # None: the group refuses new work, or stale
            if w is not None:
                assert isinstance(w, GoWaiter)
                self._start_handed(w, sem)
                st.settle()
                return
        st.done_local()
        sem.release(1)

    def _start_handed(self, w: GoWaiter, sem: SemaphoreState) -> None:
        """Start the task of a waiting ``go()`` that was just handed a worker's slot (it
        counts as running already); a failure to start it goes to that ``go()``."""
        job, w.job = w.job, None
        assert job is not None
        assert self._loop is not None
        fn, args, is_async = job
        try:
            w.task = self._create_worker(fn, args, sem, is_async, self._loop, "Group.go")
        except BaseException as exc:  # _create has undone the start (slot returned)
            w.spawn_error = exc

    def _on_task_done(self, sem: SemaphoreState | None, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        exc: BaseException | None = _JOIN_ABORTED if task.cancelled() else task.exception()
        if self._st.worker_done(exc, sem):
            self._cancel_body()  # the first error

    def _on_ctx_done(self) -> None:
        loop = self._loop
        if loop is None:
            return
        if _get_running_loop() is loop:
            self._cancel_tasks()
        else:
            try:
                loop.call_soon_threadsafe(self._cancel_tasks)
            except RuntimeError:  # the loop is closed: its tasks are gone
                pass

    def _cancel_tasks(self) -> None:
        if self._starting is not None:
            self._missed_cancel = True  # an eager task mid-creation: see _create
        for t in list(self._tasks):
            t.cancel()

    # -- waiting -----------------------------------------------------------------------

    async def _join(self) -> bool:
        """Wait until no worker runs and finish; True if this task was cancelled meanwhile
        (the group was then aborted and waited for all the same)."""
        st = self._st
        cancelled = False
        while True:
            w = st.join(new_waiter)
            if w is None:
                if st.try_finish():
                    break
                continue
            assert isinstance(w, AsyncWaiter)
            try:
                await w.fut
            except asyncio.CancelledError:
                if w.abort(_JOIN_ABORTED, wake=False):
                    w.unlink()
                if not cancelled:
                    cancelled = True
                    st.abort()  # every task is cancelled; keep waiting for them
        if self._pool is not None:
            # Every job has resolved its future: the threads are only going idle.
            self._pool.shutdown()
        return cancelled

    async def wait(self) -> None:
        """Wait for every worker, finish the group, and raise its error if it failed.

        Go's ``Wait``: the first error (sticky: each call raises it again), or with
        ``report="all"`` an ``ExceptionGroup`` of all; a worker's ``KeyboardInterrupt`` /
        ``SystemExit`` wins over both. If ``g.ctx`` was cancelled by its parent and that
        cut work short, a fresh ``Cancelled`` / ``DeadlineExceeded``. Afterwards ``g.ctx``
        is done and ``go`` raises ``GroupError``. If the waiting task is cancelled, the
        group is aborted and still waited for, then ``CancelledError`` propagates
        (unless a worker error is raised: that task is then cancelled again).
        """
        loop = self._bind("Group.wait")
        task = asyncio.current_task(loop)
        if task in self._tasks or (
            self._starting is not None and task is not None and task.get_coro() is self._starting
        ):
            raise GroupError(
                "Group.wait: called from one of the group's own workers (it would wait for itself)"
            )
        is_parent = task is not None and task is self._parent
        if is_parent:
            self._parent_waiting = True
        declared = declare_awaiter(self._tasks, task, only_if_none=True)  # the call graph
        try:
            cancelled = await self._join()
        finally:
            if is_parent:
                self._parent_waiting = False
            if declared:
                declare_awaiter(self._tasks, None)
        if not cancelled:
            self._report_unawaited()
        err = self._st.outcome()
        if cancelled and task is not None and err is not None:
            self._recancel_if_outside(task)
        if task is not None and task.cancelling() == 0:
            await drop_withdrawn_cancel(task)
        if err is not None:
            raise_preserving_context(err)
        if cancelled:
            raise asyncio.CancelledError()

    def _recancel_if_outside(self, task: asyncio.Task[Any]) -> None:
        # gh-116720: an error is about to replace a CancelledError that was requested
        # from outside; cancel again (count unchanged) so it is delivered at the next
        # await instead of being lost. Our own pending request does not count.
        ours = 1 if (self._parent_cancel_requested and task is self._parent) else 0
        if task.cancelling() > ours:
            task.uncancel()
            task.cancel()

    def cancel(self) -> None:
        """End the group early, without an error: ``asyncio.TaskGroup.cancel`` (3.15).

        Cancels ``g.ctx``, every worker task (thread workers see ``g.ctx`` done), the
        ``go()`` calls waiting for a slot, and the body of ``async with`` (at its next
        await, unless it is already leaving or inside ``wait()``); later ``go()`` calls
        raise ``Cancelled``. The block then exits without ``CancelledError`` and without
        an error for the work cut short (``wait()`` returns); an error a worker raised
        still is. Idempotent; before ``async with`` the group is cancelled on entry;
        after it, nothing happens. From another thread it is passed to the group's loop.
        """
        loop = self._loop
        if loop is not None and loop is not _get_running_loop():
            try:
                loop.call_soon_threadsafe(self.cancel)
            except RuntimeError:  # the loop is closed: its tasks are gone
                self._st.stop()
            return
        if not self._st.stop():
            return
        self._cancel_body()

    def _cancel_body(self) -> None:
        """The group failed or was cancelled: abort whatever the body of ``async with``
        is awaiting, as TaskGroup does (not while it is leaving or inside ``wait()``)."""
        parent = self._parent
        if (
            parent is not None
            and not self._exiting
            and not self._parent_waiting
            and not self._parent_cancel_requested
            and not parent.done()
        ):
            # Withdrawn in __aexit__ with uncancel(), so it never leaks out of the group.
            self._parent_cancel_requested = True
            parent.cancel()

    async def __aenter__(self) -> Group:
        self._check_enter()
        self._bind("Group")
        self._entered = True
        self._parent = asyncio.current_task()
        declare_awaiter(self._tasks, self._parent)  # the call graph: the body awaits them
        if self._st.stopped:
            self._cancel_body()  # cancel() came before entry
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        self._exiting = True
        st = self._st
        parent = self._parent
        assert parent is not None
        was_finished = st.finished  # wait() was called in the block: it reported
        propagate_cancel = isinstance(exc, asyncio.CancelledError)
        if not was_finished:
            if exc is not None:
                if propagate_cancel:
                    # The body was cancelled: by us (a worker failed) or from outside.
                    # Either way the workers stop; which one it was, the uncancel()
                    # count below says.
                    st.abort()
                else:
                    st.record_body(exc)
            if await self._join():
                propagate_cancel = True
            elif exc is None:
                # The body ran to its end: a go() it never awaited is its mistake. (One
                # cut off by the body's own exception or cancellation is not reported.)
                self._report_unawaited()
        if self._parent_cancel_requested:
            self._parent_cancel_requested = False
            if parent.uncancel() == 0:
                propagate_cancel = False  # the only cancellation was our own
        if parent.cancelling() == 0:
            await drop_withdrawn_cancel(parent)
        err = None if was_finished else st.outcome()
        if err is not None:
            # Errors win over a cancellation (gh-95704); a pending outside cancellation is
            # re-requested so it is not lost (gh-116720; the count stays the same).
            if parent.cancelling():
                parent.uncancel()
                parent.cancel()
            if err is exc:
                return None  # the body's own exception is the group's error
            raise_preserving_context(err)
        if propagate_cancel:
            if isinstance(exc, asyncio.CancelledError):
                return None  # propagates as it is
            raise asyncio.CancelledError()
        # Our own cancellation of the body, withdrawn above, must not leak out; nor a
        # go() refused because cancel() stopped the group.
        ours = isinstance(exc, asyncio.CancelledError) or (
            st.stopped and isinstance(exc, Cancelled)
        )
        return True if ours else None
