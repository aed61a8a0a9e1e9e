"""Where the asyncio flavour of the patterns truly differs from the thread flavour.

The ``_aio_*`` modules (and, generated from them, the ``_threads_*`` ones, which import
``_rt_threads`` instead) import this module as ``rt``: how a worker waits, is cancelled,
spawns a helper, and calls an executor. Keep the two modules' names in step; everything
else is written once.
"""

from __future__ import annotations

import asyncio
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    Awaitable,
    Callable,
    Generator,
    Iterable,
    Iterator,
)
from concurrent.futures import Executor
from contextlib import AbstractAsyncContextManager
from contextvars import copy_context
from typing import Any

from .._aio.channel import Channel as Channel
from .._aio.channel import new_waiter as new_waiter
from .._aio.select import select as select
from .._aio.wait import owed as owed
from .._aio.wait import park as park
from .._aio.wait import pay_owed as pay_owed
from .._core.channel import CLOSED, ChannelState
from .._core.context import Context
from .._core.threads import start_thread
from .._core.waiter import AsyncWaiter
from .._errors import Cancelled, ThreadStartError

__all__ = [
    "FLAVOUR",
    "PUBLIC",
    "Channel",
    "Waiter",
    "blocking",
    "cancel_scope",
    "current_loop",
    "executor_call",
    "inline_call",
    "is_cancellation",
    "iterate",
    "must_reraise",
    "new_waiter",
    "owed",
    "park",
    "park_ctx",
    "pause",
    "pay_owed",
    "reap",
    "select",
    "spawn",
    "wait_closed",
]

FLAVOUR = "aio"
PUBLIC = "corral"  # the public module of this flavour, for messages
Waiter = AsyncWaiter


def park_ctx(ctx: Context) -> Context | None:
    """The ctx a task worker parks with: none, its cancel scope cancels the whole task."""
    return None


def cancel_scope(ctx: Context) -> AbstractAsyncContextManager[Context]:
    """Cancel the current task when ``ctx`` is done (and report it as ``Cancelled``)."""
    return ctx.cancel_scope()


def is_cancellation(exc: BaseException) -> bool:
    return isinstance(exc, Cancelled | asyncio.CancelledError)


def must_reraise(exc: BaseException) -> bool:
    """A task cancelled from outside must end cancelled (asyncio's protocol)."""
    return isinstance(exc, asyncio.CancelledError)


def current_loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()


async def wait_closed(st: ChannelState[Any]) -> None:
    """Wait until ``st`` is closed, *even if cancelled meanwhile* (then re-raise after).

    Used to wait for a run's workers to stop: leaving before they have would leak them
    (lessons-from-peers, item 12: shield finalization).
    """
    cancelled: BaseException | None = None
    while True:
        r = st.recv(new_waiter)
        if r is CLOSED:
            break
        assert isinstance(r, AsyncWaiter)
        try:
            await park(r, None, None)
        except asyncio.CancelledError as exc:
            cancelled = exc
    if cancelled is not None:
        raise cancelled


async def blocking(fn: Callable[[], object], what: str) -> None:
    """Run a blocking cleanup ``fn`` in a helper thread; wait for it (uninterruptibly)."""
    done: ChannelState[Any] = ChannelState(0)
    box: list[BaseException] = []

    def target() -> None:
        try:
            fn()
        except BaseException as exc:
            box.append(exc)
        finally:
            done.close()

    try:  # the caller's cleanup, in a copy of its contextvars (as the thread flavour's)
        t = start_thread(target, name="corral-cleanup", what=what, context=copy_context())
    except ThreadStartError:
        target()  # no thread to spare: clean up here, blocking the loop, rather than leak
        t = None
    await wait_closed(done)
    if t is not None:
        t.join()
    if box:
        raise box[0]


def executor_call(
    ex: Executor, fn: Callable[[Any], Any], ctx: Context
) -> Callable[[Any], Awaitable[Any]]:
    """``await call(item)`` runs ``fn(item)`` on ``ex``; cancelling the task abandons it."""

    async def call(item: Any) -> Any:
        return await asyncio.wrap_future(ex.submit(fn, item))

    return call


def inline_call(fn: Callable[[Any], Any]) -> Callable[[Any], Awaitable[Any]]:
    """``run_in="task"`` for a plain function: call it on the event loop."""

    async def call(item: Any) -> Any:
        return fn(item)

    return call


_relays: set[asyncio.Task[None]] = set()


def spawn(
    fn: Callable[..., Awaitable[None]], args: tuple[Any, ...], name: str
) -> asyncio.Task[None]:
    """Start a relay worker (or_done, tee, fan_in) as a task on the running loop."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError(
            f"{name}: call it from a coroutine (it starts a task on the running event loop); "
            "in threads use corral.threads"
        ) from None
    task: asyncio.Task[None] = loop.create_task(fn(*args), name=f"corral-{name}")  # type: ignore[arg-type]
    _relays.add(task)  # asyncio keeps only weak references to tasks
    task.add_done_callback(_relays.discard)
    return task


async def reap(handles: list[asyncio.Task[None]]) -> None:
    """Nothing to wait for: a relay task's last step closes its run's ``done`` (see Relay)."""


async def _next_sync(it: Iterator[Any]) -> Any:
    try:
        return next(it)
    except StopIteration:
        raise StopAsyncIteration from None


async def _close_sync(gen: Generator[Any, Any, Any]) -> None:
    gen.close()


def iterate(
    source: object, what: str, arg: str
) -> tuple[Callable[[], Awaitable[Any]], Callable[[], Awaitable[object]] | None]:
    """``(pull, close)`` for an async or plain iterable.

    ``await pull()`` gives the next item or raises ``StopAsyncIteration``; ``close`` (None
    unless the source is a generator) runs the generator's ``finally`` blocks now, on this
    loop, when a relay stops reading early.
    """
    if isinstance(source, AsyncIterable):
        ait = aiter(source)
        aclose = getattr(ait, "aclose", None)
        if not isinstance(ait, AsyncGenerator):
            aclose = None
        return ait.__anext__, aclose
    if isinstance(source, Iterable):
        it = iter(source)
        close = None
        if isinstance(it, Generator):
            gen = it

            def close() -> Awaitable[None]:
                return _close_sync(gen)

        return (lambda: _next_sync(it)), close
    raise TypeError(
        f"{what}: {arg} must be corral Channels, async iterables or iterables, "
        f"got {type(source).__name__}"
    )


async def pause() -> None:
    """Yield to the event loop once (a worker about to park gives others one step)."""
    await asyncio.sleep(0)
