"""Opt-in registry of live primitives, so a test harness can prove no waiter was left.

Off by default (one attribute check per primitive created). ``corral.testing`` turns it
on around a test (``start``/``stop``: one global registry) and, nested inside that, around
each explored schedule (``scope()``: a private registry per run, so checking one run does
not disturb the test-wide one). A primitive registers in the global registry if it is on
and in every open scope.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

__all__ = ["describe_waiters", "enabled", "leftover_waiters", "scope", "start", "stop", "track"]


class _Queues(Protocol):
    def queued_waiters(self) -> int: ...


enabled = False
_global = False
_live: weakref.WeakSet[_Queues] = weakref.WeakSet()
# Scopes hold their primitives strongly: a run's checks (permits still held, waiters
# still queued) must see a primitive the scenario has already dropped, and primitives
# are freed by refcount the moment their last view goes.
_scopes: list[list[_Queues]] = []
# Primitives are created in any thread; a WeakSet is not safe to add to while another
# thread iterates it. Only taken while tracking is on.
_lock = threading.Lock()


def _update_enabled() -> None:
    global enabled
    enabled = _global or bool(_scopes)


def track(obj: _Queues) -> None:
    with _lock:
        if _global:
            _live.add(obj)
        for s in _scopes:
            s.append(obj)


def start() -> None:
    global _global
    with _lock:
        _live.clear()
        _global = True
        _update_enabled()


def stop() -> None:
    global _global
    with _lock:
        _global = False
        _live.clear()
        _update_enabled()


@contextmanager
def scope() -> Iterator[list[_Queues]]:
    """Collect the primitives created inside the block (in addition to the global set).

    The list keeps them alive until the block ends.
    """
    s: list[_Queues] = []
    with _lock:
        _scopes.append(s)
        _update_enabled()
    try:
        yield s
    finally:
        with _lock:
            _scopes.remove(s)
            _update_enabled()


def describe_waiters(objs: Iterator[_Queues] | list[_Queues]) -> list[str]:
    """One line per primitive in ``objs`` that still has queued, unfinished waiters."""
    out = []
    for obj in objs:
        n = obj.queued_waiters()
        if n:
            out.append(f"{n} waiter(s) still queued in {obj!r}")
    return out


def leftover_waiters() -> list[str]:
    """One line per tracked primitive that still has queued, unfinished waiters."""
    with _lock:
        objs = list(_live)
    return describe_waiters(objs)
