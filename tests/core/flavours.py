"""Flavour adapters: each conformance test is written once and run by tasks, threads, or both.

A **world** is where a blocking corral operation runs and waits:

* ``main``: an asyncio task on the test's own event loop, using ``corral.X``;
* ``threads``: a worker thread, using ``corral.threads.X``;
* ``other_loop``: an asyncio task on a second event loop that runs in another thread.

Test bodies are ``async def`` and drive every world from the test's loop: ``w.start(fn)`` (and
the sugar ``w.send``, ``w.recv``, ``w.select``, ``w.acquire``, ...) starts one operation in
world ``w`` and returns an :class:`Op` at once; ``await op`` gives its result or raises its
exception, ``op.done()`` says whether it finished, ``op.cancel()`` cancels it (loop worlds).
``fn`` is the same lambda in every world: ``lambda: w.chan(ch).send(x)`` returns a coroutine
in a loop world (the world awaits it) and blocks in the thread world. ``w.chan(ch)`` and
``w.sem(s)`` give the world's view of a shared primitive (``as_async()`` / ``as_threads()``),
so a channel made by one flavour is used by the other through its view, as users do.

A **flavour** says where senders (``tx``) and receivers (``rx``) run: both in asyncio, both in
threads, a thread feeding a task and the reverse, and tasks on two event loops in two threads.
Semaphore tests alternate their acquirers between ``tx`` and ``rx``.

Waiting for another party to be *parked* (queued in a primitive) polls the primitive's
``statistics()``: corral offers no "waiter parked" event, and the poll's sleep is only a
polling interval, never the synchronization itself (the condition is).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import inspect
import os
import random
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import pytest

import corral
import corral.threads

__all__ = [
    "FLAVOURS",
    "STRESS",
    "WORLDS",
    "Flavour",
    "Op",
    "Stage",
    "World",
    "consume",
    "flavour_fixture",
    "hammer_rng_fixture",
    "parked",
    "produce",
    "stage_fixture",
    "tiny_switch_interval_fixture",
    "until",
    "wait_until",
    "world_fixture",
]

# Generous bounds for a *poll* (not an assertion about speed): only a broken test hits them.
POLL_LIMIT_SECONDS = 20.0
JOIN_SECONDS = 10.0


# -- polling for a state ------------------------------------------------------------------------


async def until(cond: Callable[[], bool], what: str = "the condition") -> None:
    """Return once ``cond()`` is true; first let this loop's tasks run, then other threads."""
    deadline = time.monotonic() + POLL_LIMIT_SECONDS
    spins = 0
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        await asyncio.sleep(0 if spins < 50 else 0.0005)
        spins += 1


def wait_until(cond: Callable[[], bool], what: str = "the condition") -> None:
    """:func:`until` for plain (thread) test code."""
    deadline = time.monotonic() + POLL_LIMIT_SECONDS
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.0005)


async def parked(
    prim: Any,
    *,
    senders: int | None = None,
    receivers: int | None = None,
    waiting: int | None = None,
) -> None:
    """Wait until a channel has ``senders``/``receivers`` waiting, or a semaphore ``waiting``."""

    def ready() -> bool:
        s = prim.statistics()
        if senders is not None and s.waiting_senders != senders:
            return False
        if receivers is not None and s.waiting_receivers != receivers:
            return False
        return waiting is None or s.waiting == waiting

    await until(
        ready, f"{prim!r} to have senders={senders} receivers={receivers} waiting={waiting}"
    )


# -- operations -----------------------------------------------------------------------------------


class Op:
    """One started operation: ``await op`` (result or exception), ``done()``, ``cancel()``."""

    def __init__(self, world: World) -> None:
        self.world = world

    def done(self) -> bool:
        raise NotImplementedError

    def cancel(self) -> None:
        raise TypeError(f"an operation in the {self.world.name} world cannot be cancelled")

    def __await__(self) -> Generator[Any, None, Any]:
        raise NotImplementedError


class TaskOp(Op):
    """An operation run as its own task on the test's loop: cancellation is asyncio's."""

    def __init__(self, world: World, task: asyncio.Task[Any]) -> None:
        super().__init__(world)
        self.task = task

    def done(self) -> bool:
        return self.task.done()

    def cancel(self) -> None:
        self.task.cancel()

    def __await__(self) -> Generator[Any, None, Any]:
        return self.task.__await__()


