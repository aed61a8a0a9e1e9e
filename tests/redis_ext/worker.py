"""Child processes for test_faults.py: ``python worker.py MODE URL NS NPROCS [ARG...]``.

This script is a fresh interpreter with no thread running when it forks its NPROCS children
(forking the threaded pytest process would be unsafe), each of which plays one process of a
fleet sharing one Redis. Children start together when the test pushes NPROCS tokens on
``NS:go``, and report what they saw as JSON on ``NS:report``; the test reads Redis. The
parent prints each child's exit status (a signal number when killed) as JSON and exits.
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


def _start(client: Any, ns: str) -> None:
    client.rpush(f"{ns}:ready", os.getpid())
    if client.blpop([f"{ns}:go"], timeout=60) is None:
        raise SystemExit("no go signal")


def sf_many(url: str, ns: str, callers: str) -> None:
    """asyncio flavour: ``callers`` tasks on one key; the call counts its executions."""
    sync = redis.Redis.from_url(url, socket_timeout=_BLOCKING)
    _start(sync, ns)

    async def main() -> list[Any]:
        async with aredis.Redis.from_url(url, socket_timeout=_BLOCKING) as client:
            sf = corral.redis.SingleFlight(client, namespace=ns, lease=2)

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
    client = redis.Redis.from_url(url, socket_timeout=_BLOCKING)
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
    client = redis.Redis.from_url(url, socket_timeout=_BLOCKING)
    sem = corral.threads.redis.Semaphore(client, f"{ns}:sem", 8, lease=float(lease))
    sem.acquire(5)
    client.rpush(f"{ns}:victim", os.getpid())
    time.sleep(60)


def sem_contend(url: str, ns: str, lease: str, index: str, rounds: str) -> None:
    """Acquires weight 1..5 ``rounds`` times; an independent counter tracks the sum held."""
    client = redis.Redis.from_url(url, socket_timeout=_BLOCKING)
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


def main() -> None:
    mode, url, ns, nprocs, *args = sys.argv[1:]
    fns = {"sf_many": sf_many, "sf_kill": sf_kill, "sem_contend": sem_contend}
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
