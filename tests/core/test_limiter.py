"""The limiters' shared FIFO base (``_core/limiter.py``) and the copy of its grant loop
that ``SemaphoreState`` keeps for speed (marked ``# inline of
corral._core.limiter.FifoLimiter._grant_locked``).

The copy and the original are driven through the same generated operation sequences:
plain acquires of random weights, releases, waiters that time out or are cancelled
(stale heads, unlinks), and joint acquires with a second semaphore (a joint entry at the
head stops the loop). Every grant, every permit count and every queue must agree.
"""

from __future__ import annotations

import random

import pytest

from corral._core.joint import joint_acquire
from corral._core.limiter import FifoLimiter
from corral._core.semaphore import SemaphoreState
from corral._core.waiter import Waiter


class Parked(Waiter):
    """A waiter nobody blocks on: the test reads ``done`` / ``error``."""

    __slots__ = ()

    def _wake(self) -> bool:
        return True


class OriginalLoop(SemaphoreState):
    """A semaphore that runs the base's grant loop rather than its own inline copy."""

    __slots__ = ()
    _grant_locked = FifoLimiter._grant_locked  # type: ignore[assignment]


def test_the_inline_is_a_copy_of_the_base_loop() -> None:
    assert SemaphoreState._grant_locked is not FifoLimiter._grant_locked
    assert OriginalLoop._grant_locked is FifoLimiter._grant_locked


@pytest.mark.parametrize("seed", range(20))
def test_the_semaphore_grant_loop_inline_agrees_with_the_base(seed: int) -> None:
    rng = random.Random(seed)
    print(f"seed={seed}")
    size = rng.choice([1, 3, 5])
    sides = []
    for cls in (SemaphoreState, OriginalLoop):
        st, other = cls(size), cls(size)
        sides.append((st, other, []))  # (state, the joint's second semaphore, waiters)
    asked: list[tuple[bool, int]] = []  # per acquire: (joint?, weight), the same on both
    held: list[int] = []  # acquires granted and not released yet (indices into asked)
    seen: set[int] = set()
    for step in range(300):
        op = rng.random()
        n = rng.randint(0, size)
        pick = rng.random()
        outcomes = []
        for st, other, waiters in sides:
            if op < 0.45:
                if op < 0.35:
                    w = st.acquire(n, Parked)
                else:
                    parts = sorted([(st, n), (other, 1)], key=lambda p: id(p[0]))
                    w = joint_acquire(parts, Parked)
                waiters.append(w)
                outcomes.append(w is None)
            elif op < 0.75 and held:
                joint, k = asked[held[int(pick * len(held))]]
                st.release(k)
                if joint:
                    other.release(1)
            elif op < 0.85 and waiters:
                w = waiters[int(pick * len(waiters))]
                if w is not None and w.abort(RuntimeError("gone"), wake=False):
                    w.unlink()  # a timed-out or cancelled waiter leaves
        assert outcomes[:1] == outcomes[1:], (step, outcomes)
        if op < 0.45:
            asked.append((op >= 0.35, n))
        elif op < 0.75 and held:
            held.pop(int(pick * len(held)))
        (a, a2, wa), (b, b2, wb) = sides
        granted = [w is None or (w.done and w.error is None) for w in wa]
        # Same grants, in the same order; same permits; same queues.
        assert granted == [w is None or (w.done and w.error is None) for w in wb], step
        assert (a.cur, a2.cur) == (b.cur, b2.cur), step
        assert [e.item for e in a.waiters] == [e.item for e in b.waiters], step
        assert [e.item for e in a2.waiters] == [e.item for e in b2.waiters], step
        for i, g in enumerate(granted):
            if g and i not in seen:
                seen.add(i)
                held.append(i)
    assert len(seen) > 30
    for _, _, waiters in sides:  # leave nothing queued
        for w in waiters:
            if w is not None and w.abort(RuntimeError("end"), wake=False):
                w.unlink()
