"""One Group test suite for every flavour.

Tests are ``async def`` and drive the group through :class:`Flavour`:

* ``aio``: ``corral.Group`` with ``async def`` workers (tasks);
* ``aio-threads``: ``corral.Group`` with plain workers (the group's threads);
* ``threads``: ``corral.threads.Group``, blocking calls made straight from the test's
  coroutine (nothing else runs on that loop; workers are plain functions in threads).

Workers are built by :meth:`Flavour.worker` from a small spec, so a test states *what*
a worker does once and each flavour makes a coroutine or a plain function of it. Blocking
is always on corral primitives (a Context to wait for, a Channel to send on), which
work from threads and tasks alike: no sleeps.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import pytest

import corral
import corral.threads


class Counter:
    """A thread-safe counter that also remembers its peak."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 0
        self.peak = 0
        self.total = 0

    def enter(self) -> None:
        with self._lock:
            self.value += 1
            self.total += 1
            self.peak = max(self.peak, self.value)

    def leave(self) -> None:
        with self._lock:
            self.value -= 1


async def until(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait until ``cond()`` holds: for states that no awaitable announces (a worker thread
    has returned). Polls; fails the test after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise AssertionError(f"condition still false after {timeout} s: {cond}")
        await asyncio.sleep(0.001)


class ThreadGroupShim:
    """``corral.threads.Group`` behind the asyncio group's (awaitable) interface."""

    def __init__(self, g: corral.threads.Group) -> None:
        self.g = g

    async def go(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        return self.g.go(fn, *args)

    def try_go(self, fn: Callable[..., Any], *args: Any) -> bool:
        return self.g.try_go(fn, *args)

    async def wait(self) -> None:
        self.g.wait()

    async def __aenter__(self) -> ThreadGroupShim:
        self.g.__enter__()
        return self

    async def __aexit__(self, *exc: Any) -> bool | None:
        self.g.__exit__(*exc)
        return None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.g, name)


class Flavour:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name

    @property
    def threads(self) -> bool:
        """Workers are threads (cancellation is cooperative, via g.ctx)."""
        return self.name != "aio"

    def group(self, *args: Any, **kwargs: Any) -> Any:
        if self.name == "threads":
            return ThreadGroupShim(corral.threads.Group(*args, **kwargs))
        return corral.Group(*args, **kwargs)

    def worker(
        self,
        *,
        result: Any = None,
        error: BaseException | None = None,
        started: Callable[[], object] | None = None,
        wait: corral.Context | None = None,
        check: corral.Context | None = None,
        send_to: corral.Channel[Any] | None = None,
        active: Counter | None = None,
    ) -> Callable[..., Any]:
        """A worker that: calls ``started()``; counts itself in ``active``; waits until
        ``wait`` is done; sends ``result`` on ``send_to``; raises ``check``'s error if it
        is done (a cooperative worker); then raises ``error`` or returns ``result``."""

        def before() -> None:
            if started is not None:
                started()
            if active is not None:
                active.enter()

        def after() -> Any:
            if active is not None:
                active.leave()
            if check is not None:
                check.raise_if_cancelled()
            if error is not None:
                raise error
            return result

        if self.name == "aio":

            async def aworker(*_: Any) -> Any:
                before()
                if wait is not None:
                    await wait.wait()
                if send_to is not None:
                    await send_to.send(result)
                await asyncio.sleep(0)  # a scheduling point, so peers interleave
                return after()

            return aworker

        def tworker(*_: Any) -> Any:
            before()
            if wait is not None:
                wait.wait_blocking()
            if send_to is not None:
                send_to.as_threads().send(result)
            return after()

        return tworker

    async def result(self, handle: Any) -> Any:
        """The outcome of what ``go`` returned (a task or a Future)."""
        if isinstance(handle, Future):
            return handle.result()
        return await handle


@pytest.fixture(params=["aio", "aio-threads", "threads"])
def flavour(request: pytest.FixtureRequest) -> Flavour:
    return Flavour(request.param)


@pytest.fixture
def gate() -> corral.CancelContext:
    """A Context the test opens (cancels) to release the workers waiting on it."""
    with corral.with_cancel(corral.background()) as ctx:
        yield ctx
