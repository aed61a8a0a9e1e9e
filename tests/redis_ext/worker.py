"""Child processes for test_faults.py: ``python worker.py MODE URL NS NPROCS [ARG...]``.

This script is a fresh interpreter with no thread running when it forks its NPROCS children
(forking the threaded pytest process would be unsafe), each of which plays one process of a
fleet sharing one Redis. Children start together when the test pushes NPROCS tokens on
``NS:go``, and report what they saw as JSON on ``NS:report``; the test reads Redis. The
parent prints each child's exit status (a signal number when killed) as JSON and exits.

With ``REDIS_CLUSTER=1`` in the environment (conftest's ``cluster_env``) URL is a Redis
Cluster's and every client is a cluster client, which routes each key to the master owning
its slot.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
import time
from typing import Any

import redis
import redis.asyncio as aredis

# Imported before forking, once for every child.
import corral.redis
import corral.threads.redis

# redis-py's default socket timeout (5 s) would cut the long BLPOPs that start the fleet.
_BLOCKING = 120
CLUSTER = os.environ.get("REDIS_CLUSTER") == "1"


def _sync(url: str) -> Any:
    """A blocking client: a ``RedisCluster`` on a cluster, else a ``Redis``."""
    if CLUSTER:
        from redis.cluster import RedisCluster

        return RedisCluster.from_url(url, socket_timeout=_BLOCKING)
    return redis.Redis.from_url(url, socket_timeout=_BLOCKING)


def _async(url: str) -> Any:
    """An asyncio client: a ``RedisCluster`` on a cluster, else a ``Redis``."""
    if CLUSTER:
        from redis.asyncio.cluster import RedisCluster

        return RedisCluster.from_url(url, socket_timeout=_BLOCKING)
    return aredis.Redis.from_url(url, socket_timeout=_BLOCKING)


def _start(client: Any, ns: str) -> None:
    client.rpush(f"{ns}:ready", os.getpid())
    if client.blpop([f"{ns}:go"], timeout=60) is None:
        raise SystemExit("no go signal")


def sf_many(url: str, ns: str, callers: str) -> None:
    """asyncio flavour: ``callers`` tasks on one key; the call counts its executions."""
    sync = _sync(url)
    _start(sync, ns)

    async def main() -> list[Any]:
        async with _async(url) as client:
            # 50 processes starting at once on 2 shared cores stall for seconds: a lease
            # must outlast the worst stall, or its holder rightly gives it up (LeaseLost).
            sf = corral.redis.SingleFlight(client, namespace=ns, lease=8)

            async def load() -> str:
                n = await client.incr(f"{ns}:executions")
                # The "query" lasts until the test saw every other process follow it.
                await client.blpop([f"{ns}:release"], timeout=30)
                return f"value-{n}"

            out = await asyncio.gather(
                *(sf.do("key", load) for _ in range(int(callers))), return_exceptions=True
            )
            return [o if isinstance(o, str) else f"error {type(o).__name__}: {o}" for o in out]

    results = asyncio.run(main())
    sync.rpush(f"{ns}:report", json.dumps({"pid": os.getpid(), "results": results}))


def sf_kill(url: str, ns: str, callers: str, lease: str) -> None:
    """Thread flavour: the first execution blocks (to be SIGKILLed by the test); a takeover
    execution returns at once. Each caller reports its value and the time it got it."""
    client = _sync(url)
    sf = corral.threads.redis.SingleFlight(client, namespace=ns, lease=float(lease))

    def load() -> str:
        n = client.incr(f"{ns}:executions")
        if n == 1:
            client.rpush(f"{ns}:leader", os.getpid())
            time.sleep(60)  # killed long before
        return f"value-{n}"

    results: list[Any] = []

    def call() -> None:
        try:
            results.append([sf.do("key", load), time.time()])
        except Exception as exc:
            results.append([f"error {type(exc).__name__}: {exc}", time.time()])

    _start(client, ns)
    threads = [threading.Thread(target=call) for _ in range(int(callers))]
    for t in threads:
        t.start()
    # Tell the test once every caller here waits on this process's flight (threads start
    # late on a loaded machine; one that joined after the takeover finished would rightly
    # start a fresh call).
    end = time.monotonic() + 30
    while sf.statistics().waiters < int(callers) and time.monotonic() < end:
        time.sleep(0.005)
    client.rpush(f"{ns}:joined", os.getpid())
    for t in threads:
        t.join()
    report = {"pid": os.getpid(), "results": results, "stats": repr(sf.statistics())}
    client.rpush(f"{ns}:report", json.dumps(report))


def sem_victim(url: str, ns: str, lease: str) -> None:
    """Holds 5 permits and says so; the test SIGKILLs it while it holds them."""
    client = _sync(url)
    sem = corral.threads.redis.Semaphore(client, f"{ns}:sem", 8, lease=float(lease))
    sem.acquire(5)
    client.rpush(f"{ns}:victim", os.getpid())
    time.sleep(60)


def sem_contend(url: str, ns: str, lease: str, index: str, rounds: str) -> None:
    """Acquires weight 1..5 ``rounds`` times; an independent counter tracks the sum held."""
    client = _sync(url)
    sem = corral.threads.redis.Semaphore(client, f"{ns}:sem", 8, lease=float(lease))
    weight = 1 + int(index) % 5
    peak = 0
    _start(client, ns)
    for _ in range(int(rounds)):
        with sem.acquire(weight, timeout=30):
            peak = max(peak, client.incrby(f"{ns}:counter", weight))
            time.sleep(0.005)  # the work done under the permits
            client.decrby(f"{ns}:counter", weight)
    client.rpush(f"{ns}:report", json.dumps({"pid": os.getpid(), "peak": peak}))


def _log(path: str, line: str) -> None:
    """One line appended with O_APPEND: lines of concurrent processes never interleave."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def sem_hold(
    url: str, ns: str, flavour: str, lease: str, size: str, seconds: str, hold: str, log: str
) -> None:
    """Acquire 1 permit of ``size`` again and again for ``seconds``, each held ``hold``
    seconds of "work" under ``permit.ctx``; the log (independent of corral and of Redis)
    records ``G fence t`` at each grant, ``W fence t`` for each unit of work and ``L fence
    t`` when the ctx was found cancelled by a lost lease. ``t`` is ``time.monotonic()``
    (one clock for every process of the host), read *before* the ctx is checked: a unit of
    work logged at ``t`` was begun by a holder whose ctx was live after ``t``."""
    end = time.monotonic() + float(seconds)
    pid = os.getpid()

    def note(kind: str, fence: int) -> None:
        _log(log, f"{kind} {fence} {time.monotonic():.6f} {pid} {flavour}")

    if flavour == "threads":
        client = _sync(url)
        sem = corral.threads.redis.Semaphore(client, f"{ns}:sem", int(size), lease=float(lease))
        _start(client, ns)
        while time.monotonic() < end:
            try:
                permit = sem.acquire(timeout=10)
            except (corral.redis.RedisUnavailable, corral.DeadlineExceeded):
                time.sleep(0.05)
                continue
            note("G", permit.fence)
            stop = time.monotonic() + float(hold)
            while (t := time.monotonic()) < stop:
                if permit.ctx.cancelled:
                    note("L", permit.fence)
                    break
                _log(log, f"W {permit.fence} {t:.6f} {pid} {flavour}")
                permit.ctx.wait_blocking(0.02)
            try:
                permit.release()
            except (corral.redis.LeaseLost, corral.redis.RedisUnavailable):
                pass
        report = {"pid": pid, "lost": sem.statistics().lost}
        client.rpush(f"{ns}:report", json.dumps(report))
        return

    async def main() -> None:
        async with _async(url) as client:
            sem = corral.redis.Semaphore(client, f"{ns}:sem", int(size), lease=float(lease))
            await client.rpush(f"{ns}:ready", pid)
            if await client.blpop([f"{ns}:go"], timeout=60) is None:
                raise SystemExit("no go signal")
            while time.monotonic() < end:
                try:
                    permit = await sem.acquire(timeout=10)
                except (corral.redis.RedisUnavailable, corral.DeadlineExceeded):
                    await asyncio.sleep(0.05)
                    continue
                note("G", permit.fence)
                stop = time.monotonic() + float(hold)
                while (t := time.monotonic()) < stop:
                    if permit.ctx.cancelled:
                        note("L", permit.fence)
                        break
                    _log(log, f"W {permit.fence} {t:.6f} {pid} {flavour}")
                    await asyncio.sleep(0.02)
                try:
                    await permit.release()
                except (corral.redis.LeaseLost, corral.redis.RedisUnavailable):
                    pass
            report = {"pid": pid, "lost": sem.statistics().lost}
            await client.rpush(f"{ns}:report", json.dumps(report))

    asyncio.run(main())


