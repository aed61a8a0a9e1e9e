"""Group and SingleFlight rows.

``group.spawn``: spawn and join ``n`` trivial tasks, ``await g.go(fn)`` in a
``corral.Group`` against ``tg.create_task(fn())`` in an ``asyncio.TaskGroup`` (the same
semantics: structured, first error cancels the rest). Every task counts itself.

``singleflight.10k``: ``n`` concurrent callers of one key; the shared call is held until
every caller has joined (they all start, and join, before the driver yields), so exactly
one call runs and every caller gets its value. Against the PyPI ``singleflight``
package's ``SingleFlightAsync`` (the port users reach for; it shares the result through
an ``asyncio.Event`` and takes an ``asyncio.Lock`` per call).
"""

from __future__ import annotations

import asyncio
import functools
import threading
from typing import Any

from ..harness import Env, Stopwatch, Timing, check
from ..registry import corral_impl, peer_impl, register
from ._common import peer

# -- group.spawn -------------------------------------------------------------------------------


def _group_corral(env: Env, n: int) -> Timing:
    async def main() -> Timing:
        import corral

        done = 0

        async def work() -> None:
            nonlocal done
            done += 1

        sw = Stopwatch()
        async with corral.Group() as g:
            go = g.go
            for _ in range(n):
                await go(work)
        dt = sw.stop()
        check(done == n, f"{done} tasks ran, expected {n}")
        return dt

    return env.run_async(main)


def _group_taskgroup(env: Env, n: int) -> Timing:
    async def main() -> Timing:
        done = 0

        async def work() -> None:
            nonlocal done
            done += 1

        sw = Stopwatch()
        async with asyncio.TaskGroup() as tg:
            create_task = tg.create_task
            for _ in range(n):
                create_task(work())
        dt = sw.stop()
        check(done == n, f"{done} tasks ran, expected {n}")
        return dt

    return env.run_async(main)


register(
    "group.spawn",
    items=100_000,
    quick_items=20_000,
    unit="task",
    note=(
        "spawn + join n trivial tasks: `await g.go(fn)` in a corral.Group vs "
        "`tg.create_task(fn())` in an asyncio.TaskGroup"
    ),
    impls=[
        corral_impl("corral", _group_corral, reference="asyncio.TaskGroup", target=1.1),
        peer_impl("asyncio.TaskGroup", _group_taskgroup),
    ],
)


# -- singleflight.10k ---------------------------------------------------------------------------


def _sf_run(env: Env, n: int, make: Any, call: Any) -> Timing:
    async def main() -> Timing:
        sf = make()
        release = asyncio.Event()
        calls = 0

        async def load() -> str:
            nonlocal calls
            calls += 1
            await release.wait()
            return "value"

        async def releaser() -> None:
            await asyncio.sleep(0)  # every caller task has run its first step: all joined
            release.set()

        sw = Stopwatch()
        results = await asyncio.gather(releaser(), *[call(sf, load) for _ in range(n)])
        dt = sw.stop()
        check(calls == 1, f"{calls} calls of the shared function, expected 1")
        check(results.count("value") == n, "not every caller got the value")
        return dt

    return env.run_async(main)


def _sf_corral(env: Env, n: int) -> Timing:
    import corral

    return _sf_run(env, n, corral.SingleFlight, lambda sf, fn: sf.do("key", fn))


def _sf_pypi(env: Env, n: int) -> Timing:
    single_flight_async = peer("singleflight.asynchronous").SingleFlightAsync
    return _sf_run(env, n, single_flight_async, lambda sf, fn: sf.call(fn, "key"))


register(
    "singleflight.10k",
    items=10_000,
    quick_items=10_000,
    unit="caller",
    note=(
        "n concurrent callers of one key, the call held until all joined: "
        "`await sf.do(key, fn)` vs the PyPI singleflight package's "
        "`await SingleFlightAsync().call(fn, key)`"
    ),
    impls=[
        corral_impl("corral", _sf_corral, reference="singleflight (PyPI)"),
        peer_impl("singleflight (PyPI)", _sf_pypi, requires=["singleflight"]),
    ],
)


# -- group.limit100 ----------------------------------------------------------------------------
# n tasks, at most 100 alive: each yields once (so the limit is really exercised: workers
# overlap and slots are handed from finishing tasks to waiting spawns).

