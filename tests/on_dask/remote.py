"""Functions the tests run on the Dask workers (sent by value: see conftest.py)."""

from __future__ import annotations

import os
import signal
from typing import Any


def square(x: int) -> int:
    return x * x


def fail_on_multiples_of_3(x: int) -> int:
    if x % 3 == 0:
        raise ValueError(f"bad item {x}")
    return x * 10


def wait_for_event(arg: tuple[str, int]) -> int:
    """Block on a ``distributed.Event`` (on the scheduler) until the test sets it."""
    from distributed import Event

    name, x = arg
    Event(name).wait()
    return x


def kill_own_worker_once(arg: tuple[str, int]) -> int:
    """Item 0 SIGKILLs the worker process running it, the first time only.

    The marker file records the first attempt, so a retry (the scheduler reschedules the
    task of a dead worker) returns normally.
    """
    marker, x = arg
    if x == 0:
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return x
        os.close(fd)
        os.kill(os.getpid(), signal.SIGKILL)
    return x


def kill_own_worker(x: int) -> int:
    if x == 0:
        os.kill(os.getpid(), signal.SIGKILL)
    return x


def our_unfinished_tasks(dask_scheduler: Any, prefix: str) -> list[str]:
    """Run on the scheduler: keys starting with ``prefix`` that are not finished or gone."""
    return [
        f"{ts.key}:{ts.state}"
        for ts in dask_scheduler.tasks.values()
        if isinstance(ts.key, str)
        and ts.key.startswith(prefix)
        and ts.state in ("waiting", "queued", "processing", "no-worker")
    ]


def our_tasks(dask_scheduler: Any, prefix: str) -> list[str]:
    """Run on the scheduler: every key starting with ``prefix`` it still knows."""
    return [
        f"{ts.key}:{ts.state}"
        for ts in dask_scheduler.tasks.values()
        if isinstance(ts.key, str) and ts.key.startswith(prefix)
    ]


def set_allowed_failures(dask_scheduler: Any, n: int) -> int:
    old = dask_scheduler.allowed_failures
    dask_scheduler.allowed_failures = n
    return int(old)


def maybe_wait(arg: tuple[str, int]) -> int:
    name, x = arg
    if name:
        from distributed import Event

        Event(name).wait()
    return x


def fail_once(arg: tuple[str, int]) -> int:
    marker, x = arg
    if x == 0:
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return x
        raise RuntimeError("first attempt fails")
    return x


def kill_own_worker_behind_another(x: int) -> int:
    """Item 0 SIGKILLs its worker, but only once another task waits behind it on that worker.

    With one thread per worker, the scheduler still sends a worker more tasks than threads
    (``worker-saturation``); when the worker dies, Dask marks every task it held as suspicious,
    the one queued behind item 0 as much as item 0. Waiting for that queued task makes the
    innocent bystander certain, not a race. (The poll is on the worker's own state: nothing
    announces a task's arrival to the task that is running.)
    """
    if x == 0:
        import time

        from distributed import Event, get_worker

        # Only the first run waits for a bystander: corral re-runs a suspect alone, with
        # nothing behind it to wait for (that wait ran out its whole deadline, 20 s a test).
        first = Event("corral-test-first-kill")
        if not first.is_set():
            first.set()
            worker = get_worker()
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                if any(ts.state == "ready" for ts in worker.state.tasks.values()):
                    break
                time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGKILL)
    return x