def sf_waves(
    url: str, ns: str, callers: str, keys: str, waves: str, query: str, share_for: str, log: str
) -> None:
    """asyncio flavour: ``waves`` bursts of ``callers`` tasks over ``keys`` keys (a key per
    wave: ``w<wave>:k<i>``), each burst started with the fleet; every execution of the
    ``query`` seconds long call is logged (O_APPEND) for the test to count."""
    pid = os.getpid()

    async def main() -> None:
        async with _async(url) as client:
            sf = corral.redis.SingleFlight(
                client, namespace=ns, lease=2, share_for=float(share_for)
            )

            async def load(key: str) -> str:
                _log(log, key)
                await asyncio.sleep(float(query))
                return f"value of {key}"

            bad = []
            for w in range(int(waves)):
                await client.rpush(f"{ns}:ready", pid)
                if await client.blpop([f"{ns}:go:{w}"], timeout=60) is None:
                    raise SystemExit("no go signal")
                names = [f"w{w}:k{i % int(keys)}" for i in range(int(callers))]
                out = await asyncio.gather(*(sf.do(k, load, k) for k in names))
                bad += [o for o, k in zip(out, names, strict=True) if o != f"value of {k}"]
            st = sf.statistics()
            report = {"pid": pid, "bad": bad, "led": st.led, "late": st.shared_late}
            await client.rpush(f"{ns}:report", json.dumps(report))

    asyncio.run(main())


