"""corral.redis rows: the shared SingleFlight and Semaphore against what people write by hand.

They need the ``redis`` package (``corral[redis]``) and a ``redis-server`` binary: the rows
start their own server on a free loopback port (or use ``CORRAL_BENCH_REDIS_URL``), and
report MISSING when either is absent. Everything they start is stopped when the bench exits.

``redis.singleflight.8proc``: 8 worker processes (started once, outside the stopwatch) ×
1,000 concurrent callers of one key per round; the "DB query" takes 20 ms and counts itself
in Redis. Each implementation dedups in memory first (a ``corral.SingleFlight`` per process),
so only the cross-process part differs:

* ``corral.redis`` — one DB query per round across all processes;
* ``per-process`` — the naive fleet: every process queries the DB (8 per round);
* ``SET NX lock + GET loop`` — the hand-written stampede lock: the process that wins
  ``SET NX`` queries and stores the value, the others poll ``GET`` every 5 ms.

``redis.semaphore.uncontended``: ``n`` acquire+release pairs of one permit, nobody else
waiting, against redis-py's ``Lock`` acquire+release (both one round trip each way).

``redis.singleflight.share_for``: issue 18's trial, 4 processes (spawned per measurement,
outside the stopwatch) × 100 callers over 20 keys per wave, a 50 ms query; its figure is the
executions per key-wave, counted from an ``O_APPEND`` file outside corral, with
``SingleFlight(share_for=5)`` and without it (the time is the trial's, no verdict).
"""

from __future__ import annotations

import atexit
import json
import multiprocessing
import os
import shutil
import socket
import subprocess
import tempfile
import time
from typing import Any

from ..harness import BenchError, Env, Stopwatch, Timing, check
from ..registry import Impl, register

_PROCS = 8
_CALLERS = 1_000
_DB_SECONDS = 0.02
_PREFIX = "corral-bench"
#: The Semaphore rows' lease: short, so the first use's grace costs 1 s once per process.
_LEASE = 1.0

# `requires` is checked with importlib.util.find_spec: a name that is never a module makes
# the runner report the row MISSING, with the binary's name, when the server is absent.
_SERVER = shutil.which("redis-server")
_REQUIRES = ("redis",) if _SERVER else ("redis", "redis-server")

_state: dict[str, Any] = {}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _reap(procs: list[Any]) -> None:
    """Stop what still runs of a row's worker processes (after a run that failed or hung)."""
    for p in procs:
        if p.is_alive():
            p.terminate()
            p.join()


