"""One SingleFlight test suite for every mix of callers and functions.

Tests are plain functions driving a :class:`World`:

* callers: ``task`` (asyncio tasks on an event loop running in a helper thread),
  ``thread`` (a thread per call), or ``mixed`` (alternating tasks on two loops and threads,
  all on one SingleFlight: its asyncio and thread views share one call table);
* the shared function: ``coro`` (``async def``) or ``plain``.

Every call returns a ``concurrent.futures.Future``; :meth:`World.leave` makes one caller
give up (a task is cancelled; a thread's Context is cancelled). Functions are built by
:meth:`World.fn` from a small spec so each test states what the shared call does once.
Blocking is on corral Contexts (gates), which threads and tasks can both wait for.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import corral
import corral.threads

WAIT = 10.0  # seconds: only reached when a test is failing


class Counter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.n = 0

    def add(self) -> int:
        with self._lock:
            self.n += 1
            return self.n


class Call:
    """One caller's pending call."""

    def __init__(
        self,
        via: str,
        future: concurrent.futures.Future[Any],
        ctx: Any,
        cancel: Callable[[], object] | None = None,
    ) -> None:
        self.via = via
        self.future = future
        self.ctx = ctx
        self.cancel = cancel

    def result(self) -> Any:
        return self.future.result(timeout=WAIT)

    def exception(self) -> BaseException | None:
        return self.future.exception(timeout=WAIT)


class _Loop:
    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=name)
        self.thread.start()

    def submit(self, coro: Any) -> concurrent.futures.Future[Any]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def close(self) -> None:
        async def drain() -> None:
            current = asyncio.current_task()
            others = [t for t in asyncio.all_tasks() if t is not current]
            for t in others:
                t.cancel()
            await asyncio.gather(*others, return_exceptions=True)
            await self.loop.shutdown_default_executor()

        self.submit(drain()).result(WAIT)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(WAIT)
        self.loop.close()