def main() -> None:
    mode, url, ns, nprocs, *args = sys.argv[1:]
    fns = {"sf_many": sf_many, "sf_kill": sf_kill, "sem_contend": sem_contend, "sf_waves": sf_waves}
    assert threading.active_count() == 1, "forking with threads running"
    pids = []
    if mode == "sem":  # one victim first, then the contenders
        lease, rounds = args
        pid = os.fork()
        if pid == 0:
            _child(sem_victim, url, ns, lease)
        pids.append(pid)
        for i in range(int(nprocs)):
            pid = os.fork()
            if pid == 0:
                _child(sem_contend, url, ns, lease, str(i), rounds)
            pids.append(pid)
    elif mode == "sem_hold":  # flavour "mixed": threads and asyncio processes alternate
        flavour, *rest = args
        for i in range(int(nprocs)):
            f = flavour if flavour != "mixed" else ("threads", "asyncio")[i % 2]
            pid = os.fork()
            if pid == 0:
                _child(sem_hold, url, ns, f, *rest)
            pids.append(pid)
    else:
        for _ in range(int(nprocs)):
            pid = os.fork()
            if pid == 0:
                _child(fns[mode], url, ns, *args)
            pids.append(pid)
    statuses = {}
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        statuses[pid] = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    print(json.dumps(statuses))


def _child(fn: Any, *args: str) -> None:
    code = 0
    try:
        fn(*args)
    except BaseException as exc:
        print(f"child {os.getpid()}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        code = 1
    os._exit(code)


if __name__ == "__main__":
    main()
