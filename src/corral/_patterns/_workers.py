"""The worker loops of both flavours, by worker kind: what a ``FlowRun`` starts.

A run in either flavour may use both loops (the asyncio flavour runs plain functions on
threads; the thread flavour runs coroutine functions as tasks on a private loop), so
both ``Flow`` front ends hand the engine this one table. It lives a level above the
engine and the loops, so the engine never imports the modules that import it.
"""

from __future__ import annotations

from ._engine import WorkerBodies

__all__ = ["worker_bodies"]

_BODIES: dict[str, WorkerBodies] | None = None


def worker_bodies() -> dict[str, WorkerBodies]:
    """``{"task": ..., "thread": ...}``, built at the first run.

    Lazily, so that ``import corral`` does not load the thread flavour's loops (nor
    ``corral.threads`` the asyncio flavour's) before a run needs them. Neither loop module
    imports this one, so the lazy import closes no cycle. Built whole, then published by
    one assignment: a thread racing it sees either nothing or the full table.
    """
    global _BODIES
    bodies = _BODIES
    if bodies is None:
        from . import _aio_workers, _threads_workers

        bodies = _BODIES = {
            "task": WorkerBodies(work=_aio_workers.work, feed=_aio_workers.feed),
            "thread": WorkerBodies(work=_threads_workers.work, feed=_threads_workers.feed),
        }
    return bodies
