"""Every thread corral starts, started one way: :func:`start_thread`.

trio's ``start_thread_soon`` is the model: one function, so the policies below hold for
every thread (a group's pool, pattern workers and relays, singleflight calls, the deadline
timer, a flow's private event loop, Redis lease renewers) and cannot drift apart.

**Which contextvars a thread sees.** The caller says, explicitly, every time:

* work a caller submitted (a ``Group.go`` call, a fan-out/pipeline worker, a relay reading
  the caller's iterable, a singleflight call) runs in ``contextvars.copy_context()`` taken
  *in the submitting thread at submission*, as ``asyncio.to_thread`` does and as a task
  copies its creator's context;
* corral's own infrastructure threads (the timer, a pool thread between jobs, a flow's
  loop thread, renewers) run in a new, empty ``contextvars.Context()``: they run no
  caller code, and must not keep (or leak into callbacks) the context of whichever
  caller happened to make them start.

The context is passed to the thread, never inherited: CPython 3.14 lets a new
``threading.Thread`` start with a copy of its creator's context
(``sys.flags.thread_inherit_context``, on by default on free-threaded builds), and GIL
builds start empty. Passing it explicitly makes corral behave the same on both.

**When a thread cannot start** (``RuntimeError: can't start new thread``: a thread or
memory limit): :class:`corral.ThreadStartError` is raised at the call that wanted the
thread, naming it, with the original error as ``__cause__``. Nothing is half-started:
the caller undoes what it prepared for the thread before re-raising, and no
``threading.Thread`` object that never started is kept anywhere (joining one raises).
"""

from __future__ import annotations

import contextvars
import sys
import threading
from collections.abc import Callable
from typing import Any

from .._errors import ThreadStartError

__all__ = ["start_thread"]

#: ``threading.Thread(context=...)`` exists from 3.14; before, the target runs in
#: ``context.run``, which is the same thing (the thread starts empty there).
_THREAD_TAKES_CONTEXT = sys.version_info >= (3, 14)


def start_thread(
    fn: Callable[..., object],
    *args: Any,
    name: str,
    what: str,
    context: contextvars.Context | None,
) -> threading.Thread:
    """Start a daemon thread running ``fn(*args)`` in ``context``; return it, started.

    ``context``: a ``contextvars.copy_context()`` the caller took for submitted work, or
    ``None`` for an infrastructure thread (a new, empty Context). One Context object can
    run in one thread at a time: take a fresh copy per thread. ``name`` names the thread
    (``corral-`` is prefixed if missing); ``what`` names the call that wanted it, for the
    :class:`~corral.ThreadStartError` raised if it could not start.

    Daemon, always: a thread a program forgot about (an abandoned singleflight call, a
    relay whose ctx is never cancelled) must not keep the interpreter from exiting; every
    corral primitive that starts threads joins them on its own exit.
    """
    if context is None:
        context = contextvars.Context()
    if not name.startswith("corral-"):
        name = f"corral-{name}"
    if _THREAD_TAKES_CONTEXT:
        t = threading.Thread(
            target=fn,
            args=args,
            name=name,
            daemon=True,
            context=context,  # type: ignore[call-arg,unused-ignore]
        )
    else:
        t = threading.Thread(target=context.run, args=(fn, *args), name=name, daemon=True)
    try:
        t.start()
    except RuntimeError as exc:  # "can't start new thread" (or out of memory for one)
        raise ThreadStartError(f"{what}: could not start a thread ({exc})") from exc
    return t
