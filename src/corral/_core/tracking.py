"""Opt-in registry of live primitives, so a test harness can prove no waiter was left.

Off by default (one attribute check per primitive created). ``corral.testing`` turns it
on around a test and asks every primitive made meanwhile for waiters still queued.
"""

from __future__ import annotations

import weakref
from typing import Protocol

__all__ = ["enabled", "leftover_waiters", "start", "stop", "track"]


class _Queues(Protocol):
    def queued_waiters(self) -> int: ...


enabled = False
_live: weakref.WeakSet[_Queues] = weakref.WeakSet()


def track(obj: _Queues) -> None:
    _live.add(obj)


def start() -> None:
    global enabled
    _live.clear()
    enabled = True


def stop() -> None:
    global enabled
    enabled = False
    _live.clear()


def leftover_waiters() -> list[str]:
    """One line per tracked primitive that still has queued, unfinished waiters."""
    out = []
    for obj in list(_live):
        n = obj.queued_waiters()
        if n:
            out.append(f"{n} waiter(s) still queued in {obj!r}")
    return out
