"""Atomic acquisition across several limiters (``Limits``): all grants at once, or none.

A joint acquire of costs ``c_i`` from limiters ``L_i`` (semaphores and rate limits) is one
waiter with one :class:`JointEntry` in *each* limiter's FIFO queue. It is granted only in
a step that holds every ``L_i``'s lock (taken in ``id()`` order, as ``select`` does) and
finds its entry at the head of every queue with its cost available in every limiter; then
all costs are taken together and the waiter is completed once, under the claim protocol.
It never holds a part while waiting for another, so a request holding its RPM slot cannot
sit blocked on TPM (what sequential acquires do).

Who tries: a limiter's grant loop that reaches a joint entry at its head which fits
locally stops there (head-of-line, so nobody behind overtakes it) and returns the joint;
the caller runs :meth:`Joint.attempt` after releasing that limiter's lock (taking the
other locks while holding one would break the ``id()`` order). An attempt that fails
changes nothing: the limiter that said no will retry when it changes (a release, a
refund, a waiter ahead leaving, or its timer for the entry's due time).

Why it cannot deadlock: an enqueue holds all of its limiters' locks, so enqueues are
totally ordered and every queue lists its waiters in that one order. The earliest live
waiter is then at the head of each of its queues and is held back only by capacity or
time, which come back.

Fairness caveat: while a joint entry heads limiter A but waits for limiter B, A's later
waiters wait too, even if A has room for them (the FIFO promise of each limiter, kept:
a joint request is not starved by single-limiter traffic on A). A's room stays idle
meanwhile; that is the price of "waits holding none" with FIFO.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from .waiter import Entry, Waiter, WaiterFactory

__all__ = ["Joint", "JointEntry", "JointLimiter", "joint_acquire", "named_costs", "run_joints"]

K = TypeVar("K")


def named_costs(costs: object, member: Callable[[Any], K | None], what: str) -> dict[K, Any]:
    """A ``Limits``' ``costs=`` argument, checked (the one rule of both ``Limits``, the
    local one and ``corral.redis.Limits``): None, or a mapping of its own limiters to costs.
    ``member(limiter)`` -> the limiter's key in the result, or None if these Limits do not
    hold it. -> {key: the cost as given}; each Limits checks the cost's value itself."""
    if costs is None:
        return {}
    if not isinstance(costs, Mapping):
        raise TypeError(
            f"{what}: costs must be a mapping of limiter to cost, got {type(costs).__name__}"
        )
    given: dict[K, Any] = {}
    for lim, c in costs.items():
        key = member(lim)
        if key is None:
            raise ValueError(f"{what}: costs names {lim!r}, which is not in these Limits")
        given[key] = c
    return given


class JointLimiter(Protocol):
    """What a limiter's core state offers to the joint protocol (all ``*_locked`` calls
    are made with its ``lock`` held)."""

    lock: Any
    waiters: Any

    def can_take_locked(self, c: Any) -> bool: ...
    def take_now_locked(self, c: Any) -> None: ...
    def joint_ready_locked(self, entry: Entry) -> bool: ...
    def joint_take_locked(self, entry: Entry) -> None: ...
    def joint_untake_locked(self, entry: Entry) -> None: ...
    def _grant_locked(self) -> list[Joint] | None: ...
    def abandon(self, c: Any) -> None: ...


class JointEntry(Entry):
    """A joint waiter's entry in one limiter's queue: ``index`` is -1 (the grant loops'
    marker), ``item`` the cost asked of that limiter."""

    __slots__ = ("joint",)

    def __init__(self, waiter: Waiter, cost: Any, owner: Any, joint: Joint) -> None:
        super().__init__(waiter, -1, cost, owner)
        self.joint = joint


class Joint:
    __slots__ = ("entries", "waiter")

    def __init__(self, waiter: Waiter) -> None:
        self.waiter = waiter
        self.entries: list[JointEntry] = []  # in id(owner) order

    def attempt(self) -> list[Joint]:
        """Grant every part at once if all can be; returns joints that may now fit.

        A rate-limit part is handed over (see ``ratelimit``): the waiter's shell charges
        it when the acquire returns, or abandons it.
        """
        entries = self.entries
        states: list[JointLimiter] = [e.owner for e in entries]  # type: ignore[misc]
        for s in states:
            s.lock.acquire()
        try:
            w = self.waiter
            if w.done:
                return []
            for s, e in zip(states, entries, strict=True):
                if not s.joint_ready_locked(e):
                    return []
            for s, e in zip(states, entries, strict=True):
                s.joint_take_locked(e)
            if w.complete(0, None):
                w.entries = ()  # all popped: drop the waiter <-> entry cycle
            else:  # its loop is gone: nobody will use the grant
                for s, e in zip(states, entries, strict=True):
                    s.joint_untake_locked(e)
            # Each limiter's line moves on. A joint that one of them offers is worth an
            # attempt only if every one of *these* limiters it waits in offers it too: one
            # that did not is not ready (full, not due, or someone else at its head), and
            # it will offer the joint itself when that changes.
            offered: dict[Joint, int] = {}
            for s in states:
                if s.waiters:
                    tries = s._grant_locked()
                    if tries:
                        for j in tries:
                            offered[j] = offered.get(j, 0) + 1
            owners: list[object] = list(states)
            return [j for j, k in offered.items() if k == sum(e.owner in owners for e in j.entries)]
        finally:
            for s in reversed(states):
                s.lock.release()


def run_joints(tries: list[Joint]) -> None:
    """Attempt each joint grant (and those that a grant lets through), with no lock held."""
    while tries:
        more = tries.pop().attempt()
        if more:
            tries.extend(more)


def joint_acquire(
    parts: Sequence[tuple[JointLimiter, Any]], make_waiter: WaiterFactory
) -> Waiter | None:
    """Take every ``(state, cost)`` part now (``None``) or queue one joint waiter in all.

    ``parts`` must be in ``id(state)`` order, one per state.
    """
    states = [s for s, _ in parts]
    for s in states:
        s.lock.acquire()
    tries: list[Joint] = []
    try:
        if all(s.can_take_locked(c) for s, c in parts):
            for s, c in parts:
                s.take_now_locked(c)
            return None
        w = make_waiter()
        joint = Joint(w)
        w.entries = entries = []
        for s, c in parts:
            e = JointEntry(w, c, s, joint)
            joint.entries.append(e)
            entries.append(e)
            s.waiters.append(e)
        for s in states:
            # Where it is now the head, the limiter may be able to go ahead (or must arm
            # its timer for the due time): the same question a grant loop asks.
            if s.waiters[0].waiter is w:
                found = s._grant_locked()
                if found:
                    tries.extend(found)
    finally:
        for s in reversed(states):
            s.lock.release()
    if tries:
        run_joints(tries[:1])  # they are all this joint
    return w