class World:
    def __init__(self, callers: str, fn_kind: str) -> None:
        self.callers = callers
        self.fn_kind = fn_kind
        self.sf: corral.SingleFlight[Any, Any] = corral.SingleFlight()
        self.tsf = self.sf.as_threads()
        self.loops = [_Loop("sf-loop-a")]
        if callers == "mixed":
            self.loops.append(_Loop("sf-loop-b"))
        self._threads: list[threading.Thread] = []
        self._n = 0

    def __repr__(self) -> str:
        return f"{self.callers}-{self.fn_kind}"

    def close(self) -> None:
        for t in self._threads:
            t.join(WAIT)
        for lp in self.loops:
            lp.close()

    # -- callers ---------------------------------------------------------------------------

    def _via(self) -> str:
        i = self._n
        self._n += 1
        if self.callers == "mixed":
            return ["task-a", "thread", "task-b"][i % 3]
        return "task-a" if self.callers == "task" else "thread"

    def call(
        self,
        key: Any,
        fn: Callable[..., Any],
        *args: Any,
        method: str = "do",
        timeout: float | None = None,
        via: str | None = None,
        then: Callable[[Any], Any] | None = None,
        before: Callable[[], object] | None = None,
    ) -> Call:
        """Start one caller of ``sf.<method>(key, fn, *args)``; ``then(result)``, if
        given, runs in the caller right after the call returns and becomes its result."""
        via = via or self._via()
        ctx = corral.with_cancel(corral.background())
        if via.startswith("task"):
            lp = self.loops[0] if via == "task-a" or len(self.loops) == 1 else self.loops[1]

            async def run() -> Any:
                if before is not None:
                    before()
                meth = getattr(self.sf, method)
                if method == "do_chan":
                    res = await meth(key, fn, *args).recv()
                else:
                    res = await meth(key, fn, *args, timeout=timeout, ctx=ctx)
                return then(res) if then is not None else res

            # The Call's future resolves when the task has really ended (cancelling the
            # future run_coroutine_threadsafe returns only schedules the cancellation).
            done: concurrent.futures.Future[Any] = concurrent.futures.Future()

            async def tracked() -> None:
                try:
                    res = await run()
                except BaseException as e:
                    done.set_exception(e)
                    if not isinstance(e, Exception):
                        raise
                else:
                    done.set_result(res)

            return Call(via, done, ctx, cancel=lp.submit(tracked()).cancel)
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def run_thread() -> None:
            try:
                if before is not None:
                    before()
                meth = getattr(self.tsf, method)
                if method == "do_chan":
                    res = meth(key, fn, *args).recv(timeout=WAIT)
                else:
                    res = meth(key, fn, *args, timeout=timeout, ctx=ctx)
                if then is not None:
                    res = then(res)
            except BaseException as e:
                fut.set_exception(e)
            else:
                fut.set_result(res)

        t = threading.Thread(target=run_thread, name=f"sf-caller-{self._n}")
        self._threads.append(t)
        t.start()
        return Call(via, fut, ctx)

    def leave(self, call: Call) -> None:
        """Make one caller give up: cancel its task, or its Context (a thread)."""
        if call.cancel is not None:
            call.cancel()
        else:
            call.ctx.cancel()

    @staticmethod
    def left(call: Call) -> bool:
        """Whether the call ended by its caller leaving (and not with a result)."""
        try:
            call.future.result(timeout=WAIT)
        except (concurrent.futures.CancelledError, asyncio.CancelledError, corral.Cancelled):
            return True
        return False

    # -- waiting for a state ----------------------------------------------------------------

    def until(self, cond: Callable[[], bool], why: Callable[[], str] = lambda: "") -> None:
        """Poll ``cond`` (states no event announces: a caller in another thread joined)."""
        deadline = time.monotonic() + WAIT
        while not cond():
            if time.monotonic() > deadline:
                raise AssertionError(f"still false after {WAIT} s: {cond} {why()}")
            time.sleep(0.001)

    def waiting(self, n: int) -> None:
        self.until(
            lambda: self.sf.statistics().waiters == n,
            lambda: f"{self.sf.statistics()}, wanted {n} waiters",
        )

    # -- shared functions -----------------------------------------------------------------

    def fn(
        self,
        *,
        result: Any = None,
        error: BaseException | None = None,
        calls: Counter | None = None,
        started: threading.Event | None = None,
        gate: corral.Context | None = None,
        cancelled: threading.Event | None = None,
        finished: threading.Event | None = None,
        result_fn: Callable[[], Any] | None = None,
    ) -> Callable[..., Any]:
        """A shared function: counts itself in ``calls``, sets ``started``, waits for
        ``gate`` (or for its flight to be cancelled: then sets ``cancelled`` and raises),
        then raises ``error`` or returns ``result`` (or ``result_fn()``); ``finished`` is
        set when it ends, however it ends."""

        def begin() -> None:
            if calls is not None:
                calls.add()
            if started is not None:
                started.set()

        def end() -> Any:
            if error is not None:
                raise error
            return result_fn() if result_fn is not None else result

        if self.fn_kind == "coro":

            async def afn(*_: Any) -> Any:
                try:
                    begin()
                    if gate is not None:
                        try:
                            await gate.wait()
                        except asyncio.CancelledError:
                            if cancelled is not None:
                                cancelled.set()
                            raise
                    await asyncio.sleep(0)
                    return end()
                finally:
                    if finished is not None:
                        finished.set()

            return afn

        def pfn(*_: Any) -> Any:
            try:
                begin()
                if gate is not None:
                    flight = corral.SingleFlight.current_context()
                    # Wait for the gate or for the flight's cancellation, whichever first.
                    either = corral.with_cancel(flight)
                    stop = gate.after_func(either.cancel)
                    either.wait_blocking(WAIT)
                    stop()
                    if flight.cancelled:
                        if cancelled is not None:
                            cancelled.set()
                        flight.raise_if_cancelled()
                return end()
            finally:
                if finished is not None:
                    finished.set()

        return pfn


@pytest.fixture(
    params=[
        ("task", "coro"),
        ("task", "plain"),
        ("thread", "plain"),
        ("thread", "coro"),
        ("mixed", "coro"),
        ("mixed", "plain"),
    ],
    ids=lambda p: f"{p[0]}-{p[1]}",
)
def world(request: pytest.FixtureRequest) -> Iterator[World]:
    w = World(*request.param)
    try:
        yield w
    finally:
        w.close()


@pytest.fixture
def gate() -> Iterator[corral.CancelContext]:
    with corral.with_cancel(corral.background()) as ctx:
        yield ctx
