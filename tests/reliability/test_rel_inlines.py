"""Copies kept for speed behave exactly as their originals (issue 17: one rule, one place).

Each ``# inline of <original>`` in the semaphore and rate-limit shells is driven here, beside
a twin built only from the originals, through the same generated operation sequences
(acquires of several weights, with and without a timeout, holds, releases) under the same
seeded schedule, cancelled at every step. The two runs must leave the same trace: who was
granted what, in which order, who raised what, and the statistics after each event. A copy
that drifts from its original (say, a park() copy that forgets the owed cancellation, as
``SingleFlight.do``'s once did) fails here the way a stale generated twin fails ``--check``.

Copies covered:

* ``corral._aio.semaphore._granted``: inline of ``corral._aio.wait.park``;
* ``corral._aio.semaphore.Semaphore.acquire``: inline of ``SemaphoreState.try_acquire``;
* ``corral._aio.semaphore._Acquire.__await__``: inline of ``SemaphoreState.acquire``;
* ``corral._shells.SemaphoreBase.release``: inline of ``SemaphoreState.release``;
* ``corral._aio.ratelimit.RateLimit.acquire``: inline of ``RateLimitState._try_take_locked``.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import corral
import corral.testing as ct
from corral._aio.ratelimit import _acquire as rate_original
from corral._aio.semaphore import _acquire as sem_original
from corral.testing import Schedule

from . import figures

pytestmark = pytest.mark.timeout(figures.TIMEOUT)

SEEDS = figures.count(4, quick=2, stress=30)

Plan = list[tuple[str, list[tuple[int, float | None, int]]]]


def _plan(seed: int, size: int) -> Plan:
    """Per task: a list of (weight, timeout or None, steps held)."""
    rng = random.Random(seed)
    return [
        (
            f"t{i}",
            [
                (rng.randint(1, size), rng.choice([None, None, 0.5, 2.0]), rng.randint(0, 2))
                for _ in range(rng.randint(1, 3))
            ],
        )
        for i in range(4)
    ]


def semaphore_twin(impl: str, plan_seed: int) -> Callable[[Schedule], Awaitable[list[Any]]]:
    async def scenario(sched: Schedule) -> list[Any]:
        sem = corral.Semaphore(3)
        st = sem._st
        trace: list[Any] = []

        def note(*event: Any) -> None:
            s = sem.statistics()
            trace.append((*event, s.held, s.waiting, s.waiting_weight))

        async def acquire(n: int, timeout: float | None) -> None:
            if impl == "copy":
                await sem.acquire(n, timeout=timeout)
            else:
                await sem_original(st, n, timeout, None)

        def release(n: int) -> None:
            if impl == "copy":
                sem.release(n)
            else:
                st.release(n)

        async def user(name: str, ops: list[tuple[int, float | None, int]]) -> None:
            for n, timeout, hold in ops:
                note(name, "asks", n, timeout)
                try:
                    await acquire(n, timeout)
                except BaseException as exc:
                    note(name, "raised", type(exc).__name__)
                    raise
                note(name, "got", n)
                try:
                    for _ in range(hold):
                        await asyncio.sleep(0.25)
                finally:
                    release(n)
                    note(name, "released", n)

        tasks = [asyncio.create_task(user(name, ops)) for name, ops in _plan(plan_seed, 3)]
        sched.cancel_target(*tasks)
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        trace.append(tuple(type(o).__name__ for o in outcomes))
        return trace

    scenario.__qualname__ = f"semaphore_twin({impl!r}, plan={plan_seed})"
    return scenario


def rate_twin(impl: str, plan_seed: int) -> Callable[[Schedule], Awaitable[list[Any]]]:
    async def scenario(sched: Schedule) -> list[Any]:
        clock = ct.ManualClock()
        rl = corral.RateLimit(4, per=1.0, burst=3, clock=clock)
        st = rl._st
        trace: list[Any] = []

        def note(*event: Any) -> None:
            s = rl.statistics()
            trace.append((*event, s.granted, s.waiting))

        async def user(name: str, ops: list[tuple[int, float | None, int]]) -> None:
            for c, timeout, pause in ops:
                note(name, "asks", c, timeout)
                try:
                    if impl == "copy":
                        await rl.acquire(c, timeout=timeout)
                    else:
                        await rate_original(st, c, timeout, None)
                except BaseException as exc:
                    note(name, "raised", type(exc).__name__)
                    raise
                note(name, "got", c)
                for _ in range(pause):
                    await asyncio.sleep(0)

        tasks = [asyncio.create_task(user(name, ops)) for name, ops in _plan(plan_seed, 3)]
        sched.cancel_target(*tasks)

        async def ticker() -> None:
            while not all(t.done() for t in tasks):
                clock.advance(0.125)
                await asyncio.sleep(0)

        await ticker()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        trace.append(tuple(type(o).__name__ for o in outcomes))
        return trace

    scenario.__qualname__ = f"rate_twin({impl!r}, plan={plan_seed})"
    return scenario


TWINS = {"semaphore": semaphore_twin, "rate limit": rate_twin}


@pytest.mark.parametrize("what", list(TWINS))
def test_inlined_copies_leave_the_same_trace_as_their_originals(what: str) -> None:
    make = TWINS[what]
    compared = 0
    for plan_seed in range(3):
        for seed in range(SEEDS):
            base = ct.run_schedule(make("original", plan_seed), seed)
            twin = ct.run_schedule(make("copy", plan_seed), seed)
            assert twin.value == base.value, f"plan {plan_seed}, seed {seed}, no cancellation"
            for k in range(base.steps + 1):
                a = ct.run_schedule(make("original", plan_seed), seed, cancel_at=k)
                b = ct.run_schedule(make("copy", plan_seed), seed, cancel_at=k)
                assert b.value == a.value, (
                    f"{what}: the inline copy drifted from its original "
                    f"(plan {plan_seed}, seed {seed}, cancelled at step {k}):\n"
                    f"original: {a.value}\ncopy:     {b.value}"
                )
                compared += 1
    figures.record(
        "inline copies",
        f"{what}: copies vs originals, same schedules, cancelled at every step",
        f"{compared} runs, 0 differences",
    )


def test_the_twin_check_catches_a_drifted_park_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutation check: a park() copy that keeps the permits of an acquire granted after
    its task was cancelled (instead of giving them back) must be caught."""
    import corral._aio.semaphore as sem_mod
    from corral._core.waiter import AsyncWaiter

    def drifted(w: AsyncWaiter, st: Any, n: int) -> Any:
        try:
            yield from w.fut
        except asyncio.CancelledError:
            if w.abort(asyncio.CancelledError(), wake=False) or w.error is not None:
                w.unlink()
                raise

    monkeypatch.setattr(sem_mod, "_granted", drifted)
    with pytest.raises(AssertionError, match=r"drifted|permit"):
        for plan_seed in range(3):
            for seed in range(SEEDS):
                base = ct.run_schedule(semaphore_twin("original", plan_seed), seed)
                for k in range(base.steps + 1):
                    a = ct.run_schedule(semaphore_twin("original", plan_seed), seed, cancel_at=k)
                    b = ct.run_schedule(semaphore_twin("copy", plan_seed), seed, cancel_at=k)
                    assert b.value == a.value, "drifted"
