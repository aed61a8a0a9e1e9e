"""Where the thread flavour of the patterns truly differs from the asyncio flavour.

The twin of ``_rt_aio`` (same names): the ``_threads_*`` modules, generated from the
``_aio_*`` ones, import it as ``rt``. A thread cannot be cancelled from outside, so a
thread worker parks with the run's Context (its cancellation wakes the thread) and
checks it between items.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Executor
from contextlib import AbstractContextManager
from typing import Any

from .._core.channel import CLOSED, ChannelState
from .._core.context import Context
from .._core.threads import start_thread
from .._core.waiter import ThreadWaiter
from .._errors import Cancelled
from .._threads.channel import Channel as Channel
from .._threads.select import select as select
from .._threads.wait import park as park

__all__ = [
    "FLAVOUR",
    "PUBLIC",
    "Channel",
    "Waiter",
    "blocking",
    "cancel_scope",
    "current_loop",
    "executor_call",
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

FLAVOUR = "threads"
PUBLIC = "corral.threads"  # the public module of this flavour, for messages
Waiter = ThreadWaiter
new_waiter = ThreadWaiter
# asyncio's cancellations owed to tasks (see corral._aio.wait): threads are never owed one.
owed: dict[Any, int] = {}


def pay_owed() -> None:  # pragma: no cover - owed is always empty here
    return None


def park_ctx(ctx: Context) -> Context | None:
    """The ctx a thread worker parks with: the run's, so its cancellation wakes the thread."""
    return ctx


def cancel_scope(ctx: Context) -> AbstractContextManager[None]:
    """Nothing to do: threads are woken through the ctx they park with."""
    return contextlib.nullcontext()


def is_cancellation(exc: BaseException) -> bool:
    return isinstance(exc, Cancelled)


def must_reraise(exc: BaseException) -> bool:
    return False


def current_loop() -> asyncio.AbstractEventLoop | None:
    """Task workers of the thread flavour get a private loop (see ``FlowRun``)."""
    return None


def wait_closed(st: ChannelState[Any]) -> None:
    """Block until ``st`` is closed."""
    r = st.recv(ThreadWaiter)
    if r is CLOSED:
        return
    assert isinstance(r, ThreadWaiter)
    park(r, None, None)


def blocking(fn: Callable[[], object], what: str) -> None:
    fn()


def _wake(w: ThreadWaiter) -> Callable[[object], None]:
    def wake(_: object) -> None:
        w.complete(0, None)

    return wake


def executor_call(ex: Executor, fn: Callable[[Any], Any], ctx: Context) -> Callable[[Any], Any]:
    """``call(item)`` runs ``fn(item)`` on ``ex``; the wait ends early if ``ctx`` is done."""

    def call(item: Any) -> Any:
        fut = ex.submit(fn, item)
        w = ThreadWaiter()
        fut.add_done_callback(_wake(w))
        try:
            park(w, None, ctx)
        except BaseException:
            fut.cancel()
            raise
        return fut.result()

    return call


def spawn(fn: Callable[..., None], args: tuple[Any, ...], name: str) -> threading.Thread:
    """Start a relay worker (or_done, tee, fan_in) as a daemon thread.

    Daemon, so a relay that a program forgot about (its ctx never cancelled, its output
    never drained or closed) cannot keep the interpreter from exiting. It reads the
    caller's channel or iterable, so it runs in a copy of the caller's contextvars, as
    the asyncio flavour's relay task does.
    """
    return start_thread(fn, *args, name=name, what=name, context=contextvars.copy_context())


def reap(handles: list[threading.Thread]) -> None:
    """Join relay threads whose run has ended (each is past its last step, or about to be)."""
    for t in handles:
        t.join()


def iterate(
    source: object, what: str, arg: str
) -> tuple[Callable[[], Any], Callable[[], object] | None]:
    """``(pull, close)`` for a plain iterable: ``pull()`` raises ``StopIteration`` at the end."""
    if isinstance(source, Iterable) and not hasattr(source, "__aiter__"):
        it: Iterator[Any] = iter(source)
        close = it.close if isinstance(it, Generator) else None
        return it.__next__, close
    raise TypeError(
        f"{what}: {arg} must be corral Channels or iterables (async iterables need the "
        f"asyncio flavour, corral.{what}), got {type(source).__name__}"
    )


def pause() -> None:
    """Nothing: thread workers never take the loop-local path that pauses."""
