"""Thread hammering: :func:`hammer` runs workers released at once, with tiny switches."""

from __future__ import annotations

import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

# --- thread hammering --------------------------------------------------------------------------


def hammer(
    *workers: Callable[[], T],
    switch_interval: float = 1e-6,
    timeout: float = 60.0,
    name: str = "corral-hammer",
) -> list[T]:
    """Run each worker in its own thread, all released at once; return their results.

    The threads wait on a barrier so they start together, and run with
    ``sys.setswitchinterval(switch_interval)`` (restored afterwards) so the interpreter
    switches threads as often as it can. Every thread is joined. If one worker raised,
    its exception is re-raised; if several did, an ``ExceptionGroup`` of them. A thread
    still running after ``timeout`` seconds raises ``TimeoutError`` with the stacks of the
    stuck threads (they are daemon threads, so a hang cannot keep the process alive).

    Check invariants on the returned results, after the join: during the run only
    ``assert`` what each worker can see for itself.
    """
    if not workers:
        raise ValueError("hammer: needs at least one worker")
    for i, w in enumerate(workers):
        if not callable(w):
            raise TypeError(f"hammer: worker {i} must be callable, got {type(w).__name__}")
    n = len(workers)
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n
    errors: list[BaseException | None] = [None] * n

    def run(i: int) -> None:
        try:
            barrier.wait(timeout)
        except threading.BrokenBarrierError as exc:  # another thread failed to start
            errors[i] = exc
            return
        try:
            results[i] = workers[i]()
        except BaseException as exc:
            errors[i] = exc

    threads = [
        threading.Thread(target=run, args=(i,), name=f"{name}-{i}", daemon=True) for i in range(n)
    ]
    saved = sys.getswitchinterval()
    sys.setswitchinterval(switch_interval)
    started: list[threading.Thread] = []
    try:
        try:
            for t in threads:
                t.start()
                started.append(t)
        except BaseException:
            barrier.abort()  # release the started ones, then report the failed start
            for t in started:
                t.join()
            raise
        deadline = time.monotonic() + timeout
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
    finally:
        sys.setswitchinterval(saved)
    stuck = [t for t in threads if t.is_alive()]
    if stuck:
        frames = sys._current_frames()
        stacks = []
        for t in stuck:
            frame = frames.get(t.ident) if t.ident is not None else None
            stack = "".join(traceback.format_stack(frame)) if frame is not None else ""
            stacks.append(f"thread {t.name!r} is at:\n{stack}")
        raise TimeoutError(
            f"hammer: {len(stuck)} of {n} worker thread(s) still running after {timeout} s\n"
            + "\n".join(stacks)
        )
    real = [e for e in errors if e is not None]
    if len(real) == 1:
        raise real[0]
    if real:
        raise BaseExceptionGroup(f"hammer: {len(real)} of {n} workers failed", real)
    return results
