"""Fairness: the weighted semaphore is strictly FIFO; select picks uniformly among ready cases.

* Semaphore: waiters with random weights queue in a known order; permits come back in
  random amounts; after each release, the set of waiters granted must be exactly the
  model's: the longest prefix of the queue that fits, stopping at the first that does not
  (head-of-line blocking, no barging). Which waiters were granted by one release is
  observable (they all report before the next release); the order *within* one release is
  the queue order by definition.
* select: Go's TestSelectFairness — two always-ready channels and two never-ready ones,
  10 000 selects; each ready case must be chosen within 10 standard deviations of half the
  time. Also 3- and 4-way. Seeded through ``corral.testing.seed_select`` (seed printed).
"""

from __future__ import annotations

import asyncio
import math
import random
import threading
import time

import pytest

import corral
import corral.testing as ct
import corral.threads
from corral.testing import Schedule

from . import figures

pytestmark = pytest.mark.timeout(figures.TIMEOUT)


def _model_batch(queue: list[tuple[int, int]], free: int) -> list[int]:
    """The waiters a FIFO, head-of-line-blocking semaphore grants with ``free`` permits."""
    batch = []
    for who, n in queue:
        if n > free:
            break
        free -= n
        batch.append(who)
    return batch


def _plan(rng: random.Random) -> tuple[int, list[int]]:
    # Weight 0 is left to the model tests: with nobody queued it is granted at once.
    size = rng.randint(1, 6)
    return size, [rng.randint(1, size) for _ in range(rng.randint(3, 10))]


async def _fifo_scenario(sched: Schedule) -> int:
    rng = sched.rng
    size, weights = _plan(rng)
    sem = corral.Semaphore(size)
    await sem.acquire(size)  # hold everything: every waiter queues
    held = size
    queue: list[tuple[int, int]] = []
    granted: list[int] = []

    async def waiter(who: int, n: int) -> None:
        queue.append((who, n))  # same step as the acquire call: the queue order
        await sem.acquire(n)
        granted.append(who)

    tasks = [asyncio.create_task(waiter(i, n)) for i, n in enumerate(weights)]
    while sem.statistics().waiting + len(granted) < len(weights):
        await asyncio.sleep(0)  # until every waiter has queued
    checked = 0
    holders: list[int] = []  # permits held by granted waiters, released in random order
    while queue:
        if held and (not holders or rng.random() < 0.5):
            n = rng.randint(1, held)
            held -= n
            sem.release(n)
        else:
            sem.release(holders.pop(rng.randrange(len(holders))))
        free = size - held - sum(holders)
        want = _model_batch(queue, free)
        before = len(granted)
        while len(granted) < before + len(want):
            await asyncio.sleep(0)
        for _ in range(3):  # and nobody else sneaks in
            await asyncio.sleep(0)
        got = granted[before:]
        assert sorted(got) == sorted(want), (
            f"queue {queue}, {free} free: granted {got}, model {want}"
        )
        holders += [dict(queue)[who] for who in want]
        queue = [q for q in queue if q[0] not in want]
        checked += len(want)
    await asyncio.gather(*tasks)
    sem.release(held + sum(holders))
    return checked


def test_semaphore_is_strictly_fifo_for_tasks() -> None:
    seeds = figures.count(300, quick=60, stress=5000)
    grants = [0]

    async def counted(sched: Schedule) -> int:
        n = await _fifo_scenario(sched)
        grants[0] += n
        return n

    counted.__qualname__ = _fifo_scenario.__qualname__
    report = ct.explore(counted, seeds=range(seeds))
    figures.record(
        "fairness",
        "Semaphore strict FIFO, tasks",
        f"{grants[0]} grants over {report.runs} schedules, 0 out of order",
    )


def test_semaphore_is_strictly_fifo_for_threads() -> None:
    trials = figures.count(40, quick=10, stress=400)
    base = random.randrange(10**6)
    print(f"semaphore FIFO threads: seeds {base}..{base + trials - 1}")
    grants = 0
    for t in range(trials):
        try:
            grants += _fifo_threads(random.Random(base + t))
        except BaseException as exc:
            exc.add_note(f"seed {base + t}")
            raise
    figures.record(
        "fairness",
        "Semaphore strict FIFO, threads",
        f"{grants} grants over {trials} runs, 0 out of order",
    )


