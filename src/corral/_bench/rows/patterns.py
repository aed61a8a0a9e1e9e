"""fan-out and pipeline rows.

``pipeline.3stage``: ``n`` ints through 3 stages of 4 workers each, a buffer of 64 between
stages, a trivial ``async def`` per stage; the consumer counts and sums. corral's
``pipeline`` against the same pipeline hand-written on ``asyncio.Queue`` (a feeder task,
``Queue(64)`` between stages, one sentinel per worker: the recipe it replaces, and the
reference), ``pypeln.task`` (``maxsize=64``) and aiostream (``pipe.map(task_limit=4)``).

``fanout.limit100``: ``n`` trivial ``async def`` calls, at most 100 at once, results read
as they complete. corral's ``fan_out(workers=100)`` against ``aiometer.amap`` (the
reference: same semantics, results as completed; it needs a list, made before timing),
aiostream's ``pipe.map(task_limit=100)`` and ``pypeln.task.map(workers=100)``.

``fanout.cpu``: ``n`` jobs of ~20 ms of pure-Python arithmetic on 2 processes, cold (the
pool's start-up is timed): ``fan_out(run_in="process", workers=2)`` against
``ProcessPoolExecutor(2).map``; the reference is the same jobs run serially, so the ratio
reads as 1 / speedup (the target, 0.54, is a 1.85x speedup; 2 cores bound it at 0.5).
CPU time is not reported for this row: the work happens in child processes.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from ..harness import Env, Stopwatch, Timing, check, expected_sum
from ..registry import corral_impl, peer_impl, register
from ._common import peer

STAGES, WORKERS, BUFFER = 3, 4, 64
LIMIT = 100


async def _ident(x: int) -> int:
    return x


def _check_sum(count: int, total: int, n: int) -> None:
    check(count == n, f"{count} results, expected {n}")
    check(total == expected_sum(n), f"results sum to {total}, expected {expected_sum(n)}")


# -- pipeline.3stage ---------------------------------------------------------------------------


def _pipe_corral(env: Env, n: int) -> Timing:
    async def main() -> Timing:
        import corral

        stages = [corral.stage(_ident, workers=WORKERS, buffer=BUFFER) for _ in range(STAGES)]
        count = total = 0
        sw = Stopwatch()
        async with corral.pipeline(range(n), *stages) as out:
            async for x in out:
                count += 1
                total += x
        dt = sw.stop()
        _check_sum(count, total, n)
        return dt

    return env.run_async(main)


def _pipe_queue(env: Env, n: int) -> Timing:
    async def main() -> Timing:
        queues: list[asyncio.Queue[Any]] = [asyncio.Queue(BUFFER) for _ in range(STAGES + 1)]
        stop = object()

        async def feeder() -> None:
            put = queues[0].put
            for i in range(n):
                await put(i)
            for _ in range(WORKERS):
                await put(stop)

        async def worker(i: int) -> None:
            get, put = queues[i].get, queues[i + 1].put
            while True:
                x = await get()
                if x is stop:
                    return
                await put(await _ident(x))

        async def stage(i: int) -> None:
            await asyncio.gather(*(worker(i) for _ in range(WORKERS)))
            for _ in range(WORKERS if i < STAGES - 1 else 1):
                await queues[i + 1].put(stop)

        count = total = 0
        sw = Stopwatch()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(feeder())
            for i in range(STAGES):
                tg.create_task(stage(i))
            get = queues[STAGES].get
            while True:
                x = await get()
                if x is stop:
                    break
                count += 1
                total += x
        dt = sw.stop()
        _check_sum(count, total, n)
        return dt

    return env.run_async(main)


def _pipe_pypeln(env: Env, n: int) -> Timing:
    pl = peer("pypeln")

    async def main() -> Timing:
        count = total = 0
        sw = Stopwatch()
        st: Any = range(n)
        for _ in range(STAGES):
            st = pl.task.map(_ident, st, workers=WORKERS, maxsize=BUFFER)
        async for x in st:
            count += 1
            total += x
        dt = sw.stop()
        _check_sum(count, total, n)
        return dt

    return env.run_async(main)


def _pipe_aiostream(env: Env, n: int) -> Timing:
    aiostream = peer("aiostream")

    async def main() -> Timing:
        stream, pipe = aiostream.stream, aiostream.pipe
        count = total = 0
        sw = Stopwatch()
        xs = stream.iterate(range(n))
        for _ in range(STAGES):
            xs = xs | pipe.map(_ident, task_limit=WORKERS)
        async with xs.stream() as s:
            async for x in s:
                count += 1
                total += x
        dt = sw.stop()
        _check_sum(count, total, n)
        return dt

    return env.run_async(main)


register(
    "pipeline.3stage",
    items=100_000,
    quick_items=20_000,
    note=(
        "3 stages x 4 workers, buffer 64, trivial async def: corral.pipeline vs the same "
        "pipeline hand-written on asyncio.Queue, pypeln.task, aiostream"
    ),
    impls=[
        corral_impl("corral", _pipe_corral, reference="asyncio.Queue pipeline", target=0.5),
        peer_impl("asyncio.Queue pipeline", _pipe_queue),
        peer_impl("pypeln.task", _pipe_pypeln, requires=["pypeln"]),
        peer_impl("aiostream", _pipe_aiostream, requires=["aiostream"]),
    ],
)


# -- fanout.limit100 --------------------------------------------------------------------------


def _fan_corral(env: Env, n: int) -> Timing:
    async def main() -> Timing:
        import corral

        count = total = 0
        sw = Stopwatch()
        async with corral.fan_out(_ident, range(n), workers=LIMIT) as results:
            async for x in results:
                count += 1
                total += x
        dt = sw.stop()
        _check_sum(count, total, n)
        return dt

    return env.run_async(main)


def _fan_aiometer(env: Env, n: int) -> Timing:
    aiometer = peer("aiometer")

    async def main() -> Timing:
        items = list(range(n))  # amap needs a sequence (aiometer#46)
        count = total = 0
        sw = Stopwatch()
        async with aiometer.amap(_ident, items, max_at_once=LIMIT) as results:
            async for x in results:
                count += 1
                total += x
        dt = sw.stop()
        _check_sum(count, total, n)
        return dt

    return env.run_async(main)


def _fan_aiostream(env: Env, n: int) -> Timing:
    aiostream = peer("aiostream")

    async def main() -> Timing:
        xs = aiostream.stream.iterate(range(n)) | aiostream.pipe.map(_ident, task_limit=LIMIT)
        count = total = 0
        sw = Stopwatch()
        async with xs.stream() as s:
            async for x in s:
                count += 1
                total += x
        dt = sw.stop()
        _check_sum(count, total, n)
        return dt

    return env.run_async(main)


def _fan_pypeln(env: Env, n: int) -> Timing:
    pl = peer("pypeln")

    async def main() -> Timing:
        count = total = 0
        sw = Stopwatch()
        async for x in pl.task.map(_ident, range(n), workers=LIMIT):
            count += 1
            total += x
        dt = sw.stop()
        _check_sum(count, total, n)
        return dt

    return env.run_async(main)


register(
    "fanout.limit100",
    items=100_000,
    quick_items=20_000,
    note=(
        "n trivial async def calls, at most 100 at once, results as completed: "
        "corral.fan_out(workers=100) vs aiometer.amap(max_at_once=100), "
        "aiostream pipe.map(task_limit=100), pypeln.task.map(workers=100)"
    ),
    impls=[
        corral_impl("corral", _fan_corral, reference="aiometer.amap"),
        peer_impl("aiometer.amap", _fan_aiometer, requires=["aiometer"]),
        peer_impl("aiostream", _fan_aiostream, requires=["aiostream"]),
        peer_impl("pypeln.task", _fan_pypeln, requires=["pypeln"]),
    ],
)


# -- fanout.cpu --------------------------------------------------------------------------------

JOB_SECONDS = 0.020
_loops_per_job = 0


def cpu_job(loops: int) -> int:
    """Pure-Python arithmetic: no I/O, holds the GIL throughout."""
    s = 0
    for i in range(loops):
        s += i * i % 7
    return s


def _job_size() -> int:
    """Loops that take ~JOB_SECONDS here (measured once, best of 3)."""
    global _loops_per_job
    if not _loops_per_job:
        probe = 200_000
        best = min(_timed(cpu_job, probe) for _ in range(3))
        _loops_per_job = max(int(probe * JOB_SECONDS / best), 1)
    return _loops_per_job


def _timed(fn: Any, arg: int) -> float:
    t = time.perf_counter()
    fn(arg)
    return time.perf_counter() - t


def _no_cpu(t: Timing) -> Timing:
    return Timing(t.wall, float("nan"))  # child processes' CPU is not this process's


def _cpu_corral(env: Env, n: int) -> Timing:
    import corral.threads

    loops = _job_size()
    expect = cpu_job(loops)
    sw = Stopwatch()
    out = corral.threads.fan_out(cpu_job, [loops] * n, workers=2, run_in="process").collect()
    dt = sw.stop()
    check(out == [expect] * n, "wrong results")
    return _no_cpu(dt)


def _cpu_pool(env: Env, n: int) -> Timing:
    from concurrent.futures import ProcessPoolExecutor

    loops = _job_size()
    expect = cpu_job(loops)
    sw = Stopwatch()
    with ProcessPoolExecutor(2) as ex:
        out = list(ex.map(cpu_job, [loops] * n))
    dt = sw.stop()
    check(out == [expect] * n, "wrong results")
    return _no_cpu(dt)


def _cpu_serial(env: Env, n: int) -> Timing:
    loops = _job_size()
    expect = cpu_job(loops)
    sw = Stopwatch()
    out = [cpu_job(loops) for _ in range(n)]
    dt = sw.stop()
    check(out == [expect] * n, "wrong results")
    return _no_cpu(dt)


register(
    "fanout.cpu",
    items=64,
    quick_items=32,
    unit="job",
    note=(
        "n x ~20 ms pure-Python jobs on 2 processes, pool start-up timed (cold): "
        "fan_out(run_in='process', workers=2) vs ProcessPoolExecutor(2).map; reference: "
        "the jobs run serially (ratio = 1 / speedup; 2 cores: >= 0.5)"
    ),
    impls=[
        corral_impl("corral", _cpu_corral, reference="serial", target=0.54),
        peer_impl("ProcessPoolExecutor.map", _cpu_pool),
        peer_impl("serial", _cpu_serial),
    ],
)
