"""Hammer: many threads and tasks on one SingleFlight, callers leaving at random.

Invariants checked after the join: every caller got its key's value or left with a
timeout; no key is stuck in the table; nothing waits. ``CORRAL_STRESS=1`` runs longer.
"""

from __future__ import annotations

import asyncio
import os
import random
import threading

import pytest

import corral
import corral.testing

pytestmark = [pytest.mark.hammer, pytest.mark.timeout(300)]

STRESS = os.environ.get("CORRAL_STRESS") == "1"
ROUNDS = 2000 if STRESS else 200


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_threads_and_tasks_hammer_one_singleflight(seed: int) -> None:
    print(f"seed={seed}")
    sf: corral.SingleFlight[int, str] = corral.SingleFlight()
    tsf = sf.as_threads()
    keys = range(3)
    calls = [0] * len(keys)
    lock = threading.Lock()

    def load(k: int) -> str:
        with lock:
            calls[k] += 1
        return f"v{k}"

    async def aload(k: int) -> str:
        await asyncio.sleep(0)
        return load(k)

    def thread_worker(wid: int) -> list[str]:
        rng = random.Random(seed * 1000 + wid)
        bad = []
        for _ in range(ROUNDS):
            k = rng.choice(keys)
            fn = load if rng.random() < 0.5 else aload
            timeout = 0 if rng.random() < 0.2 else None
            try:
                v = tsf.do(k, fn, k, timeout=timeout)
            except corral.DeadlineExceeded:
                continue
            if v != f"v{k}":
                bad.append(f"key {k} got {v!r}")
        return bad

    def task_worker(wid: int) -> list[str]:
        async def main() -> list[str]:
            rng = random.Random(seed * 1000 + wid)
            bad = []
            for _ in range(ROUNDS):
                k = rng.choice(keys)
                fn = load if rng.random() < 0.3 else aload
                timeout = 0 if rng.random() < 0.2 else None
                try:
                    v = await sf.do(k, fn, k, timeout=timeout)
                except corral.DeadlineExceeded:
                    continue
                if v != f"v{k}":
                    bad.append(f"key {k} got {v!r}")
            return bad

        return asyncio.run(main())

    results = corral.testing.hammer(
        *[lambda i=i: thread_worker(i) for i in range(4)],
        *[lambda i=i: task_worker(100 + i) for i in range(2)],
    )
    assert [b for r in results for b in r] == []
    stats = sf.statistics()
    assert (stats.in_flight, stats.waiters) == (0, 0), stats
    assert stats.started + stats.joined <= 6 * ROUNDS
    assert sum(calls) <= stats.started
