"""The worker loops of both flavours, by worker kind: what a ``FlowRun`` starts.

A run in either flavour may use both loops (the asyncio flavour runs plain functions on
threads; the thread flavour runs coroutine functions as tasks on a private loop), so
both ``Flow`` front ends hand the engine this one table. It lives a level above the
engine and the loops, so the engine never imports the modules that import it.
"""

from __future__ import annotations

from . import _aio_workers, _threads_workers
from ._engine import WorkerBodies

__all__ = ["WORKERS"]

WORKERS: dict[str, WorkerBodies] = {
    "task": WorkerBodies(work=_aio_workers.work, feed=_aio_workers.feed),
    "thread": WorkerBodies(work=_threads_workers.work, feed=_threads_workers.feed),
}