class RemoteOp(Op):
    """An operation run in another thread (a worker, or another loop's task).

    Its outcome comes back as ``(ok, value_or_exception)`` in a concurrent future, so an
    exception (``CancelledError`` included) is re-raised here exactly as it was raised there.
    """

    def __init__(self, world: World) -> None:
        super().__init__(world)
        self.outcome: concurrent.futures.Future[tuple[bool, Any]] = concurrent.futures.Future()
        self.task: asyncio.Task[Any] | None = None  # the other loop's task, once spawned

    def done(self) -> bool:
        return self.outcome.done()

    def cancel(self) -> None:
        world = self.world
        if not isinstance(world, OtherLoopWorld):
            return super().cancel()  # raises: a thread cannot be cancelled

        def cancel_there() -> None:
            assert self.task is not None  # spawned by a callback queued before this one
            self.task.cancel()

        world.loop.call_soon_threadsafe(cancel_there)
        return None

    def __await__(self) -> Generator[Any, None, Any]:
        ok, value = yield from asyncio.wrap_future(self.outcome).__await__()
        if ok:
            return value
        raise value


async def produce(world: World, ch: Any, items: Iterable[Any], *, close: bool = False) -> None:
    """A producer in ``world``: send each item in turn (each send completes before the next)."""
    for item in items:
        await world.send(ch, item)
    if close:
        await world.close(ch)


async def consume(world: World, ch: Any, n: int) -> list[Any]:
    """A consumer in ``world``: receive ``n`` items in turn."""
    return [await world.recv(ch) for _ in range(n)]


# -- worlds ---------------------------------------------------------------------------------------


class World:
    """Where operations run; see the module docstring."""

    name: str
    ns: ModuleType  # corral or corral.threads
    is_loop: bool  # operations are asyncio tasks (so task.cancel / asyncio.timeout apply)

    def start(self, fn: Callable[[], Any]) -> Op:
        raise NotImplementedError

    def chan(self, ch: Any) -> Any:
        """This world's view of channel ``ch``."""
        raise NotImplementedError

    def sem(self, s: Any) -> Any:
        """This world's view of semaphore ``s``."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<world {self.name}>"

    # -- sugar: each starts one operation and returns its Op ---------------------------------

    def send(self, ch: Any, item: Any, **kw: Any) -> Op:
        return self.start(lambda: self.chan(ch).send(item, **kw))

    def recv(self, ch: Any, **kw: Any) -> Op:
        return self.start(lambda: self.chan(ch).recv(**kw))

    def select(self, *cases: Any, **kw: Any) -> Op:
        return self.start(lambda: self.ns.select(*cases, **kw))

    def acquire(self, s: Any, n: int = 1, **kw: Any) -> Op:
        """Acquire and keep ``n`` permits (the test releases them); returns None."""
        return self.start(lambda: self._acquire(self.sem(s), n, kw))

    def close(self, ch: Any) -> Op:
        """Close ``ch`` from this world (from its thread); returns what ``close()`` returned."""
        return self.start(lambda: self.chan(ch).close())

    def collect(self, ch: Any) -> Op:
        """Iterate over the channel until it ends; returns the list of items."""
        raise NotImplementedError

    def wait_ctx(self, ctx: corral.Context) -> Op:
        """``await ctx.wait()`` / ``ctx.wait_blocking()``."""
        raise NotImplementedError

    def _acquire(self, s: Any, n: int, kw: dict[str, Any]) -> Any:
        raise NotImplementedError


class _LoopWorld(World):
    ns = corral
    is_loop = True

    def chan(self, ch: Any) -> Any:
        return ch if isinstance(ch, corral.Channel) else ch.as_async()

    def sem(self, s: Any) -> Any:
        return s if isinstance(s, corral.Semaphore) else s.as_async()

    def collect(self, ch: Any) -> Op:
        async def collect(view: Any) -> list[Any]:
            return [x async for x in view]

        return self.start(lambda: collect(self.chan(ch)))

    def wait_ctx(self, ctx: corral.Context) -> Op:
        return self.start(ctx.wait)

    async def _acquire(self, s: Any, n: int, kw: dict[str, Any]) -> None:
        await s.acquire(n, **kw)


async def _call(fn: Callable[[], Any]) -> Any:
    result = fn()
    if inspect.isawaitable(result):  # a blocking operation; non-blocking ones (close) are not
        result = await result
    return result


class MainWorld(_LoopWorld):
    """Tasks on the test's own loop."""

    name = "main"

    def start(self, fn: Callable[[], Any]) -> Op:
        return TaskOp(self, asyncio.get_running_loop().create_task(_call(fn)))


