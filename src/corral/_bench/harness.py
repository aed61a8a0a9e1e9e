"""What an implementation gets to run with: event-loop choice, thread helpers, checks.

Implementations measure their own time (a :class:`Stopwatch` around the transfer) so that
building an event loop or a queue stays outside the measurement, and call
:func:`check_transfer` (or raise :class:`CheckFailed`) so a broken one cannot look fast.
"""

from __future__ import annotations

import asyncio
import importlib.util
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any, NamedTuple, TypeVar

__all__ = [
    "BenchError",
    "CheckFailed",
    "Env",
    "Memory",
    "Stopwatch",
    "Timing",
    "Worker",
    "check",
    "check_transfer",
    "expected_sum",
]


T = TypeVar("T")


class Timing(NamedTuple):
    """What a run measured: wall-clock seconds, and this process's CPU seconds (all threads)."""

    wall: float
    cpu: float
    #: What else the run measured, for rows whose result is not only a time (a rate
    #: limiter's achieved rate, a worst wait): shown under the implementation's line.
    figures: str = ""


class Memory(NamedTuple):
    """What a memory row measured: ``bytes`` in total over ``ops`` operations (``None``: the
    row's ``n``). The engine reports bytes per operation, exactly as it reports time."""

    bytes: float
    ops: int | None = None


class Stopwatch:
    """``sw = Stopwatch()`` … ``sw.stop() -> Timing``: wall and process CPU time between.

    CPU time is what the run cost this process. On a machine shared with other work it is
    much steadier than wall time for single-threaded (asyncio, trio) rows, since time spent
    descheduled does not count; for threaded rows it adds up the CPU of every thread.
    """

    __slots__ = ("_cpu0", "_wall0")

    def __init__(self) -> None:
        self._cpu0 = time.process_time()
        self._wall0 = time.perf_counter()

    def stop(self) -> Timing:
        wall = time.perf_counter() - self._wall0
        return Timing(wall, time.process_time() - self._cpu0)


class BenchError(Exception):
    """The benchmark cannot run as asked (unknown loop, missing requirement of the engine)."""


class CheckFailed(AssertionError):
    """An implementation did not do exactly the work it was asked to do."""


def expected_sum(n: int) -> int:
    """The sum of the items ``0 .. n-1`` every channel row moves."""
    return n * (n - 1) // 2


def check(ok: bool, what: str) -> None:
    """Raise :class:`CheckFailed` with ``what`` unless ``ok``."""
    if not ok:
        raise CheckFailed(what)


def check_transfer(parts: Iterable[tuple[int, int]], n: int) -> None:
    """Consumers' ``(count, sum)`` pairs must add up to exactly the items ``0 .. n-1``."""
    parts = list(parts)
    count = sum(c for c, _ in parts)
    total = sum(s for _, s in parts)
    check(count == n, f"moved {count} items, expected {n}")
    check(total == expected_sum(n), f"items sum to {total}, expected {expected_sum(n)}")


class Worker(threading.Thread):
    """A daemon thread that keeps the exception its target raised, for :meth:`finish`."""

    def __init__(self, target: Callable[[], None], name: str) -> None:
        super().__init__(name=name, daemon=True)
        self._fn = target
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._fn()
        except BaseException as exc:
            self.error = exc

    def finish(self, timeout: float) -> None:
        """Join; re-raise the target's exception; ``TimeoutError`` if it is still running."""
        self.join(timeout)
        if self.is_alive():
            raise TimeoutError(f"benchmark thread {self.name} still running after {timeout} s")
        if self.error is not None:
            raise self.error


def _loop_factory(loop: str | None) -> Callable[[], asyncio.AbstractEventLoop] | None:
    if loop in (None, "asyncio"):
        return None
    if loop == "uvloop":
        if importlib.util.find_spec("uvloop") is None:
            raise BenchError("loop='uvloop' asked for, but uvloop is not installed")
        uvloop: Any = importlib.import_module("uvloop")  # a peer: typed loosely, may be absent
        factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
        return factory
    raise BenchError(f"unknown event loop {loop!r} (use 'asyncio' or 'uvloop')")


class Env:
    """How implementations run: which asyncio loop, and how long before a run counts as hung."""

    def __init__(self, loop: str | None = None, timeout: float = 120.0) -> None:
        self.loop_name = loop or "asyncio"
        self._factory = _loop_factory(loop)
        self.timeout = timeout

    def run_async(self, main: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Run ``main()`` in a fresh event loop of the chosen kind; return what it returns."""
        with asyncio.Runner(loop_factory=self._factory) as runner:
            return runner.run(asyncio.wait_for(main(), self.timeout))

    def run_trio(self, main: Callable[[], Awaitable[T]]) -> T:
        """Run ``main()`` under ``trio.run`` in this thread (trio ignores the loop choice)."""
        trio: Any = importlib.import_module("trio")  # a peer: typed loosely, may be absent

        timeout = self.timeout

        async def guarded() -> T:
            with trio.fail_after(timeout):
                return await main()

        result: T = trio.run(guarded)
        return result

    def thread(self, target: Callable[[], None], name: str = "bench") -> Worker:
        """Start ``target`` in a daemon :class:`Worker`; call ``finish`` to join it."""
        w = Worker(target, name)
        w.start()
        return w

    def run_threads(self, *targets: Callable[[], None]) -> Timing:
        """Start one thread per target, join them all; the time from start to the last join."""
        sw = Stopwatch()
        deadline = time.perf_counter() + self.timeout
        workers = [self.thread(t, f"bench-{i}") for i, t in enumerate(targets)]
        for w in workers:
            w.finish(max(deadline - time.perf_counter(), 0.0))
        return sw.stop()
