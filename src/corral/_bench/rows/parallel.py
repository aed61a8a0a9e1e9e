"""Rows where threads run Python in parallel on a free-threaded build (3.13t).

With the GIL these rows show the GIL's cost (the threads take turns); without it they show
whether corral's thread flavour lets two cores work at once:

* ``fanout.cpu.threads``: ``corral.threads.fan_out(workers=2)`` over n pure-Python jobs of
  ~20 ms each (the ``fanout.cpu`` job), against the same jobs run serially (the reference:
  ratio = 1 / speedup, target ≥ 1.85× speedup) and ``ThreadPoolExecutor(2).map``.
* ``fanout.cpu.interpreters`` (Python 3.14+ only): the ``fanout.cpu`` jobs on 2
  subinterpreters, cold (the pool's start-up is timed), beside 2 processes:
  ``fan_out(run_in="interpreter")`` and ``fan_out(run_in="process")`` against
  ``InterpreterPoolExecutor(2).map``, ``ProcessPoolExecutor(2).map`` and serial (the
  reference: ratio = 1 / speedup).
* ``fanout.tiny.interpreters`` (3.14+): the per-item cost of each pool, n trivial calls
  (``abs``) on 2 workers, warm-up included: what a stage pays per item to cross.
* ``chan.thread.2p2c``: 2 producer threads → 2 consumer threads through a channel of
  capacity 128, against ``queue.Queue(128)``.
"""

from __future__ import annotations

import queue
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

from ..harness import Env, Stopwatch, Timing, check, check_transfer
from ..registry import corral_impl, peer_impl, register
from .patterns import _job_size, cpu_job

# -- fanout.cpu.threads ------------------------------------------------------------------------


def _threads_corral(env: Env, n: int) -> Timing:
    import corral.threads

    loops = _job_size()
    expect = cpu_job(loops)
    sw = Stopwatch()
    out = corral.threads.fan_out(cpu_job, [loops] * n, workers=2).collect()
    dt = sw.stop()
    check(out == [expect] * n, "wrong results")
    return dt


def _threads_pool(env: Env, n: int) -> Timing:
    loops = _job_size()
    expect = cpu_job(loops)
    sw = Stopwatch()
    with ThreadPoolExecutor(2) as ex:
        out = list(ex.map(cpu_job, [loops] * n))
    dt = sw.stop()
    check(out == [expect] * n, "wrong results")
    return dt


def _threads_serial(env: Env, n: int) -> Timing:
    loops = _job_size()
    expect = cpu_job(loops)
    sw = Stopwatch()
    out = [cpu_job(loops) for _ in range(n)]
    dt = sw.stop()
    check(out == [expect] * n, "wrong results")
    return dt


register(
    "fanout.cpu.threads",
    items=64,
    quick_items=16,
    unit="job",
    note=(
        "n x ~20 ms pure-Python jobs on 2 threads: corral.threads.fan_out(workers=2) vs "
        "ThreadPoolExecutor(2).map; reference: the jobs run serially (ratio = 1 / speedup). "
        "With the GIL ~1.0; free-threaded (3.13t) on 2 idle cores ≥ 0.5, target ≤ 0.54 "
        "(≥ 1.85× speedup)"
    ),
    impls=[
        # The target is a free-threaded one: with a GIL two threads cannot beat serial.
        corral_impl(
            "corral.threads",
            _threads_corral,
            reference="serial",
            target=None if getattr(sys, "_is_gil_enabled", lambda: True)() else 0.54,
        ),
        peer_impl("ThreadPoolExecutor.map", _threads_pool),
        peer_impl("serial", _threads_serial),
    ],
)


# -- fanout.cpu.interpreters, fanout.tiny.interpreters (3.14+) --------------------------------


def _pool_corral(run_in: Literal["process", "interpreter"], job: str) -> Any:
    def run(env: Env, n: int) -> Timing:
        import corral.threads

        fn, arg, expect = _job(job)
        sw = Stopwatch()
        out = corral.threads.fan_out(fn, [arg] * n, workers=2, run_in=run_in).collect()
        dt = sw.stop()
        check(out == [expect] * n, "wrong results")
        return Timing(dt.wall, float("nan"))  # the work is not this interpreter's CPU

    return run


def _pool_stdlib(kind: str, job: str) -> Any:
    def run(env: Env, n: int) -> Timing:
        import concurrent.futures as cf

        fn, arg, expect = _job(job)
        pool_type: Any = (
            cf.ProcessPoolExecutor if kind == "process" else cf.InterpreterPoolExecutor  # type: ignore[attr-defined,unused-ignore]
        )
        sw = Stopwatch()
        with pool_type(2) as ex:
            out = list(ex.map(fn, [arg] * n))
        dt = sw.stop()
        check(out == [expect] * n, "wrong results")
        return Timing(dt.wall, float("nan"))

    return run