class OtherLoopWorld(_LoopWorld):
    """Tasks on a second event loop, run by its own thread (started on first use)."""

    name = "other_loop"

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            loop = asyncio.new_event_loop()
            loop.set_debug(True)  # flags non-thread-safe calls into it from other threads
            ready = threading.Event()
            loop.call_soon(ready.set)
            self._thread = threading.Thread(
                target=loop.run_forever, name="core-tests-other-loop", daemon=True
            )
            self._thread.start()
            ready.wait(JOIN_SECONDS)
            self._loop = loop
        return self._loop

    def start(self, fn: Callable[[], Any]) -> Op:
        op = RemoteOp(self)

        async def run() -> None:
            try:
                op.outcome.set_result((True, await _call(fn)))
            except BaseException as exc:  # CancelledError too: the test asserts on it
                op.outcome.set_result((False, exc))

        def spawn() -> None:
            op.task = asyncio.get_running_loop().create_task(run())
            op.task.add_done_callback(cancelled_before_it_ran)

        def cancelled_before_it_ran(task: asyncio.Task[None]) -> None:
            # run() reports every outcome itself, unless the task was cancelled before its
            # first step (then run() never ran).
            if not op.outcome.done():
                op.outcome.set_result((False, asyncio.CancelledError()))

        self.loop.call_soon_threadsafe(spawn)
        return op

    def shutdown(self) -> None:
        loop = self._loop
        if loop is None:
            return

        async def cancel_leftovers() -> None:
            me = asyncio.current_task()
            left = [t for t in asyncio.all_tasks() if t is not me]
            for t in left:
                t.cancel()
            await asyncio.gather(*left, return_exceptions=True)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(cancel_leftovers(), loop).result(JOIN_SECONDS)
        loop.call_soon_threadsafe(loop.stop)
        assert self._thread is not None
        self._thread.join(JOIN_SECONDS)
        if not self._thread.is_alive():
            loop.close()
        self._loop = None


class _Worker:
    """One pool thread: runs the jobs put in its queue, one at a time."""

    def __init__(self, pool: ThreadWorld, n: int) -> None:
        self.jobs: deque[tuple[Callable[[], Any], RemoteOp] | None] = deque()
        self.wake = threading.Semaphore(0)
        self.thread = threading.Thread(
            target=self._run, args=(pool,), name=f"core-tests-worker-{n}", daemon=True
        )
        self.thread.start()

    def submit(self, job: tuple[Callable[[], Any], RemoteOp] | None) -> None:
        self.jobs.append(job)
        self.wake.release()

    def _run(self, pool: ThreadWorld) -> None:
        while True:
            self.wake.acquire()
            job = self.jobs.popleft()
            if job is None:
                return
            fn, op = job
            try:
                result = fn()
                if asyncio.iscoroutine(result):  # a test bug: an asyncio call in a thread
                    result.close()
                    raise TypeError("the threads world was given an asyncio operation")
                outcome = (True, result)
            except BaseException as exc:
                outcome = (False, exc)
            pool._idle(self)  # before publishing, so the next operation can reuse this thread
            op.outcome.set_result(outcome)


