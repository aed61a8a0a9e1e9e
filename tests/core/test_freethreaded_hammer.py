"""Hammer tests for running without a GIL (free-threaded CPython, 3.13t).

On a free-threaded build, threads run Python code truly in parallel, so a read-then-write
pair that the GIL made unlikely to interleave (never impossible: it could switch between
any two bytecodes) now interleaves freely. These tests hammer the places that
docs/design.md ("Running without the GIL") lists, and check the invariants with
independent bookkeeping, never with corral's own statistics alone:

* items: every item sent is received exactly once (0 lost, 0 duplicated), with threads
  and tasks on two event loops (each in its own thread) on one channel, timeouts and
  ``select`` included;
* semaphore: the permits held at once, counted by the holders themselves under a lock of
  the test's own, never exceed the size;
* SingleFlight: one execution per flight: never two executions of one key at once (no
  caller ever leaves, so no flight is abandoned and legitimately restarted), and every
  caller gets the value of an execution of its key;
* Group: a threads.Group fed from many threads runs every job once, at most ``limit`` at
  a time;
* views: ``as_threads()`` / ``as_async()`` raced from many threads hand out one view.

They also run (as every hammer test does) on GIL builds, where they are weaker. The seed
is printed; ``CORRAL_SEED=<seed>`` replays a run's plan. ``CORRAL_STRESS=1``: ten times
the rounds.
"""

from __future__ import annotations

import asyncio
import random
import sys
import threading
from collections import Counter
from typing import Any

import pytest

import corral
import corral.testing
import corral.threads

from .flavours import STRESS, hammer_rng_fixture

pytestmark = [pytest.mark.hammer, pytest.mark.timeout(300)]

__all__ = ["hammer_rng_fixture"]  # the fixture, re-exported for pytest

FREE_THREADED = not getattr(sys, "_is_gil_enabled", lambda: True)()
THREADS = 4


def _loop_thread() -> tuple[asyncio.AbstractEventLoop, threading.Thread]:
    loop = asyncio.new_event_loop()
    t = threading.Thread(target=loop.run_forever, name="hammer-loop", daemon=True)
    t.start()
    return loop, t


def _stop_loop(loop: asyncio.AbstractEventLoop, t: threading.Thread) -> None:
    loop.call_soon_threadsafe(loop.stop)
    t.join(30)
    loop.close()


# -- views -------------------------------------------------------------------------------------


def test_views_raced_from_many_threads_are_one_view(hammer_rng: random.Random) -> None:
    rounds = 3000 * STRESS
    makers = [
        lambda: corral.Channel(1),
        lambda: corral.Semaphore(2),
        lambda: corral.SingleFlight(),
    ]
    objs = [makers[hammer_rng.randrange(len(makers))]() for _ in range(rounds)]
    # Each thread keeps what it got (a view lives only while someone holds it), then every
    # thread must have got the same view object of each state.
    held: list[list[Any]] = [[] for _ in range(THREADS)]

    def holder(i: int) -> None:
        for o in objs:
            held[i].append(o.as_threads())

    corral.testing.hammer(*[lambda i=i: holder(i) for i in range(THREADS)])
    for k in range(rounds):
        views = {id(held[i][k]) for i in range(THREADS)}
        assert len(views) == 1, f"object {k}: {len(views)} different thread views"
        assert held[0][k].as_async() is objs[k]


# -- channel: item conservation ----------------------------------------------------------------


