"""Helpers for the pattern tests: one test body, every flavour and kind of work.

``flavour`` is who consumes: ``aio`` (``corral.fan_out`` & co, awaited by the test's
task) or ``threads`` (``corral.threads.*``, blocking calls made straight from the test's
coroutine: nothing else needs that loop, thread-flavour task workers get a private loop).

``kind`` is how work functions are written: ``async`` (coroutine functions: tasks) or
``sync`` (plain functions: threads). :meth:`Kind.fn` turns one plain body into either.

Waiting for a state nobody announces (every worker parked) polls ``statistics()``: the
poll's sleep is an interval, never the synchronization (the condition is).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from types import ModuleType
from typing import Any

import corral
import corral.threads

POLL_LIMIT_SECONDS = 20.0


class Flavour:
    """The consumer's side: ``corral`` or ``corral.threads``, driven from an async test."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.mod: ModuleType = corral if name == "aio" else corral.threads

    def __repr__(self) -> str:
        return self.name

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.mod, attr)

    async def collect(self, flow: Any) -> list[Any]:
        if self.name == "aio":
            return list(await flow.collect())
        return list(flow.collect())

    @contextlib.asynccontextmanager
    async def open(self, flow: Any) -> AsyncIterator[Any]:
        if self.name == "aio":
            async with flow as it:
                yield it
        else:
            with flow as it:
                yield it

    async def next(self, it: Any) -> Any:
        if self.name == "aio":
            return await anext(it)
        return next(it)

    async def items(self, it: Any) -> list[Any]:
        if self.name == "aio":
            return [x async for x in it]
        return list(it)

    async def recv(self, ch: Any) -> Any:
        if self.name == "aio":
            return await ch.recv()
        return ch.recv()

    async def drain_together(self, *chans: Any) -> list[list[Any]]:
        """Read ``chans`` round-robin to their end (tee outputs advance together)."""
        got: list[list[Any]] = [[] for _ in chans]
        live = list(range(len(chans)))
        while live:
            for i in list(live):
                try:
                    got[i].append(await self.recv(chans[i]))
                except corral.EndOfChannel:
                    live.remove(i)
        return got

    async def aclose(self, flow: Any) -> None:
        if self.name == "aio":
            await flow.aclose()
        else:
            flow.close()


class Kind:
    """How work functions are written: coroutine functions or plain functions."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name

    def fn(self, body: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """``body(item)`` as this kind's function; an awaitable result is awaited/waited."""
        if self.name == "async":

            async def afn(item: Any) -> Any:
                r = body(item)
                if inspect.isawaitable(r):
                    r = await r
                return r

            afn.__name__ = getattr(body, "__name__", "fn")
            return afn
        return body

    def wait(self, ctx: corral.Context) -> Any:
        """Wait for ``ctx`` to be done, the way this kind's functions wait."""
        if self.name == "async":
            return ctx.wait()
        ctx.wait_blocking()
        return None


class Gate:
    """A one-shot event every world can wait on: a corral Context, cancelled to open."""

    def __init__(self) -> None:
        self.ctx = corral.with_cancel(corral.background())

    def open(self) -> None:
        self.ctx.cancel()

    @property
    def is_open(self) -> bool:
        return self.ctx.cancelled


class Counter:
    """A thread-safe counter."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 0

    def add(self, n: int = 1) -> int:
        with self._lock:
            self.value += n
            return self.value


async def until(cond: Callable[[], bool], what: str = "the condition") -> None:
    """Return once ``cond()`` holds; first let this loop's tasks run, then other threads."""
    deadline = time.monotonic() + POLL_LIMIT_SECONDS
    spins = 0
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        await asyncio.sleep(0 if spins < 50 else 0.0005)
        spins += 1


def stalled(flow: Any) -> bool:
    """Every worker of every stage is parked right now (and not yet woken)."""
    if flow._run is None:  # not started yet
        return False
    st = flow.statistics()
    return all(s.waiting_now == s.workers for s in st.stages)


def parked(flow: Any, stage: int = 0) -> int:
    """How many workers of ``stage`` are parked right now (and not yet woken)."""
    if flow._run is None:  # not started yet
        return 0
    # Started by another thread, its stages may not be listed yet (seen on free-threaded
    # 3.13t, where the poller can run between the two): none of them is parked then.
    stages = flow.statistics().stages
    return int(stages[stage].waiting_now) if stage < len(stages) else 0


def counting(items: Iterator[Any], counter: Counter) -> Iterator[Any]:
    for x in items:
        counter.add()
        yield x


class Background:
    """Consume a flow in the background (a task for ``aio``, a thread for ``threads``).

    Records the items, the error that ended it and when (``time.monotonic()``).
    """

    def __init__(self, flavour: Flavour, flow: Any) -> None:
        self.items: list[Any] = []
        self.error: BaseException | None = None
        self.ended_at = 0.0
        self._task: asyncio.Task[None] | None = None
        self._thread: threading.Thread | None = None
        if flavour.name == "aio":
            self._task = asyncio.get_running_loop().create_task(self._consume_async(flow))
        else:
            self._thread = threading.Thread(target=self._consume_blocking, args=(flow,))
            self._thread.start()

    async def _consume_async(self, flow: Any) -> None:
        try:
            async with flow as results:
                async for x in results:
                    self.items.append(x)
        except Exception as exc:
            self.error = exc
        self.ended_at = time.monotonic()

    def _consume_blocking(self, flow: Any) -> None:
        try:
            with flow as results:
                self.items.extend(results)
        except Exception as exc:
            self.error = exc
        self.ended_at = time.monotonic()

    async def join(self) -> None:
        if self._task is not None:
            await self._task
        else:
            assert self._thread is not None
            thread = self._thread
            await until(lambda: not thread.is_alive(), "the consumer thread to end")
            thread.join()


RELAY_NAMES = ("corral-or_done", "corral-tee", "corral-fan_in")


def relays_running() -> int:
    """Relay workers (tasks of the running loop, and threads) not yet finished."""
    n = sum(t.name in RELAY_NAMES for t in threading.enumerate())
    try:
        tasks = asyncio.all_tasks()
    except RuntimeError:  # no running loop
        return n
    return n + sum(t.get_name() in RELAY_NAMES and not t.done() for t in tasks)
