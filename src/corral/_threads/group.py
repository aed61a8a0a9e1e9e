"""``corral.threads.Group``: Go's errgroup for threads, and the pool its workers run in.

The rules (first error wins, secondary cancellations filtered, the limit, what ``wait()``
raises) are ``_core.group.GroupState``'s; this shell adds threads and blocking waits.
Threads cannot be interrupted, so siblings of a failed worker are cancelled
cooperatively: they see ``g.ctx`` done (``g.ctx.raise_if_cancelled()``, ``ctx=g.ctx`` on
corral's blocking calls, ``g.ctx.wait_blocking()``).
"""

from __future__ import annotations

import contextvars
import itertools
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from functools import partial
from types import CoroutineType, TracebackType
from typing import Any, TypeVar, TypeVarTuple, Unpack

from .._core.group import GroupState, check_fn, raise_preserving_context
from .._core.semaphore import SemaphoreState
from .._core.threads import start_thread
from .._core.waiter import ThreadWaiter, Waiter
from .._errors import Cancelled, GroupError
from .._shells import GroupBase
from .wait import park

__all__ = ["Group", "WorkerPool"]

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

_pool_ids = itertools.count(1)
# Which group's worker the current pool thread is running (to refuse a wait() from it).
_worker = threading.local()


class _Worker:
    __slots__ = ("wake",)

    def __init__(self) -> None:
        self.wake = threading.Lock()
        self.wake.acquire()