class ThreadWorld(World):
    """Worker threads: every operation runs in a thread of its own while it blocks."""

    name = "threads"
    ns = corral.threads
    is_loop = False

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._free: list[_Worker] = []
        self._all: list[_Worker] = []

    def start(self, fn: Callable[[], Any]) -> Op:
        op = RemoteOp(self)
        with self._lock:
            worker = self._free.pop() if self._free else None
            if worker is None:
                worker = _Worker(self, len(self._all))
                self._all.append(worker)
        worker.submit((fn, op))
        return op

    def _idle(self, worker: _Worker) -> None:
        with self._lock:
            self._free.append(worker)

    def chan(self, ch: Any) -> Any:
        return ch if isinstance(ch, corral.threads.Channel) else ch.as_threads()

    def sem(self, s: Any) -> Any:
        return s if isinstance(s, corral.threads.Semaphore) else s.as_threads()

    def collect(self, ch: Any) -> Op:
        return self.start(lambda: list(self.chan(ch)))

    def wait_ctx(self, ctx: corral.Context) -> Op:
        return self.start(ctx.wait_blocking)

    def _acquire(self, s: Any, n: int, kw: dict[str, Any]) -> None:
        s.acquire(n, **kw)

    @property
    def threads_started(self) -> int:
        return len(self._all)

    def shutdown(self) -> None:
        for w in self._all:
            w.submit(None)
        for w in self._all:
            w.thread.join(JOIN_SECONDS)


class Stage:
    """The worlds of one test; ``close()`` stops and joins every thread they started."""

    def __init__(self) -> None:
        self.main = MainWorld()
        self.threads = ThreadWorld()
        self.other_loop = OtherLoopWorld()

    def world(self, name: str) -> World:
        world: World = getattr(self, name)
        return world

    @property
    def worlds(self) -> tuple[World, ...]:
        return (self.main, self.threads, self.other_loop)

    def close(self) -> None:
        self.threads.shutdown()
        self.other_loop.shutdown()


# -- flavours -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Flavour:
    """Where senders (``tx``) and receivers (``rx``) run."""

    id: str
    tx: World
    rx: World

    def channel(self, capacity: float = 0) -> Any:
        """A channel made by the sending side's flavour; the other side uses its view."""
        return self.tx.ns.Channel(capacity)

    def semaphore(self, size: int) -> Any:
        return self.tx.ns.Semaphore(size)

    def world(self, i: int) -> World:
        """Alternate between the two sides: ``world(0)`` is tx, ``world(1)`` rx, ..."""
        return self.rx if i % 2 else self.tx

    @property
    def has_threads(self) -> bool:
        return not (self.tx.is_loop and self.rx.is_loop)

    def __repr__(self) -> str:
        return f"<flavour {self.id}>"


FLAVOURS: dict[str, tuple[str, str]] = {
    "asyncio": ("main", "main"),
    "threads": ("threads", "threads"),
    "thread-to-asyncio": ("threads", "main"),
    "asyncio-to-thread": ("main", "threads"),
    "two-loops": ("other_loop", "main"),
}

WORLDS = ("main", "threads", "other_loop")


@pytest.fixture(name="stage")
def stage_fixture() -> Iterator[Stage]:
    stage = Stage()
    try:
        yield stage
    finally:
        stage.close()


@pytest.fixture(name="flavour", params=list(FLAVOURS))
def flavour_fixture(request: pytest.FixtureRequest, stage: Stage) -> Flavour:
    tx, rx = FLAVOURS[request.param]
    return Flavour(request.param, stage.world(tx), stage.world(rx))


@pytest.fixture(name="world", params=WORLDS)
def world_fixture(request: pytest.FixtureRequest, stage: Stage) -> World:
    return stage.world(request.param)


# -- hammer tests ---------------------------------------------------------------------------------

STRESS = 10 if os.environ.get("CORRAL_STRESS") else 1  # `make stress`: ten times the rounds


@pytest.fixture(name="hammer_rng")
def hammer_rng_fixture() -> random.Random:
    """A seeded RNG for a hammer test; the seed is printed (shown when the test fails) and
    ``CORRAL_SEED=<seed>`` replays it."""
    seed = int(os.environ.get("CORRAL_SEED") or random.randrange(2**32))
    print(f"hammer seed: CORRAL_SEED={seed}")
    return random.Random(seed)


@pytest.fixture(name="tiny_switch_interval")
def tiny_switch_interval_fixture() -> Iterator[None]:
    """Make the interpreter switch threads as often as it can, to widen every race window."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(old)