def _wait_for(cond: object, what: str) -> None:
    assert callable(cond)
    deadline = time.monotonic() + 10
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.0002)


def _fifo_threads(rng: random.Random) -> int:
    size, weights = _plan(rng)
    sem = corral.threads.Semaphore(size)
    sem.acquire(size)
    held = size
    queue: list[tuple[int, int]] = []
    granted: list[int] = []
    lock = threading.Lock()

    def waiter(who: int, n: int) -> None:
        sem.acquire(n)
        with lock:
            granted.append(who)

    threads = []
    try:
        for who, n in enumerate(weights):
            # daemon: a failed run leaves waiters parked, which must not hang the exit
            t = threading.Thread(target=waiter, args=(who, n), daemon=True)
            t.start()
            threads.append(t)
            queue.append((who, n))
            k = len(queue)
            _wait_for(lambda k=k: sem.statistics().waiting == k, "the thread to queue")
        checked = 0
        holders: list[int] = []
        while queue:
            # Counted before the release: a woken thread may append at once (in parallel,
            # without a GIL), before this thread would get to count.
            before = len(granted)
            if held and (not holders or rng.random() < 0.5):
                n = rng.randint(1, held)
                held -= n
                sem.release(n)
            else:
                sem.release(holders.pop(rng.randrange(len(holders))))
            free = size - held - sum(holders)
            want = _model_batch(queue, free)
            _wait_for(lambda b=before, w=want: len(granted) >= b + len(w), "the grants")
            st = sem.statistics()
            assert st.waiting == len(queue) - len(want), (st, queue, want)
            with lock:
                got = granted[before:]
            assert sorted(got) == sorted(want), (
                f"queue {queue}, {free} free: granted {got}, model {want}"
            )
            holders += [dict(queue)[w] for w in want]
            queue = [q for q in queue if q[0] not in want]
            checked += len(want)
    finally:
        for t in threads:
            t.join(10)
    sem.release(held + sum(holders))
    return checked


# --- select fairness -------------------------------------------------------------------------

TRIALS = 10_000


def _within_10_sigma(counts: list[int], trials: int) -> tuple[bool, float]:
    """Go's bound: each ready case's count within 10 sigma of a fair binomial."""
    k = len(counts)
    p = 1 / k
    sigma = math.sqrt(trials * p * (1 - p))
    worst = max(abs(c - trials * p) / sigma for c in counts)
    return worst <= 10, worst


@pytest.mark.parametrize("ready", [2, 3, 4])
@pytest.mark.parametrize("flavour", ["aio", "threads"])
def test_select_is_fair_within_go_10_sigma_bound(flavour: str, ready: int) -> None:
    seed = random.randrange(10**6)
    print(f"select fairness: seed_select({seed})")
    counts = [0] * ready
    if flavour == "aio":

        async def run() -> None:
            chans = [corral.Channel(TRIALS) for _ in range(ready)]
            never = [corral.Channel(0), corral.Channel(0)]
            for c in chans:
                for _ in range(TRIALS):
                    c.send_nowait(1)
            cases = [never[0].recv_case(), never[1].recv_case()]
            cases += [c.recv_case() for c in chans]
            for _ in range(TRIALS):
                s = await corral.select(*cases)
                counts[s.index - 2] += 1

        with ct.seed_select(seed):
            asyncio.run(run())
    else:
        tchans = [corral.threads.Channel(TRIALS) for _ in range(ready)]
        tnever = [corral.threads.Channel(0), corral.threads.Channel(0)]
        for tc in tchans:
            for _ in range(TRIALS):
                tc.send_nowait(1)
        tcases = [tnever[0].recv_case(), tnever[1].recv_case()]
        tcases += [tc.recv_case() for tc in tchans]
        with ct.seed_select(seed):
            for _ in range(TRIALS):
                s = corral.threads.select(*tcases)
                counts[s.index - 2] += 1
    ok, worst = _within_10_sigma(counts, TRIALS)
    figures.record(
        "fairness",
        f"select among {ready} ready cases, {flavour}",
        f"{TRIALS} selects: {counts}, worst {worst:.1f} sigma",
        "<= 10 sigma (Go)",
        ok,
    )
    assert ok, f"unfair select (seed {seed}): {counts}"