class WorkerPool:
    """Threads owned by one group: reused while it lives, every one joined when it ends.

    Unbounded: a job never waits for a busy thread, as each Go call gets a goroutine (a
    bounded pool would deadlock workers that wait for one another); the group's limit is
    what bounds it (and so bounds the queue: every queued job holds a slot). Jobs go
    through one FIFO queue; a thread that finishes a job takes the next queued one before
    it parks, so a stream of short jobs runs without a thread switch per job.

    No job is stranded: whenever the queue is not empty, at least one thread has been
    woken (or started) for it and has not yet looked at the queue (``_woken``); the one
    that takes a job while more remain wakes the next (a chain, Go's spinning-thread
    rule), so jobs that block waiting for one another each still get a thread.
    ``ThreadPoolExecutor`` was rejected for this: it is bounded, and its threads outlive
    the group until interpreter exit. Jobs must not raise (the group's job wrapper
    catches everything).
    """

    __slots__ = ("_closed", "_idle", "_lock", "_name", "_queue", "_threads", "_woken")

    def __init__(self, name: str) -> None:
        self._name = name
        self._lock = threading.Lock()
        self._queue: deque[Callable[[], None]] = deque()
        self._idle: list[_Worker] = []
        self._woken = 0
        self._threads: list[threading.Thread] = []
        self._closed = False

    # ``lock.acquire()`` + ``try/finally`` rather than ``with``: cheaper per job on 3.11.

    def submit(self, job: Callable[[], None]) -> None:
        lock = self._lock
        lock.acquire()
        try:
            if self._closed:
                raise RuntimeError("WorkerPool.submit: the pool is shut down")
            q = self._queue
            q.append(job)
            if not self._woken:
                try:
                    self._wake_one_locked()
                except BaseException:
                    q.pop()  # nobody can have taken it: taking one needs the lock
                    raise
        finally:
            lock.release()

    def _wake_one_locked(self) -> None:
        """Wake an idle thread for the queue, or start one (under the lock: a thread's
        start does not need it, and a failed start is undone before anyone sees it)."""
        if self._idle:
            self._woken += 1
            self._idle.pop().wake.release()
            return
        self._woken += 1
        try:  # a pool thread is infrastructure (context=None); each job runs in its own copy
            t = start_thread(
                self._run,
                _Worker(),
                name=f"{self._name}-{len(self._threads)}",
                what="Group.go",
                context=None,
            )
        except BaseException:
            self._woken -= 1
            raise
        self._threads.append(t)

    def _run(self, w: _Worker) -> None:
        lock = self._lock
        q = self._queue
        wake = w.wake
        lock.acquire()
        self._woken -= 1
        while True:  # holding the lock
            if q:
                job = q.popleft()
                if q and not self._woken:
                    try:
                        self._wake_one_locked()
                    except Exception:
                        # No thread could be started: this one comes back for the rest
                        # when its job ends.
                        pass
                lock.release()
                job()
                del job  # drop the job's references (its result) while idle
                lock.acquire()
                continue
            if self._closed:
                lock.release()
                return
            self._idle.append(w)
            lock.release()
            wake.acquire()
            lock.acquire()
            self._woken -= 1

    def shutdown(self, *, join: bool = True) -> None:
        """Stop every idle thread; with ``join``, wait until each thread has exited."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            threads, self._threads = self._threads, []
            self._woken += len(idle)
        for w in idle:
            w.wake.release()
        if join:
            me = threading.current_thread()
            for t in threads:
                if t is not me:
                    t.join()


# What a worker hands a go() waiting for a slot when it takes that go()'s job itself
# (``GroupState.pass_slot``); a plain grant of the slot completes the waiter with None.
_HANDED = object()

# A job: (fn, args, its Future, the submitter's context copy, "Group.go" / "Group.try_go").
_Job = tuple[Callable[..., Any], tuple[Any, ...], "Future[Any]", contextvars.Context, str]


class _GoWaiter(ThreadWaiter):
    """A ``go()`` parked for a slot, carrying its job: a worker that finishes may take the
    job and run it itself (the slot passes from job to job without a thread going idle)."""

    __slots__ = ("job",)

    def __init__(self, job: _Job) -> None:
        super().__init__()
        self.job: _Job | None = job


def _give_back(sem: SemaphoreState, w: Waiter) -> None:
    # A go() interrupted after its wait completed: a granted slot is returned; a job a
    # worker took is running (and counted), nothing to give back.
    if w.value is not _HANDED:
        sem.release(1)


def _work(st: GroupState, job: _Job, sem: SemaphoreState | None) -> None:
    """A worker: run ``job``; then, while a ``go()`` waits for a slot, take its job and run
    that too, keeping the slot (``GroupState.pass_slot``). Runs in a pool thread."""
    _worker.group = st
    try:
        while True:
            fn, args, fut, cv, what = job
            del job
            try:
                result = cv.run(fn, *args)
                if type(result) is CoroutineType:
                    result.close()
                    raise TypeError(
                        f"{what}: {fn!r} returned a coroutine; corral.threads.Group runs "
                        "plain functions (use corral.Group for async work)"
                    )
            except BaseException as exc:
                # Count it (and fail the group) before the Future resolves: whoever waits
                # on the Future then sees the group's state already updated.
                st.worker_returned(exc, sem)
                try:
                    fut.set_exception(exc)
                finally:
                    st.settle()
                return
            w = st.pass_slot(sem, _HANDED) if sem is not None and sem.waiters else None
            if w is None:
                st.worker_returned(None, sem)
            try:
                fut.set_result(result)
            finally:
                st.settle()
            if w is None:
                return
            assert isinstance(w, _GoWaiter)
            assert w.job is not None
            job = w.job
            del fn, args, fut, cv, result, w  # drop the finished job's references
    finally:
        _worker.group = None


class Group(GroupBase):
    """Group(*, ctx=None, limit=None, report="first"): Go's errgroup for threads; no limit.

    ``g.go(fn, *args)`` runs ``fn(*args)`` in a thread of the group's own pool (a plain
    function; contextvars are copied in) and returns a ``concurrent.futures.Future``.
    Leaving ``with`` (or ``g.wait()``) waits for every worker, then raises the first
    error; the pool's threads are joined, so nothing outlives the block. On the first
    error ``g.ctx`` is cancelled with it as the cause: siblings see it (threads cannot be
    interrupted), ``go()`` calls waiting for a slot give up, and no new work starts.

    ``limit=n`` (or ``set_limit(n)``) runs at most ``n`` workers at once: ``go`` blocks
    for a free slot, ``try_go`` returns ``False`` instead. ``report="all"`` raises every
    error as an ``ExceptionGroup``; in the default ``"first"`` mode the others are in
    :attr:`errors`. See ``corral.Group`` for the asyncio flavour and docs/design.md.

    >>> import corral.threads
    >>> with corral.threads.Group(limit=2) as g:
    ...     squares = [g.go(pow, n, 2) for n in range(5)]
    >>> [f.result() for f in squares]
    [0, 1, 4, 9, 16]
    """

    __slots__ = ("_pool",)
    _public_name = "corral.threads.Group"
    _block = "with"

    def _init_flavour(self) -> None:
        self._pool = WorkerPool(f"corral-group-{next(_pool_ids)}")

    # -- starting work -----------------------------------------------------------------

    def go(self, fn: Callable[[Unpack[Ts]], T], /, *args: *Ts) -> Future[T]:
        """Run ``fn(*args)`` in a worker thread; return its Future.

        Under a limit, blocks until a slot is free; if the group fails meanwhile, raises
        ``Cancelled`` (its cause is the group's first error) and starts nothing. Once the
        group has failed, raises that ``Cancelled`` at once; after it finished,
        ``GroupError``. ``TypeError`` for an async function (use ``corral.Group``).
        """
        self._check(fn, "Group.go")
        st = self._st
        st.check_open("Group.go")
        sem = st.sem
        fut: Future[T] = Future()
        fut.set_running_or_notify_cancel()  # a started worker cannot be cancelled
        job: _Job = (fn, args, fut, contextvars.copy_context(), "Group.go")
        if sem is not None and not sem.try_acquire(1):
            # Wait in line with the job: a worker that finishes meanwhile runs it itself
            # (completing the wait with _HANDED); a slot freed otherwise is granted as is.
            w = sem.acquire(1, partial(_GoWaiter, job))
            if w is not None:
                assert isinstance(w, _GoWaiter)
                park(w, None, st.ctx, partial(_give_back, sem))
                if w.value is _HANDED:
                    return fut  # started (and counted) by the worker that took it
        self._spawn(job, sem)
        return fut

    def try_go(self, fn: Callable[[Unpack[Ts]], T], /, *args: *Ts) -> bool:
        """Start ``fn(*args)`` only if a slot is free now; ``False`` (and nothing started)
        if the limit is reached. Raises as :meth:`go` once the group failed or finished.
        """
        self._check(fn, "Group.try_go")
        st = self._st
        st.check_open("Group.try_go")
        sem = st.sem
        if sem is not None and not sem.try_acquire(1):
            return False
        fut: Future[T] = Future()
        fut.set_running_or_notify_cancel()
        self._spawn((fn, args, fut, contextvars.copy_context(), "Group.try_go"), sem)
        return True

    @staticmethod
    def _check(fn: object, what: str) -> None:
        if check_fn(fn, what):
            raise TypeError(
                f"{what}: {fn!r} is an async function; corral.threads.Group runs plain "
                "functions in threads (use corral.Group to run coroutines)"
            )

    def _spawn(self, job: _Job, sem: SemaphoreState | None) -> None:
        st = self._st
        st.start(sem, job[4])
        try:
            self._pool.submit(partial(_work, st, job, sem))
        except BaseException:
            st.unstart(sem)
            raise

    # -- waiting -----------------------------------------------------------------------

    def wait(self) -> None:
        """Wait for every worker, finish the group, and raise its error if it failed.

        Go's ``Wait``: the first error (sticky: every call raises it again), or, with
        ``report="all"``, an ``ExceptionGroup`` of all of them; a ``KeyboardInterrupt`` /
        ``SystemExit`` raised by a worker wins over both. If ``g.ctx`` was cancelled by its
        parent and that cut work short, a fresh ``Cancelled`` / ``DeadlineExceeded``.
        Afterwards ``g.ctx`` is done and ``go`` raises ``GroupError``.
        """
        if getattr(_worker, "group", None) is self._st:
            raise GroupError(
                "Group.wait: called from one of the group's own workers (it would wait for itself)"
            )
        self._join()
        err = self._st.outcome()
        if err is not None:
            raise_preserving_context(err)

    def _join(self) -> None:
        st = self._st
        interrupted = False
        while True:
            w = st.join(ThreadWaiter)
            if w is None:
                if st.try_finish():
                    break
                continue  # a go() from another thread started a worker meanwhile
            assert isinstance(w, ThreadWaiter)
            try:
                park(w, None, None)
            except BaseException as exc:  # KeyboardInterrupt while waiting
                if interrupted:
                    # A second interrupt: stop waiting. Workers that ignore g.ctx keep
                    # running in (daemon) threads; that is the price of insisting.
                    raise
                interrupted = True
                st.record_body(exc)  # fails the group; workers see g.ctx done
        self._pool.shutdown()

    def cancel(self) -> None:
        """End the group early, without an error (``asyncio.TaskGroup.cancel``, 3.15).

        ``g.ctx`` is cancelled: workers see it (a thread cannot be interrupted; they stop
        when they look), ``go()`` calls waiting for a slot give up, and later ``go()``
        calls raise ``Cancelled`` (which the ``with`` block then swallows). Leaving the
        block or ``wait()`` waits for the workers and raises nothing for the work cut
        short; an error a worker raised still is. Idempotent; callable from any thread,
        before the block (the group starts cancelled) and after it (nothing happens).
        """
        self._st.stop()

    def __enter__(self) -> Group:
        self._check_enter()
        self._entered = True
        return self

    def __exit__(
        self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        st = self._st
        if st.finished:
            return None  # wait() was called in the block and delivered the outcome
        if exc is not None:
            st.record_body(exc)
        self._join()
        err = st.outcome()
        if err is None and st.stopped and isinstance(exc, Cancelled):
            return True  # a go() refused after cancel(): the group's own stop, not an error
        if err is None or err is exc:
            return None  # nothing to raise, or the body's own exception propagates as it is
        raise_preserving_context(err)