_LIMIT = 100


async def _yield_once(counter: list[int]) -> None:
    await asyncio.sleep(0)
    counter[0] += 1


def _limit_corral(env: Env, n: int) -> Timing:
    async def main() -> Timing:
        import corral

        done = [0]
        sw = Stopwatch()
        async with corral.Group(limit=_LIMIT) as g:
            go = g.go
            for _ in range(n):
                await go(_yield_once, done)
        dt = sw.stop()
        check(done[0] == n, f"{done[0]} tasks ran, expected {n}")
        return dt

    return env.run_async(main)


def _limit_recipe(env: Env, n: int) -> Timing:
    """The hand recipe: a Semaphore taken *before* spawning (so at most 100 tasks exist),
    released by the task, inside an asyncio.TaskGroup."""

    async def main() -> Timing:
        done = [0]
        sem = asyncio.Semaphore(_LIMIT)

        async def work() -> None:
            try:
                await _yield_once(done)
            finally:
                sem.release()

        sw = Stopwatch()
        async with asyncio.TaskGroup() as tg:
            create_task = tg.create_task
            acquire = sem.acquire
            for _ in range(n):
                await acquire()
                create_task(work())
        dt = sw.stop()
        check(done[0] == n, f"{done[0]} tasks ran, expected {n}")
        return dt

    return env.run_async(main)


def _limit_aiometer(env: Env, n: int) -> Timing:
    aiometer = peer("aiometer")

    async def main() -> Timing:
        done = [0]
        jobs = [functools.partial(_yield_once, done)] * n  # run_all needs the list up front
        sw = Stopwatch()
        await aiometer.run_all(jobs, max_at_once=_LIMIT)
        dt = sw.stop()
        check(done[0] == n, f"{done[0]} tasks ran, expected {n}")
        return dt

    return env.run_async(main)


register(
    "group.limit100",
    items=100_000,
    quick_items=20_000,
    unit="task",
    note=(
        "n tasks that each yield once, at most 100 alive: corral.Group(limit=100) vs the "
        "hand recipe (asyncio.Semaphore taken before spawning + asyncio.TaskGroup) and "
        "aiometer.run_all(max_at_once=100)"
    ),
    impls=[
        corral_impl("corral", _limit_corral, reference="Semaphore+TaskGroup", target=1.0),
        peer_impl("Semaphore+TaskGroup", _limit_recipe),
        peer_impl("aiometer.run_all", _limit_aiometer, requires=["aiometer"]),
    ],
)


# -- group.threads -----------------------------------------------------------------------------
# n trivial jobs on 8 threads: corral.threads.Group(limit=8) vs ThreadPoolExecutor(8).

_THREADS = 8


def _threads_corral(env: Env, n: int) -> Timing:
    import corral.threads

    done = [0]
    lock = threading.Lock()

    def work() -> None:
        with lock:
            done[0] += 1

    sw = Stopwatch()
    with corral.threads.Group(limit=_THREADS) as g:
        go = g.go
        for _ in range(n):
            go(work)
    dt = sw.stop()
    check(done[0] == n, f"{done[0]} jobs ran, expected {n}")
    return dt


def _threads_executor(env: Env, n: int) -> Timing:
    from concurrent.futures import ThreadPoolExecutor, wait

    done = [0]
    lock = threading.Lock()

    def work() -> None:
        with lock:
            done[0] += 1

    sw = Stopwatch()
    with ThreadPoolExecutor(_THREADS) as pool:
        submit = pool.submit
        futures = [submit(work) for _ in range(n)]
        wait(futures)
    dt = sw.stop()
    check(done[0] == n, f"{done[0]} jobs ran, expected {n}")
    return dt


register(
    "group.threads",
    items=20_000,
    quick_items=5_000,
    unit="job",
    note=(
        "n trivial jobs on 8 threads: corral.threads.Group(limit=8) `g.go(fn)` (blocks for a "
        "slot: bounded memory) vs ThreadPoolExecutor(8).submit (queues every job up front)"
    ),
    impls=[
        corral_impl("corral.threads", _threads_corral, reference="ThreadPoolExecutor", target=1.2),
        peer_impl("ThreadPoolExecutor", _threads_executor),
    ],
)
