"""Waiters: how a blocked operation is parked, claimed, and woken.

A :class:`Waiter` stands for one blocked operation (a send, a receive, a select over many
cases, an acquire). A plain operation's waiter is queued in its one primitive *itself*
(its ``item`` and ``owner`` say what it offers and where it is queued; ``waiter`` is
itself): no second object per park. A select (or any waiter queued in several places)
is registered through one :class:`Entry` per case. A queue holds either kind and reads
``q.waiter`` / ``q.index`` / ``q.item`` alike.
Exactly one party *claims* it, under the waiter's own small lock:

* a waker that completes the operation for it (:meth:`Waiter.complete`), holding the
  primitive's lock, so the item or permit is handed over atomically with the claim; or
* an abort (timeout, Context cancelled, task cancelled, thread interrupted):
  :meth:`Waiter.abort`.

Whoever loses the race learns it from the claim and backs off: a waker skips the entry
(it is stale) and offers the item to the next waiter; an aborting owner finds the
operation already done and keeps its result. That single rule is what makes every
operation atomic under cancellation: it either happened, exactly once, or had no effect.

Lock order: a primitive's lock may be held while taking a waiter's lock; a waiter's lock
is a leaf (nothing else is acquired while holding it), so no cycle is possible. Select
holds several primitive locks at once, always in ``id()`` order.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from asyncio import AbstractEventLoop
from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["AsyncWaiter", "Entry", "ThreadWaiter", "Waiter", "WaiterOwner", "running_here"]

_get_running_loop = asyncio.events._get_running_loop  # C-accelerated, no error if none
_get_ident = threading.get_ident

#: On 3.11 asyncio's C ``_get_running_loop()`` makes a ``getpid()`` system call on every
#: call (fork detection, gone in 3.12): ~160 ns, as much as the rest of a task's wake-up.
#: There, "is ``loop`` running in this thread?" is asked of the loop's own record of the
#: thread running it (``BaseEventLoop._thread_id``, set by ``run_forever`` for exactly as
#: long as ``_get_running_loop()`` returns the loop); a loop without one (uvloop) falls
#: back. On 3.12+ the plain question is the cheaper one.
LOOP_THREAD_ID = sys.version_info < (3, 12)


def running_here(loop: AbstractEventLoop) -> bool:
    """Whether ``loop`` is the event loop running in this thread (see LOOP_THREAD_ID)."""
    if LOOP_THREAD_ID:
        try:
            return bool(loop._thread_id == _get_ident())  # type: ignore[attr-defined]
        except AttributeError:
            pass
    return _get_running_loop() is loop


class WaiterOwner(Protocol):
    """A primitive that queues waiters: it can unlink an entry when its waiter leaves."""

    # ``Any``: each primitive takes what it queues (an Entry, a Waiter, or either).
    def _unlink(self, entry: Any) -> None: ...


class Entry:
    """One registration of a waiter in one primitive's queue.

    ``index`` is the select case (0 for a plain operation); ``item`` is what a sender
    offers, or the weight a semaphore acquire asks for. Entries compare by identity, so
    ``deque.remove`` never calls a user item's ``__eq__``.
    """

    __slots__ = ("index", "item", "owner", "waiter")

    def __init__(self, waiter: Waiter, index: int, item: Any, owner: WaiterOwner) -> None:
        self.waiter = waiter
        self.index = index
        self.item = item
        self.owner = owner


class Waiter:
    """A parked operation. Subclasses say how to wake the party that waits (``_wake``).

    ``index`` is the case that fired (0 for a plain operation). A plain operation's waiter
    is its own queue entry: ``item`` (what a sender offers, the weight an acquire asks
    for) and ``owner`` (the primitive it is queued in) are set by that primitive.
    """

    __slots__ = (
        "__weakref__",
        "_claim",
        "done",
        "entries",
        "error",
        "index",
        "item",
        "owner",
        "value",
    )

    def __init__(self) -> None:
        # A plain Lock is the cheapest atomic test-and-set CPython offers that stays
        # correct without the GIL (3.13t); the critical sections below are a few stores.
        self._claim = threading.Lock()
        self.done = False
        self.index = 0
        self.value: Any = None
        self.error: BaseException | None = None
        # A select's (or any multi-queue waiter's) entries; an empty tuple, not a list, for a
        # plain operation: one container fewer per park for the cyclic GC to count.
        self.entries: list[Entry] | tuple[()] = ()
        self.item: Any = None
        self.owner: WaiterOwner | None = None

    @property
    def waiter(self) -> Waiter:
        """Itself: a plain waiter is its own queue entry (``Entry.waiter`` for a select)."""
        return self

    def complete(self, index: int, value: Any) -> bool:
        """Claim the waiter for case ``index`` with ``value`` and wake it.

        Called by a waker that holds the lock of the primitive the entry is in. Returns
        ``False`` if the waiter was already claimed (a stale entry) or if its owner can no
        longer be woken (its event loop closed): the caller then keeps the item.
        """
        claim = self._claim
        claim.acquire()  # not ``with``: measurably slower on the wake-up path
        if self.done:
            claim.release()
            return False
        self.done = True
        self.index = index
        self.value = value
        claim.release()
        if len(self.entries) == 1:
            # A plain operation: the waker popped its one entry. Dropping it breaks the
            # waiter <-> entry cycle, so the waiter is freed by refcount, not by the GC.
            # (A select keeps its entries: its owner unlinks the other cases.)
            self.entries = ()
        if self._wake():
            return True
        # The owner is gone (its loop closed): nobody will read value, so take it back.
        self.value = None
        return False

    def abort(self, error: BaseException, *, wake: bool = True) -> bool:
        """Claim the waiter with an error; ``False`` if the operation already completed."""
        with self._claim:
            if self.done:
                return False
            self.done = True
            self.error = error
        if wake:
            self._wake()
        return True

    def unlink(self) -> None:
        """Remove every entry still queued (after an abort, or a select's other cases)."""
        owner = self.owner
        if owner is not None:  # queued as its own entry
            self.owner = None
            owner._unlink(self)
        for entry in self.entries:
            entry.owner._unlink(entry)
        self.entries = ()

    def _wake(self) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError


def _resolve(fut: asyncio.Future[None]) -> None:
    # The task may have been cancelled meanwhile, cancelling its future: not an error, the
    # claim protocol already decided who owns the outcome.
    if not fut.done():
        fut.set_result(None)


class AsyncWaiter(Waiter):
    """A waiter whose owner is an asyncio task on ``loop`` (any thread may wake it)."""

    __slots__ = ("fut", "loop")

    def __init__(self, loop: AbstractEventLoop) -> None:
        # inline of corral._core.waiter.Waiter.__init__: this runs once per blocking operation.
        self._claim = threading.Lock()
        self.done = False
        self.index = 0
        self.value = None
        self.error = None
        self.entries = ()
        self.item = None
        self.owner = None
        self.loop = loop
        self.fut: asyncio.Future[None] = loop.create_future()

    def complete(self, index: int, value: Any) -> bool:
        # inline of corral._core.waiter.Waiter.complete (with _wake and running_here): this
        # runs once per wake-up of a task.
        claim = self._claim
        claim.acquire()
        if self.done:
            claim.release()
            return False
        self.done = True
        self.index = index
        self.value = value
        claim.release()
        if len(self.entries) == 1:
            self.entries = ()  # see Waiter.complete
        loop = self.loop
        if LOOP_THREAD_ID:  # (running_here, as in _wake)
            try:
                here = loop._thread_id == _get_ident()  # type: ignore[attr-defined]
            except AttributeError:
                here = _get_running_loop() is loop
        else:
            here = _get_running_loop() is loop
        if here:
            fut = self.fut
            if not fut.done():
                fut.set_result(None)
            return True
        try:
            self.loop.call_soon_threadsafe(_resolve, self.fut)
        except RuntimeError:  # the loop is closed: nobody will read value, take it back
            self.value = None
            return False
        return True

    def _wake(self) -> bool:
        # The one asyncio wake-up (``complete`` above is its marked inline).
        if running_here(self.loop):
            _resolve(self.fut)
            return True
        try:
            self.loop.call_soon_threadsafe(_resolve, self.fut)
        except RuntimeError:  # the loop is closed: its task will never run again
            return False
        return True


class ThreadWaiter(Waiter):
    """A waiter whose owner is a blocked thread, parked on a pre-acquired lock."""

    __slots__ = ("_parker",)

    def __init__(self) -> None:
        super().__init__()
        self._parker = threading.Lock()
        self._parker.acquire()

    def _wake(self) -> bool:
        self._parker.release()
        return True

    def park(self, timeout: float | None) -> bool:
        """Block until woken (``True``) or until ``timeout`` seconds pass (``False``)."""
        return self._parker.acquire(timeout=-1 if timeout is None else max(timeout, 0.0))


WaiterFactory = Callable[[], Waiter]