def _serial(job: str) -> Any:
    def run(env: Env, n: int) -> Timing:
        fn, arg, expect = _job(job)
        sw = Stopwatch()
        out = [fn(arg) for _ in range(n)]
        dt = sw.stop()
        check(out == [expect] * n, "wrong results")
        return Timing(dt.wall, float("nan"))

    return run


def _job(job: str) -> tuple[Callable[[int], int], int, int]:
    if job == "cpu":
        loops = _job_size()
        return cpu_job, loops, cpu_job(loops)
    return abs, -7, 7


if sys.version_info >= (3, 14):
    register(
        "fanout.cpu.interpreters",
        items=64,
        quick_items=16,
        unit="job",
        note=(
            "n x ~20 ms pure-Python jobs on 2 subinterpreters vs 2 processes, pool start-up "
            "timed (cold): fan_out(run_in='interpreter' | 'process', workers=2) vs "
            "InterpreterPoolExecutor(2).map and ProcessPoolExecutor(2).map; reference: the "
            "jobs run serially (ratio = 1 / speedup; 2 cores: >= 0.5)"
        ),
        impls=[
            corral_impl(
                "corral interpreter", _pool_corral("interpreter", "cpu"), reference="serial"
            ),
            corral_impl("corral process", _pool_corral("process", "cpu"), reference="serial"),
            peer_impl("InterpreterPoolExecutor.map", _pool_stdlib("interpreter", "cpu")),
            peer_impl("ProcessPoolExecutor.map", _pool_stdlib("process", "cpu")),
            peer_impl("serial", _serial("cpu")),
        ],
    )
    register(
        "fanout.tiny.interpreters",
        items=2_000,
        quick_items=500,
        note=(
            "n trivial calls (abs) on 2 workers, pool start-up included: the per-item cost "
            "of crossing to a subinterpreter vs a process; reference: the same pool type's "
            "executor.map (corral adds its stage around it)"
        ),
        impls=[
            corral_impl(
                "corral interpreter",
                _pool_corral("interpreter", "tiny"),
                reference="InterpreterPoolExecutor.map",
            ),
            corral_impl(
                "corral process",
                _pool_corral("process", "tiny"),
                reference="ProcessPoolExecutor.map",
            ),
            peer_impl("InterpreterPoolExecutor.map", _pool_stdlib("interpreter", "tiny")),
            peer_impl("ProcessPoolExecutor.map", _pool_stdlib("process", "tiny")),
        ],
    )


# -- chan.thread.2p2c --------------------------------------------------------------------------

PRODUCERS = 2
CONSUMERS = 2


def _split(n: int, k: int) -> list[range]:
    """``0 .. n-1`` in ``k`` contiguous ranges (one per producer)."""
    return [range(i * n // k, (i + 1) * n // k) for i in range(k)]


def _chan_corral(env: Env, n: int) -> Timing:
    from corral import threads

    ch: threads.Channel[int] = threads.Channel(128)
    parts: list[tuple[int, int]] = []
    left = [PRODUCERS]
    lock = threading.Lock()

    def producer(items: range) -> None:
        send = ch.send
        for i in items:
            send(i)
        with lock:
            left[0] -= 1
            last = left[0] == 0
        if last:
            ch.close()

    def consumer() -> None:
        count = total = 0
        for x in ch:
            count += 1
            total += x
        parts.append((count, total))

    dt = env.run_threads(
        *[lambda r=r: producer(r) for r in _split(n, PRODUCERS)],
        *[consumer] * CONSUMERS,
    )
    check_transfer(parts, n)
    return dt


def _chan_queue(env: Env, n: int) -> Timing:
    q: queue.Queue[int | None] = queue.Queue(128)
    parts: list[tuple[int, int]] = []

    def producer(items: range) -> None:
        put = q.put
        for i in items:
            put(i)
        put(None)  # one sentinel per producer, so one per consumer

    def consumer() -> None:
        get = q.get
        count = total = 0
        while True:
            x = get()
            if x is None:
                break
            count += 1
            total += x
        parts.append((count, total))

    dt = env.run_threads(
        *[lambda r=r: producer(r) for r in _split(n, PRODUCERS)],
        *[consumer] * CONSUMERS,
    )
    check_transfer(parts, n)
    return dt


register(
    "chan.thread.2p2c",
    items=100_000,
    quick_items=20_000,
    note=(
        "2 producer threads → 2 consumer threads, capacity 128 (corral closes after the last "
        "producer; queue.Queue ends with one sentinel per producer); reference queue.Queue(128)"
    ),
    impls=[
        corral_impl("corral.threads", _chan_corral, reference="queue.Queue", target=0.8),
        peer_impl("queue.Queue", _chan_queue),
    ],
)