def test_channel_items_conserved_across_threads_and_loops(hammer_rng: random.Random) -> None:
    per_producer = 2000 * STRESS
    producers = 3
    cap = hammer_rng.choice([0, 1, 16, 128])
    seed = hammer_rng.randrange(2**32)
    print(f"capacity {cap}, plan seed {seed}")
    ach: corral.Channel[int] = corral.Channel(cap)
    tch = ach.as_threads()
    sent: list[list[int]] = [[] for _ in range(producers)]
    got: list[list[int]] = []
    got_lock = threading.Lock()
    left = [producers]

    def producer(p: int) -> None:
        rng = random.Random(seed + p)
        out = sent[p]
        for k in range(per_producer):
            item = p * 10**9 + k
            try:
                if rng.random() < 0.1:
                    tch.send(item, timeout=rng.choice([0, 1e-4]))
                else:
                    tch.send(item)
            except corral.DeadlineExceeded:
                continue  # not sent: it must never be received
            out.append(item)
        with got_lock:
            left[0] -= 1
            last = left[0] == 0
        if last:
            tch.close()

    def thread_consumer(c: int) -> None:
        rng = random.Random(seed + 100 + c)
        mine = []
        other: corral.threads.Channel[int] = corral.threads.Channel(0)  # never ready
        while True:
            try:
                r = rng.random()
                if r < 0.1:
                    mine.append(tch.recv(timeout=rng.choice([0, 1e-4])))
                elif r < 0.2:
                    sel = corral.threads.select(
                        tch.recv_case(), other.recv_case(), timeout=rng.choice([0, 1e-4])
                    )
                    if not sel.ok:
                        break
                    mine.append(sel.value)
                else:
                    mine.append(tch.recv())
            except corral.DeadlineExceeded:
                continue
            except corral.EndOfChannel:
                break
        with got_lock:
            got.append(mine)

    async def task_consumer(c: int) -> list[int]:
        rng = random.Random(seed + 200 + c)
        mine = []
        while True:
            try:
                if rng.random() < 0.1:
                    mine.append(await ach.recv(timeout=rng.choice([0, 1e-4])))
                else:
                    mine.append(await ach.recv())
            except corral.DeadlineExceeded:
                continue
            except corral.EndOfChannel:
                return mine

    loops = [_loop_thread() for _ in range(2)]
    try:
        futs = [
            asyncio.run_coroutine_threadsafe(task_consumer(i * 10 + j), loop)
            for i, (loop, _) in enumerate(loops)
            for j in range(2)
        ]
        corral.testing.hammer(
            *[lambda p=p: producer(p) for p in range(producers)],
            *[lambda c=c: thread_consumer(c) for c in range(2)],
        )
        got.extend(f.result(60) for f in futs)
    finally:
        for loop, t in loops:
            _stop_loop(loop, t)
    want = Counter(x for s in sent for x in s)
    have = Counter(x for g in got for x in g)
    lost = want - have
    dup_or_unsent = have - want
    assert not lost, f"{sum(lost.values())} item(s) lost, e.g. {list(lost)[:5]}"
    assert not dup_or_unsent, (
        f"{sum(dup_or_unsent.values())} item(s) duplicated or never sent, "
        f"e.g. {list(dup_or_unsent)[:5]}"
    )
    assert sum(want.values()) > 0
    assert ach.statistics().waiting_receivers == 0


# -- semaphore: held <= size by an independent counter ----------------------------------------


