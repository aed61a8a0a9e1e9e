"""Where ``corral.redis`` (asyncio) truly differs from ``corral.threads.redis``.

The twin of ``_rt_threads`` (same names): ``aio.py`` imports it as ``rt``, and ``threads.py``,
generated from ``aio.py`` by ``scripts/unasync_patterns.py``, imports ``_rt_threads`` in its
place. Here: running the shared call, renewing leases (tasks and timers), a wait's limits
(which also watch the task's cancellation), ``sem.acquire()``'s awaitable, and the lock a
thread flavour needs and the event loop does not.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Coroutine, Generator
from types import TracebackType
from typing import Any, Generic, Protocol, TypeVar

from .._core.context import Context
from .._core.group import is_async_callable
from .common import IO_ERRORS, Bound

T = TypeVar("T")

__all__ = [
    "ASYNC",
    "Acquire",
    "Guard",
    "Lock",
    "Renewer",
    "Ticker",
    "acquiring",
    "call",
    "flight_context",
    "settle",
]


class Lock:
    """No lock: the event loop runs one callback at a time, and the shell never awaits while
    holding one (its twin is ``threading.Lock``)."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


#: This flavour wants a ``redis.asyncio`` client (``check_client``).
ASYNC = True


async def call(fn: Callable[..., Any], args: tuple[Any, ...], ctx: Context) -> Any:
    """``fn(*args)`` under ``ctx`` (a leader's lease): an ``async def`` is awaited as this
    task, which ``ctx`` cancels (``Cancelled`` with ctx's cause); a plain function runs in a
    worker thread, which cannot be interrupted: it sees ``ctx`` as its
    ``current_context()`` (and an awaitable it returns is awaited)."""
    async with ctx.cancel_scope():
        if is_async_callable(fn):
            return await fn(*args)
        value = await asyncio.to_thread(fn, *args)
        if inspect.isawaitable(value):
            value = await value
        return value


async def settle(aw: Awaitable[T]) -> T:
    """Await a cleanup step (give a lease up, leave a queue) to its end even if this task
    is cancelled again meanwhile (a flight is cancelled by its last caller leaving *and* by
    its Context's scope), then re-raise that cancellation: a cleanup cut short would leave
    a lease or a queue entry in Redis until it expires."""
    fut = asyncio.ensure_future(aw)
    cancelled = False
    while not fut.done():
        try:
            await asyncio.wait([fut])
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    return fut.result()


def flight_context() -> Context | None:
    """The Context a follower's wait watches: none, a flight every caller left is cancelled
    as a task (``Guard`` sees it)."""
    return None


class Guard(Bound):
    """A wait's limits, also checked for a cancellation of the task: redis-py can swallow a
    ``CancelledError`` that races with its own read timeout (it then returns "no message"),
    so a wait relying on ``task.cancel()`` alone could outlive its deadline, its ``ctx`` or
    its caller's cancellation."""

    __slots__ = ("base", "loop", "task")

    def __init__(self, timeout: float | None, ctx: Context | None, what: str) -> None:
        self.loop = asyncio.get_running_loop()
        self.task = asyncio.current_task()
        self.base = 0 if self.task is None else self.task.cancelling()
        super().__init__(timeout, ctx, what)

    def now(self) -> float:
        """The loop's clock."""
        return self.loop.time()

    def slice(self, want: float) -> float:
        """How long the next read may block, at most ``want``; raises once a limit is hit."""
        if self.task is not None and self.task.cancelling() > self.base:
            raise asyncio.CancelledError  # cancelled, and the cancel was swallowed below us
        return super().slice(want)


class Renewer:
    """A task calling ``await tick()`` every ``every`` seconds until ``stop()`` or a falsy
    tick (a lost lease); a connection blip is retried while the lease may still run."""

    __slots__ = ("_done", "_task")

    def __init__(self, every: float, tick: Callable[[], Awaitable[Any]], name: str) -> None:
        self._done = asyncio.Event()
        self._task = asyncio.create_task(self._run(every, tick), name=name)

    async def _run(self, every: float, tick: Callable[[], Awaitable[Any]]) -> None:
        while not self._done.is_set():
            await asyncio.sleep(every)
            if self._done.is_set():
                return
            try:
                if not await tick():
                    return  # lost: the finish says so to the callers
            except IO_ERRORS:
                continue

    async def stop(self) -> None:
        """Stop the task and wait until it has ended (no task outlives its owner). The flag,
        not only the cancel: redis-py can swallow a cancel that lands in its read (as a read
        timeout), and a loop that retries on timeouts would then never end."""
        self._done.set()
        if not self._task.done():
            self._task.cancel()
            await settle(asyncio.wait([self._task]))  # (its result is its cancellation)


class Ticker:
    """Calls ``await tick()`` every ``every`` seconds while ``busy()``: a timer (not a
    sleeping task) between ticks, which starts a short task per tick; nothing is left
    running once ``busy()`` is false. ``tick`` handles its own errors."""

    __slots__ = ("_busy", "_every", "_name", "_running", "_tick", "_timer")

    def __init__(
        self, every: float, tick: Callable[[], Awaitable[None]], busy: Callable[[], bool], name: str
    ) -> None:
        self._every = every
        self._tick = tick
        self._busy = busy
        self._name = name
        self._timer: asyncio.TimerHandle | None = None
        self._running: asyncio.Future[None] | None = None

    def poke(self) -> None:
        """Something is held now: make sure a tick is due."""
        if self._timer is None and self._running is None:
            self._schedule()

    def idle(self) -> None:
        """Something was released: if nothing is held any more, cancel the next tick."""
        if self._timer is not None and not self._busy():
            self._timer.cancel()
            self._timer = None

    def _schedule(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(self._every, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self._busy():
            self._running = asyncio.get_running_loop().create_task(self._run(), name=self._name)

    async def _run(self) -> None:
        try:
            await self._tick()
        finally:
            self._running = None
            if self._busy() and self._timer is None:
                self._schedule()


class _Releasable(Protocol):
    async def release(self) -> None: ...


P = TypeVar("P", bound=_Releasable)


class Acquire(Generic[P]):
    """``await sem.acquire(n)`` (a :class:`Permit`) or ``async with sem.acquire(n):``."""

    __slots__ = ("_args", "_permit", "_start")

    def __init__(self, start: Callable[..., Coroutine[Any, Any, P]], *args: Any) -> None:
        self._start = start
        self._args = args
        self._permit: P | None = None

    def __await__(self) -> Generator[Any, None, P]:
        return self._start(*self._args).__await__()

    async def __aenter__(self) -> P:
        self._permit = await self
        return self._permit

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._permit is not None
        await self._permit.release()


def acquiring(start: Callable[..., Coroutine[Any, Any, P]], *args: Any) -> Acquire[P]:
    """What ``sem.acquire()`` returns: ``start(*args)`` as an awaitable and context manager."""
    return Acquire(start, *args)