def _url() -> str:
    """The Redis to measure against: CORRAL_BENCH_REDIS_URL, else a server of our own."""
    if "url" in _state:
        return str(_state["url"])
    url = os.environ.get("CORRAL_BENCH_REDIS_URL")
    if not url:
        if _SERVER is None:
            raise BenchError("redis-server is not installed")
        port = _free_port()
        workdir = tempfile.mkdtemp(prefix="corral-bench-redis-")
        args = ["--bind", "127.0.0.1", "--port", str(port), "--dir", workdir, "--save", ""]
        proc = subprocess.Popen(
            [_SERVER, *args, "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _state["server"] = (proc, workdir)
        atexit.register(_shutdown)
        url = f"redis://127.0.0.1:{port}/0"
        _wait_ready(url, proc)
    _state["url"] = url
    return url


def _wait_ready(url: str, proc: subprocess.Popen[bytes]) -> None:
    import redis

    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 20
    try:
        while True:  # a starting server has no event to wait on: ask until it answers
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise BenchError("redis-server did not start") from None
                time.sleep(0.02)
    finally:
        client.close()


def _shutdown() -> None:
    pool = _state.pop("pool", None)
    if pool is not None:
        client, procs = pool
        for i in range(len(procs)):
            client.rpush(f"{_PREFIX}:job:{i}", json.dumps({"op": "stop"}))
        for p in procs:
            p.join(5)
        _reap(procs)
        client.close()
    server = _state.pop("server", None)
    if server is not None:
        proc, workdir = server
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


# --- redis.singleflight.8proc -------------------------------------------------------------------


def _worker(url: str, index: int) -> None:
    """A worker process: runs the rounds it is sent, on one event loop, until told to stop."""
    import asyncio

    import redis
    import redis.asyncio as aredis

    import corral
    import corral.redis

    control = redis.Redis.from_url(url, socket_timeout=None)  # it blocks in BLPOP
    with asyncio.Runner() as runner:
        client = runner.run(_connect(aredis, url))
        shared = corral.redis.SingleFlight(client, namespace=f"{_PREFIX}:sf", lease=10)
        local: corral.SingleFlight[str, str] = corral.SingleFlight()
        control.rpush(f"{_PREFIX}:ready", index)
        while True:
            got = control.blpop([f"{_PREFIX}:job:{index}"], timeout=600)
            if got is None:
                break
            job = json.loads(got[1])
            if job["op"] == "stop":
                break
            values = runner.run(_round(client, shared, local, job))
            ok = sum(v == f"value:{job['key']}" for v in values)
            control.rpush(f"{_PREFIX}:done", ok)
        runner.run(client.aclose())
    control.close()


async def _connect(aredis: Any, url: str) -> Any:
    return aredis.Redis.from_url(url)


async def _round(client: Any, shared: Any, local: Any, job: dict[str, Any]) -> list[Any]:
    import asyncio

    key, db_key = job["key"], job["db"]

    async def query() -> str:
        await client.incr(db_key)
        await asyncio.sleep(_DB_SECONDS)
        return f"value:{key}"

    async def set_nx_then_get() -> str:
        lock, val = f"{_PREFIX}:lock:{key}", f"{_PREFIX}:val:{key}"
        if await client.set(lock, 1, nx=True, px=10_000):
            v = await query()
            await client.set(val, v, px=60_000)
            await client.delete(lock)
            return v
        while (got := await client.get(val)) is None:
            await asyncio.sleep(0.005)
        return str(got.decode())

    op = job["op"]
    if op == "corral":
        calls = [shared.do(key, query) for _ in range(job["callers"])]
    elif op == "naive":
        calls = [local.do(key, query) for _ in range(job["callers"])]
    else:
        calls = [local.do(key, set_nx_then_get) for _ in range(job["callers"])]
    return list(await asyncio.gather(*calls))


def _pool() -> Any:
    if "pool" not in _state:
        import redis

        url = _url()
        client = redis.Redis.from_url(url, socket_timeout=None)  # it blocks in BLPOP
        client.delete(f"{_PREFIX}:ready", f"{_PREFIX}:done")
        ctx = multiprocessing.get_context("spawn")  # never fork the bench's threaded process
        procs = [
            ctx.Process(target=_worker, args=(url, i), name=f"corral-bench-redis-{i}", daemon=True)
            for i in range(_PROCS)
        ]
        for p in procs:
            p.start()
        _state["pool"] = (client, procs)
        for _ in procs:
            if client.blpop([f"{_PREFIX}:ready"], timeout=120) is None:
                raise BenchError("the redis bench workers did not start")
    return _state["pool"]


def _singleflight(op: str) -> Any:
    def run(env: Env, n: int) -> Timing:
        client, procs = _pool()
        rounds = max(1, n // (_PROCS * _CALLERS))
        callers = n // (_PROCS * rounds)
        check(callers * _PROCS * rounds == n, f"n={n} does not split into {_PROCS} processes")
        run_id = f"{op}-{time.monotonic_ns()}"
        db = f"{_PREFIX}:db:{run_id}"
        client.delete(f"{_PREFIX}:done")  # nothing left over from a failed run
        sw = Stopwatch()
        for r in range(rounds):
            job = json.dumps({"op": op, "key": f"{run_id}:{r}", "db": db, "callers": callers})
            for i in range(len(procs)):
                client.rpush(f"{_PREFIX}:job:{i}", job)
            for _ in procs:
                got = client.blpop([f"{_PREFIX}:done"], timeout=env.timeout)
                check(got is not None, "a worker did not answer")
                check(int(got[1]) == callers, f"{got[1]!r} of {callers} callers got the value")
        t = sw.stop()
        queries = int(client.get(db) or 0)
        if op == "naive":
            check(queries == _PROCS * rounds, f"{queries} DB queries, expected one per process")
        else:  # the point of both: far fewer queries than processes (exactly 1 when on time)
            check(rounds <= queries < _PROCS * rounds, f"{queries} DB queries in {rounds} rounds")
        return t

    return run


def _impl(name: str, fn: Any, *, peer: bool, reference: str | None = None) -> Impl:
    target = None if peer or reference is None else 1.5
    return Impl(name, fn, peer=peer, requires=_REQUIRES, reference=reference, target=target)


register(
    "redis.singleflight.8proc",
    items=_PROCS * _CALLERS * 10,
    quick_items=_PROCS * _CALLERS * 2,
    unit="caller",
    note=(
        f"{_PROCS} processes × {_CALLERS:,} callers, 1 key per round, 20 ms DB query; "
        "corral.redis (1 query) vs every process querying vs a SET NX lock + 5 ms GET loop"
    ),
    impls=[
        Impl(
            "corral.redis",
            _singleflight("corral"),
            peer=False,
            requires=_REQUIRES,
            reference="SET NX lock + GET loop",
        ),
        _impl("per-process (8 DB queries)", _singleflight("naive"), peer=True),
        _impl("SET NX lock + GET loop", _singleflight("setnx"), peer=True),
    ],
)


# --- redis.semaphore.uncontended --------------------------------------------------------------


def _sem_corral(env: Env, n: int) -> Timing:
    import redis.asyncio as aredis

    import corral.redis

    async def main() -> Timing:
        async with aredis.Redis.from_url(_url()) as client:
            # One name for every repeat: a name's first use on a Redis waits one lease (its
            # epoch's grace, see docs/redis.md), here once, outside the stopwatch.
            sem = corral.redis.Semaphore(client, f"{_PREFIX}:sem", 4, lease=_LEASE)
            acquire = sem.acquire
            await (await acquire(1)).release()  # scripts loaded, connection made, epoch begun
            before = sem.statistics().acquired
            sw = Stopwatch()
            for _ in range(n):
                p = await acquire(1)
                await p.release()
            t = sw.stop()
            check(sem.statistics().acquired == before + n, "not every acquire was granted")
            return t

    return env.run_async(main)


def _sem_lock(env: Env, n: int) -> Timing:
    import redis.asyncio as aredis

    async def main() -> Timing:
        async with aredis.Redis.from_url(_url()) as client:
            lock = client.lock(f"{_PREFIX}:lock:{time.monotonic_ns()}", timeout=10)
            await lock.acquire()
            await lock.release()
            got = 0
            sw = Stopwatch()
            for _ in range(n):
                got += await lock.acquire()
                await lock.release()
            t = sw.stop()
            check(got == n, f"{got} of {n} acquires succeeded")
            return t

    return env.run_async(main)


def _sem_corral_threads(env: Env, n: int) -> Timing:
    import redis

    import corral.threads.redis

    with redis.Redis.from_url(_url()) as client:
        sem = corral.threads.redis.Semaphore(client, f"{_PREFIX}:tsem", 4, lease=_LEASE)
        sem.acquire(1).release()
        sw = Stopwatch()
        for _ in range(n):
            sem.acquire(1).release()
        t = sw.stop()
        check(sem.statistics().acquired == n + 1, "not every acquire was granted")
        return t


def _sem_lock_threads(env: Env, n: int) -> Timing:
    import redis

    with redis.Redis.from_url(_url()) as client:
        lock = client.lock(f"{_PREFIX}:tlock:{time.monotonic_ns()}", timeout=10)
        lock.acquire()
        lock.release()
        got = 0
        sw = Stopwatch()
        for _ in range(n):
            got += lock.acquire()
            lock.release()
        t = sw.stop()
        check(got == n, f"{got} of {n} acquires succeeded")
        return t


register(
    "redis.semaphore.uncontended",
    items=5_000,
    quick_items=500,
    unit="pair",
    note="acquire(1) + release, nobody waiting: corral.redis.Semaphore vs redis-py's Lock",
    impls=[
        _impl("corral.redis", _sem_corral, peer=False, reference="redis-py Lock (asyncio)"),
        _impl("redis-py Lock (asyncio)", _sem_lock, peer=True),
    ],
)

register(
    "redis.semaphore.uncontended.threads",
    items=5_000,
    quick_items=500,
    unit="pair",
    note="the same with threads: corral.threads.redis.Semaphore vs redis-py's blocking Lock",
    impls=[
        _impl("corral.threads.redis", _sem_corral_threads, peer=False, reference="redis-py Lock"),
        _impl("redis-py Lock", _sem_lock_threads, peer=True),
    ],
)


# --- redis.singleflight.share_for ---------------------------------------------------------------

#: Issue 18's trial: processes × callers on ``_WAVE_KEYS`` keys per wave, a 50 ms query.
_WAVE_PROCS, _WAVE_CALLERS, _WAVE_KEYS, _WAVE_QUERY = 4, 100, 20, 0.05
#: How long a finished result stays joinable with the option on (seconds).
_SHARE_FOR = 5.0


def _wave_worker(url: str, ns: str, share_for: float, waves: int, keys: int, log: str) -> None:
    """One process of the trial: per wave, wait for the start, then ``_WAVE_CALLERS`` callers
    over the wave's ``keys`` keys; each execution of the query appends its key to ``log``."""
    import asyncio

    import redis
    import redis.asyncio as aredis

    import corral.redis

    fd = os.open(log, os.O_WRONLY | os.O_APPEND)
    control = redis.Redis.from_url(url, socket_timeout=None)  # it blocks in BLPOP

    async def main() -> None:
        async with aredis.Redis.from_url(url) as client:
            sf = corral.redis.SingleFlight(client, namespace=ns, lease=2, share_for=share_for)

            async def query(key: str) -> str:
                os.write(fd, f"{key}\n".encode())  # O_APPEND: counted outside corral
                await asyncio.sleep(_WAVE_QUERY)
                return f"value:{key}"

            for w in range(waves):
                await client.rpush(f"{ns}:ready", 1)
                # (the control client blocks the loop, as the start of a burst would)
                if control.blpop([f"{ns}:go:{w}"], timeout=120) is None:
                    raise BenchError("no start signal")
                names = [f"w{w}:k{i % keys}" for i in range(_WAVE_CALLERS)]
                values = await asyncio.gather(*(sf.do(k, query, k) for k in names))
                ok = sum(v == f"value:{k}" for v, k in zip(values, names, strict=True))
                await client.rpush(f"{ns}:done", ok)

    try:
        asyncio.run(main())
    finally:
        control.close()
        os.close(fd)


def _waves(share_for: float) -> Any:
    def run(env: Env, n: int) -> Timing:
        import redis

        keys = min(n, _WAVE_KEYS)  # (fewer in the warm-up run, a tenth of the items)
        waves = n // keys
        check(waves * keys == n, f"n={n} is not a whole number of {keys}-key waves")
        url = _url()
        ns = f"{_PREFIX}:waves:{time.monotonic_ns()}"
        fd, log = tempfile.mkstemp(prefix="corral-bench-waves-")
        os.close(fd)
        ctx = multiprocessing.get_context("spawn")  # never fork the bench's threaded process
        args = (url, ns, share_for, waves, keys, log)
        procs = [
            ctx.Process(target=_wave_worker, args=args, daemon=True) for _ in range(_WAVE_PROCS)
        ]
        try:
            with redis.Redis.from_url(url, socket_timeout=None) as client:
                for p in procs:
                    p.start()
                sw = None
                for w in range(waves):
                    for _ in procs:
                        got = client.blpop([f"{ns}:ready"], timeout=120)
                        check(got is not None, "a worker did not start")
                    sw = sw or Stopwatch()  # process start-up is outside the stopwatch
                    client.rpush(f"{ns}:go:{w}", *[1] * _WAVE_PROCS)
                    for _ in procs:
                        got = client.blpop([f"{ns}:done"], timeout=env.timeout)
                        check(got is not None, "a worker did not finish its wave")
                        check(int(got[1]) == _WAVE_CALLERS, f"{got[1]!r} callers got the value")
                assert sw is not None
                t = sw.stop()
                for p in procs:
                    p.join(env.timeout)
            with open(log) as f:
                counts: dict[str, int] = {}
                for line in f:
                    counts[line.strip()] = counts.get(line.strip(), 0) + 1
        finally:
            _reap(procs)
            os.unlink(log)
        check(len(counts) == n, f"{len(counts)} of {n} key-waves executed")
        total = sum(counts.values())
        figures = (
            f"{total} executions for {n} key-waves: {total / n:.2f} per key-wave"
            f" (at most {max(counts.values())})"
        )
        return Timing(t.wall, t.cpu, figures)

    return run


register(
    "redis.singleflight.share_for",
    items=_WAVE_KEYS * 6,
    quick_items=_WAVE_KEYS * 2,
    unit="key-wave",
    note=(
        f"{_WAVE_PROCS} processes × {_WAVE_CALLERS} callers over {_WAVE_KEYS} keys per wave, a "
        f"{_WAVE_QUERY * 1000:.0f} ms query; the figure is executions per key-wave (1 is "
        f"exact): SingleFlight(share_for={_SHARE_FOR:g}) keeps a finished result joinable, "
        "without it a process that joins after the leader finished runs the query again"
    ),
    impls=[
        # No reference: the time is the trial's, the executions are the result.
        Impl(
            f"corral.redis share_for={_SHARE_FOR:g}",
            _waves(_SHARE_FOR),
            peer=False,
            requires=_REQUIRES,
        ),
        Impl("corral.redis, no share_for", _waves(0.0), peer=False, requires=_REQUIRES),
    ],
)
