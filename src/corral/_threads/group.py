"""``corral.threads.Group``: Go's errgroup for threads, and the pool its workers run in.

The rules (first error wins, secondary cancellations filtered, the limit, what ``wait()``
raises) are ``_core.group.GroupState``'s; this shell adds threads and blocking waits.
Threads cannot be interrupted, so siblings of a failed worker are cancelled
cooperatively: they see ``g.ctx`` done (``g.ctx.raise_if_cancelled()``, ``ctx=g.ctx`` on
corral's blocking calls, ``g.ctx.wait_blocking()``).
"""

from __future__ import annotations

import contextvars
import inspect
import itertools
import threading
from collections.abc import Callable
from concurrent.futures import Future
from types import TracebackType
from typing import Any, TypeVar, TypeVarTuple, Unpack

from .._core.group import check_fn, raise_preserving_context
from .._core.semaphore import SemaphoreState
from .._core.waiter import ThreadWaiter, Waiter
from .._errors import GroupError
from .._shells import GroupBase
from .wait import park

__all__ = ["Group", "WorkerPool"]

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

_pool_ids = itertools.count(1)
# Which group's worker the current pool thread is running (to refuse a wait() from it).
_worker = threading.local()


class _Worker:
    __slots__ = ("job", "wake")

    def __init__(self, job: Callable[[], None]) -> None:
        self.job: Callable[[], None] | None = job
        self.wake = threading.Lock()
        self.wake.acquire()


class WorkerPool:
    """Threads owned by one group: reused while it lives, every one joined when it ends.

    Unbounded: each running worker has a thread of its own, as each Go call gets a
    goroutine (a bounded pool would deadlock workers that wait for one another); the
    group's limit is what bounds it. ``ThreadPoolExecutor`` was rejected for this: it
    is bounded, and its threads outlive the group until interpreter exit. Jobs must not
    raise (the group's job wrapper catches everything).
    """

    __slots__ = ("_closed", "_idle", "_lock", "_name", "_threads")

    def __init__(self, name: str) -> None:
        self._name = name
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []
        self._threads: list[threading.Thread] = []
        self._closed = False

    def submit(self, job: Callable[[], None]) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("WorkerPool.submit: the pool is shut down")
            if self._idle:
                w = self._idle.pop()
                w.job = job
                w.wake.release()
                return
            w = _Worker(job)
            t = threading.Thread(
                target=self._run, args=(w,), name=f"{self._name}-{len(self._threads)}", daemon=True
            )
            self._threads.append(t)
        try:
            t.start()
        except BaseException:
            with self._lock:
                self._threads.remove(t)
            raise

    def _run(self, w: _Worker) -> None:
        while True:
            job = w.job
            w.job = None
            if job is None:
                return
            job()
            del job  # drop the job's references (its result) while idle
            with self._lock:
                if self._closed:
                    return
                self._idle.append(w)
            w.wake.acquire()

    def shutdown(self, *, join: bool = True) -> None:
        """Stop every idle thread; with ``join``, wait until each thread has exited."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            threads, self._threads = self._threads, []
        for w in idle:
            w.job = None
            w.wake.release()
        if join:
            me = threading.current_thread()
            for t in threads:
                if t is not me:
                    t.join()


def _give_back(sem: SemaphoreState, _: Waiter) -> None:
    sem.release(1)


class Group(GroupBase):
    """Group(ctx=None, *, limit=None, errors="first"): Go's errgroup for threads; no limit.

    ``g.go(fn, *args)`` runs ``fn(*args)`` in a thread of the group's own pool (a plain
    function; contextvars are copied in) and returns a ``concurrent.futures.Future``.
    Leaving ``with`` (or ``g.wait()``) waits for every worker, then raises the first
    error; the pool's threads are joined, so nothing outlives the block. On the first
    error ``g.ctx`` is cancelled with it as the cause: siblings see it (threads cannot be
    interrupted), ``go()`` calls waiting for a slot give up, and no new work starts.

    ``limit=n`` (or ``set_limit(n)``) runs at most ``n`` workers at once: ``go`` blocks
    for a free slot, ``try_go`` returns ``False`` instead. ``errors="all"`` raises every
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
        if sem is not None:
            w = sem.acquire(1, ThreadWaiter)
            if w is not None:
                assert isinstance(w, ThreadWaiter)
                park(w, None, st.ctx, lambda _w: _give_back(sem, _w))
        return self._spawn(fn, args, sem, "Group.go")

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
        self._spawn(fn, args, sem, "Group.try_go")
        return True

    @staticmethod
    def _check(fn: object, what: str) -> None:
        if check_fn(fn, what):
            raise TypeError(
                f"{what}: {fn!r} is an async function; corral.threads.Group runs plain "
                "functions in threads (use corral.Group to run coroutines)"
            )

    def _spawn(
        self, fn: Callable[..., T], args: tuple[Any, ...], sem: SemaphoreState | None, what: str
    ) -> Future[T]:
        st = self._st
        st.start(sem, what)
        fut: Future[T] = Future()
        fut.set_running_or_notify_cancel()  # a started worker cannot be cancelled
        cv = contextvars.copy_context()

        def job() -> None:
            _worker.group = st
            try:
                result = cv.run(fn, *args)
                if inspect.iscoroutine(result):
                    result.close()
                    raise TypeError(
                        f"{what}: {fn!r} returned a coroutine; corral.threads.Group runs "
                        "plain functions (use corral.Group for async work)"
                    )
            except BaseException as exc:
                # Count it (and fail the group) before the Future resolves: whoever waits
                # on the Future then sees the group's state already updated.
                st.worker_returned(exc, sem)
                fut.set_exception(exc)
            else:
                st.worker_returned(None, sem)
                fut.set_result(result)
            finally:
                _worker.group = None
                st.settle()

        try:
            self._pool.submit(job)
        except BaseException:
            st.unstart(sem)
            raise
        return fut

    # -- waiting -----------------------------------------------------------------------

    def wait(self) -> None:
        """Wait for every worker, finish the group, and raise its error if it failed.

        Go's ``Wait``: the first error (sticky: every call raises it again), or, with
        ``errors="all"``, an ``ExceptionGroup`` of all of them; a ``KeyboardInterrupt`` /
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

    def __enter__(self) -> Group:
        self._check_enter()
        self._entered = True
        return self

    def __exit__(
        self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        st = self._st
        if st.finished:
            return  # wait() was called in the block and delivered the outcome
        if exc is not None:
            st.record_body(exc)
        self._join()
        err = st.outcome()
        if err is None or err is exc:
            return  # nothing to raise, or the body's own exception propagates as it is
        raise_preserving_context(err)
