"""Hammer: threads and tasks contending for crossing Limits (two semaphores and a rate
limit on a manual clock that a ticker thread advances), with timeouts mixed in. Nothing
may exceed a limit, deadlock, or be left held or queued."""

from __future__ import annotations

import asyncio
import random
import threading
from typing import Any

import pytest

import corral
import corral.testing as ct
import corral.threads

from .flavours import hammer_rng_fixture  # noqa: F401 (fixture)

pytestmark = [pytest.mark.hammer, pytest.mark.timeout(120)]


def test_crossing_joint_acquires_from_threads_and_tasks(hammer_rng: random.Random) -> None:
    seed = hammer_rng.randrange(2**32)
    clock = ct.ManualClock()
    a, b = corral.threads.Semaphore(2), corral.threads.Semaphore(3)
    rl = corral.threads.RateLimit(1000, burst=4, clock=clock)
    sets: list[tuple[Any, ...]] = [(a, b), (b, rl), (a, rl), (a, b, rl), (rl,), (a,)]
    held = {id(a): 0, id(b): 0}
    peak = {id(a): 0, id(b): 0}
    lock = threading.Lock()
    finished = threading.Event()
    rounds = 150

    def enter(lims: tuple[Any, ...]) -> None:
        with lock:
            for s in lims:
                if id(s) in held:
                    held[id(s)] += 1
                    peak[id(s)] = max(peak[id(s)], held[id(s)])

    def leave(lims: tuple[Any, ...]) -> None:
        with lock:
            for s in lims:
                if id(s) in held:
                    held[id(s)] -= 1

    def thread_worker(k: int) -> int:
        rng = random.Random(seed + k)
        done = 0
        for _ in range(rounds):
            lims = rng.choice(sets)
            try:
                with corral.threads.Limits(*lims).acquire(timeout=rng.choice([None, 0.001])):
                    enter(lims)
                    leave(lims)
                    done += 1
            except corral.DeadlineExceeded:
                pass
        return done

    def task_worker() -> int:
        async def main() -> int:
            rng = random.Random(seed + 99)
            done = 0

            async def one() -> None:
                nonlocal done
                lims = rng.choice(sets)
                async with corral.Limits(*lims).acquire():
                    enter(lims)
                    await asyncio.sleep(0)
                    leave(lims)
                    done += 1

            for _ in range(rounds // 5):
                await asyncio.gather(*(one() for _ in range(5)))
            return done

        return asyncio.run(main())

    def ticker() -> int:
        ticks = 0
        while not finished.wait(0.0005):  # a polling interval, not synchronization
            clock.advance(0.001)
            ticks += 1
        return ticks

    workers = [lambda k=k: thread_worker(k) for k in range(5)]

    def run_all() -> list[int]:
        try:
            return ct.hammer(*workers, task_worker)
        finally:
            finished.set()

    t = threading.Thread(target=ticker)
    t.start()
    try:
        results = run_all()
    finally:
        finished.set()
        t.join(10)
    assert sum(results) > 0
    assert peak[id(a)] <= 2, peak
    assert peak[id(b)] <= 3, peak
    assert held == {id(a): 0, id(b): 0}
    for s in (a, b):
        st = s.statistics()
        assert (st.held, st.waiting) == (0, 0), st
    assert rl.statistics().waiting == 0
