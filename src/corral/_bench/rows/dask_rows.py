"""Rows for stages on Dask (the ``dask`` extra; every implementation is MISSING without it).

``dask.fanout1k`` / ``dask.fanout10k``: ``n`` items of 1 ms (a sleep, so the cluster's
threads are not the limit: 2 worker processes x 4 threads) on a warm ``LocalCluster``.
corral's ``fan_out(executor=client, workers=64)`` (both flavours; at most 64 items on the
cluster, input read lazily) against the hand-written Dask idiom, ``client.map`` over the whole
input then ``as_completed(with_results=True)`` (the reference: results as they complete; it
puts every item on the scheduler at once, where corral keeps 64), and ``client.gather`` of the
same ``client.map`` (results at the end). The target is 1.2x the reference.

``dask.cpu``: 64 jobs of ~20 ms of pure-Python arithmetic on a warm 2-worker (1 thread each)
``LocalCluster`` with ``fan_out(executor=client, workers=4)``, against a warm
``ProcessPoolExecutor(2).map``; the reference is the jobs run serially, so the ratio reads as
1 / speedup (2 cores bound it at 0.5). CPU time is not reported: the work is in other processes.

The clusters start on first use (outside the timed part) and stop at exit.
"""

from __future__ import annotations

import atexit
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from ..harness import Env, Stopwatch, Timing, check, expected_sum
from ..registry import Impl, corral_impl, peer_impl, register
from ._common import peer
from .patterns import _job_size, cpu_job

IN_FLIGHT = 64
CPU_IN_FLIGHT = 4
_clients: dict[int, Any] = {}
_pool: list[ProcessPoolExecutor] = []


def sleep_1ms(x: int) -> int:
    time.sleep(0.001)
    return x


def _client(threads_per_worker: int) -> Any:
    """A warm 2-worker LocalCluster (processes) and its Client, made once per process."""
    c = _clients.get(threads_per_worker)
    if c is None:
        distributed = peer("distributed")
        cluster = distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=threads_per_worker,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
            worker_dashboard_address="127.0.0.1:0",
        )
        c = distributed.Client(cluster)
        c.submit(abs, -1, pure=False).result()
        _clients[threads_per_worker] = c

        def stop() -> None:
            c.close()
            cluster.close()

        atexit.register(stop)
    return c


def _no_cpu(t: Timing) -> Timing:
    return Timing(t.wall, float("nan"))


def _check_sum(total: int, n: int) -> None:
    check(total == expected_sum(n), f"results sum to {total}, expected {expected_sum(n)}")


# -- dask.fanout -------------------------------------------------------------------------------


def _fan_threads(env: Env, n: int) -> Timing:
    import corral.threads

    client = _client(4)
    sw = Stopwatch()
    total = 0
    with corral.threads.fan_out(sleep_1ms, range(n), workers=IN_FLIGHT, executor=client) as out:
        for x in out:
            total += x
    dt = sw.stop()
    _check_sum(total, n)
    return _no_cpu(dt)


def _fan_aio(env: Env, n: int) -> Timing:
    import corral

    client = _client(4)

    async def main() -> Timing:
        sw = Stopwatch()
        total = 0
        async with corral.fan_out(sleep_1ms, range(n), workers=IN_FLIGHT, executor=client) as o:
            async for x in o:
                total += x
        dt = sw.stop()
        _check_sum(total, n)
        return dt

    return _no_cpu(env.run_async(main))


def _fan_as_completed(env: Env, n: int) -> Timing:
    distributed = peer("distributed")
    client = _client(4)
    sw = Stopwatch()
    futs = client.map(sleep_1ms, range(n), pure=False)
    total = 0
    for _, x in distributed.as_completed(futs, with_results=True):
        total += x
    del futs
    dt = sw.stop()
    _check_sum(total, n)
    return _no_cpu(dt)


def _fan_gather(env: Env, n: int) -> Timing:
    client = _client(4)
    sw = Stopwatch()
    total = sum(client.gather(client.map(sleep_1ms, range(n), pure=False)))
    dt = sw.stop()
    _check_sum(total, n)
    return _no_cpu(dt)


def _needs_dask(impl: Impl) -> Impl:
    """corral's implementations need the extra too: MISSING, not an error, without it."""
    return Impl(
        impl.name,
        impl.fn,
        peer=impl.peer,
        requires=("distributed",),
        reference=impl.reference,
        target=impl.target,
        note=impl.note,
        kind=impl.kind,
    )


def _fan_impls() -> list[Impl]:
    ref = "client.map+as_completed"
    return [
        _needs_dask(corral_impl("corral.threads", _fan_threads, reference=ref, target=1.2)),
        _needs_dask(corral_impl("corral (asyncio)", _fan_aio, reference=ref, target=1.2)),
        peer_impl(ref, _fan_as_completed, requires=["distributed"]),
        peer_impl("client.gather(client.map)", _fan_gather, requires=["distributed"]),
    ]


for _n, _quick in ((1_000, 200), (10_000, 1_000)):
    register(
        f"dask.fanout{_n // 1000}k",
        items=_n,
        quick_items=_quick,
        note=(
            f"n x 1 ms items on a warm LocalCluster (2 processes x 4 threads): "
            f"fan_out(executor=client, workers={IN_FLIGHT}) vs client.map + as_completed"
        ),
        impls=_fan_impls(),
    )


# -- dask.cpu ----------------------------------------------------------------------------------


def _cpu_dask(env: Env, n: int) -> Timing:
    import corral.threads

    client = _client(1)
    loops = _job_size()
    expect = cpu_job(loops)
    sw = Stopwatch()
    out = corral.threads.fan_out(
        cpu_job, [loops] * n, workers=CPU_IN_FLIGHT, executor=client
    ).collect()
    dt = sw.stop()
    check(out == [expect] * n, "wrong results")
    return _no_cpu(dt)


def _cpu_pool(env: Env, n: int) -> Timing:
    if not _pool:
        _pool.append(ProcessPoolExecutor(2))
        list(_pool[0].map(abs, [-1, -2]))  # warm: the cluster is warm too
        atexit.register(_pool[0].shutdown)
    loops = _job_size()
    expect = cpu_job(loops)
    sw = Stopwatch()
    out = list(_pool[0].map(cpu_job, [loops] * n))
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
    "dask.cpu",
    items=64,
    quick_items=16,
    unit="job",
    note=(
        "n x ~20 ms pure-Python jobs on a warm 2-worker LocalCluster: "
        f"fan_out(executor=client, workers={CPU_IN_FLIGHT}) vs a warm ProcessPoolExecutor(2); "
        "reference: serial (ratio = 1 / speedup; 2 cores: >= 0.5)"
    ),
    impls=[
        _needs_dask(corral_impl("corral on Dask", _cpu_dask, reference="serial", target=0.6)),
        peer_impl("ProcessPoolExecutor(2).map", _cpu_pool),
        peer_impl("serial", _cpu_serial),
    ],
)