def test_semaphore_never_over_granted(hammer_rng: random.Random) -> None:
    size = hammer_rng.choice([1, 3, 8])
    rounds = 1500 * STRESS
    seed = hammer_rng.randrange(2**32)
    print(f"size {size}, plan seed {seed}")
    asem = corral.Semaphore(size)
    tsem = asem.as_threads()
    lock = threading.Lock()
    state = {"held": 0, "max": 0, "acquired": 0}

    def enter(n: int) -> None:
        with lock:
            state["held"] += n
            state["acquired"] += 1
            state["max"] = max(state["max"], state["held"])

    def leave(n: int) -> None:
        with lock:
            state["held"] -= n

    def thread_worker(i: int) -> None:
        rng = random.Random(seed + i)
        for _ in range(rounds):
            n = rng.randint(1, size)
            try:
                if rng.random() < 0.15:
                    held = tsem.acquire(n, timeout=rng.choice([0, 1e-4]))
                else:
                    held = tsem.acquire(n)
            except corral.DeadlineExceeded:
                continue
            with held:
                enter(n)
                leave(n)

    async def task_worker(i: int) -> None:
        rng = random.Random(seed + 100 + i)
        for _ in range(rounds // 2):
            n = rng.randint(1, size)
            try:
                if rng.random() < 0.15:
                    await asem.acquire(n, timeout=rng.choice([0, 1e-4]))
                else:
                    await asem.acquire(n)
            except corral.DeadlineExceeded:
                continue
            enter(n)
            if rng.random() < 0.3:
                await asyncio.sleep(0)  # hold it across a suspension
            leave(n)
            asem.release(n)

    async def tasks(base: int) -> None:
        await asyncio.gather(*(task_worker(base + k) for k in range(3)))

    corral.testing.hammer(
        *[lambda i=i: thread_worker(i) for i in range(THREADS)],
        lambda: asyncio.run(tasks(10)),
        lambda: asyncio.run(tasks(20)),
    )
    assert state["max"] <= size, f"{state['max']} permits held at once, size {size}"
    assert state["held"] == 0
    assert state["acquired"] > 0
    stats = asem.statistics()
    assert (stats.held, stats.waiting) == (0, 0)


# -- SingleFlight: one execution per flight ----------------------------------------------------


def test_singleflight_one_execution_per_flight(hammer_rng: random.Random) -> None:
    keys = 3
    rounds = 1000 * STRESS
    seed = hammer_rng.randrange(2**32)
    print(f"plan seed {seed}")
    sf: corral.SingleFlight[int, tuple[int, int]] = corral.SingleFlight()
    tsf = sf.as_threads()
    lock = threading.Lock()
    running = [0] * keys
    overlaps: list[str] = []
    executions: list[tuple[int, int]] = []

    def load(k: int) -> tuple[int, int]:
        with lock:
            running[k] += 1
            if running[k] > 1:
                overlaps.append(f"key {k}: {running[k]} executions at once")
            execution = len(executions)
            executions.append((k, execution))
        # Some pure-Python work, so that callers overlap the execution and join it.
        x = 0
        for i in range(200):
            x += i
        with lock:
            running[k] -= 1
        return k, execution

    async def aload(k: int) -> tuple[int, int]:
        await asyncio.sleep(0)
        return load(k)

    def check(k: int, v: tuple[int, int], bad: list[str]) -> None:
        if v[0] != k or executions[v[1]] != v:
            bad.append(f"key {k} got {v!r}")

    def thread_worker(i: int) -> list[str]:
        rng = random.Random(seed + i)
        bad: list[str] = []
        for _ in range(rounds):
            k = rng.randrange(keys)
            check(k, tsf.do(k, load if rng.random() < 0.7 else aload, k), bad)
        return bad

    def task_worker(i: int) -> list[str]:
        async def main() -> list[str]:
            rng = random.Random(seed + 100 + i)
            bad: list[str] = []

            async def one() -> None:
                for _ in range(rounds // 4):
                    k = rng.randrange(keys)
                    check(k, await sf.do(k, aload if rng.random() < 0.7 else load, k), bad)

            await asyncio.gather(*(one() for _ in range(4)))
            return bad

        return asyncio.run(main())

    results = corral.testing.hammer(
        *[lambda i=i: thread_worker(i) for i in range(THREADS)],
        *[lambda i=i: task_worker(10 + i) for i in range(2)],
    )
    assert overlaps == []
    assert [b for r in results for b in r] == []
    stats = sf.statistics()
    assert stats.started == len(executions), "a flight ran fn other than exactly once"
    assert (stats.in_flight, stats.waiters) == (0, 0)
    callers = THREADS * rounds + 2 * 4 * (rounds // 4)
    assert stats.started + stats.joined == callers


# -- threads.Group fed from many threads -------------------------------------------------------


def test_thread_group_fed_from_many_threads(hammer_rng: random.Random) -> None:
    limit = hammer_rng.choice([1, 2, 4])
    jobs_per_thread = 500 * STRESS
    print(f"limit {limit}")
    lock = threading.Lock()
    state = {"running": 0, "max": 0}
    ran: list[int] = []

    def job(j: int) -> int:
        with lock:
            state["running"] += 1
            state["max"] = max(state["max"], state["running"])
            ran.append(j)
        with lock:
            state["running"] -= 1
        return j * 2

    with corral.threads.Group(limit=limit) as g:

        def submitter(i: int) -> list[Any]:
            return [g.go(job, i * 10**6 + k) for k in range(jobs_per_thread)]

        futs = corral.testing.hammer(*[lambda i=i: submitter(i) for i in range(THREADS)])
    submitted = [i * 10**6 + k for i in range(THREADS) for k in range(jobs_per_thread)]
    assert sorted(ran) == submitted, "a job ran twice or never"
    assert [f.result() for fs in futs for f in fs] == [j * 2 for j in submitted]
    assert state["max"] <= limit
