"""One process of a fleet sharing corral.redis rate limits, for test_ratelimit_fleet.py and the
bench: ``python rate_worker.py MODE FLAVOUR URL NS LOG CALLERS [ARG...]``.

The process reports ready on ``NS:ready``, waits for the test's ``NS:go`` message (a JSON
``{"start": wall time, "seconds": how long}``), then runs ``CALLERS`` callers (tasks for
``aio``, threads for ``threads``) that acquire in a loop until ``start + seconds``. Right
after each ``acquire`` returns, a caller appends the instant to LOG with one ``write`` on an
``O_APPEND`` file: the independent log the test judges, kept outside Redis.

MODE ``rate``: ``RateLimit(RATE, per=1.0)`` (ARG: RATE), one unit per acquire. MODE
``limits``: ``Limits(requests, tokens)`` (ARG: REQ_RATE TOK_RATE TOK_BURST): each call
reserves an estimate of tokens, "calls the API", and adjusts to the real count (at most the
estimate); the line logged is ``instant pid actual``. MODE ``llm``: the same with a
``Semaphore`` of CONC permits in the Limits (ARG: REQ_RATE TOK_RATE TOK_BURST CONC LEASE),
each call holding one permit for 50-300 ms; the line logged is ``instant pid actual end
fence`` (``end``: the call's last instant, before the permit goes back).

With ``REDIS_CLUSTER=1`` in the environment (conftest's ``cluster_env``) URL is a Redis
Cluster's and every client is a cluster client.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import threading
import time
from typing import Any

import redis
import redis.asyncio as aredis

import corral.redis
import corral.threads.redis

CLUSTER = os.environ.get("REDIS_CLUSTER") == "1"


def _client(url: str, **kwargs: Any) -> Any:
    if CLUSTER:
        from redis.cluster import RedisCluster

        return RedisCluster.from_url(url, **kwargs)
    return redis.Redis.from_url(url, **kwargs)


def _aclient(url: str, **kwargs: Any) -> Any:
    if CLUSTER:
        from redis.asyncio.cluster import RedisCluster

        return RedisCluster.from_url(url, **kwargs)
    return aredis.Redis.from_url(url, **kwargs)


def _log(fd: int, t: float, extra: str = "") -> None:
    os.write(fd, f"{t:.6f} {os.getpid()}{extra}\n".encode())


def _stats(rl: Any) -> dict[str, Any]:
    s = rl.statistics()
    return {"acquired": s.acquired, "late": s.late, "rtt_ms": round(rl._clock.rtt * 1e3, 3)}


def _limits(mod: Any, client: Any, ns: str, args: list[str]) -> tuple[Any, Any, Any]:
    req = mod.RateLimit(client, "req", float(args[0]), per=1.0, tag="acct", namespace=ns)
    tok = mod.RateLimit(
        client, "tok", float(args[1]), per=1.0, burst=float(args[2]), tag="acct", namespace=ns
    )
    if len(args) > 3:  # llm: and a concurrency limit
        conc = mod.Semaphore(client, f"{ns}:conc", int(args[3]), lease=float(args[4]), tag="acct")
        return mod.Limits(req, tok, conc), req, tok
    return mod.Limits(req, tok), req, tok


def _hold(rng: random.Random, mode: str) -> float:
    """How long "the API call" takes: an LLM call holds its permit 50-300 ms."""
    return rng.uniform(0.05, 0.3) if mode == "llm" else rng.uniform(0, 0.02)


def _line(grant: Any, actual: int, mode: str) -> str:
    if mode != "llm":
        return f" {actual}"
    return f" {actual} {time.time():.6f} {grant.fence}"


def main() -> None:
    mode, flavour, url, ns, log, callers, *args = sys.argv[1:]
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    control = _client(url, socket_timeout=120)
    control.rpush(f"{ns}:ready", os.getpid())
    got = control.blpop([f"{ns}:go"], timeout=120)
    assert got is not None, "no go message"
    go = json.loads(got[1])
    start, end = go["start"], go["start"] + go["seconds"]
    time.sleep(max(start - time.time(), 0))  # the fleet starts at one wall-clock instant
    if flavour == "threads":
        client = _client(url, socket_timeout=30, max_connections=64)
        if mode == "rate":
            rl = corral.threads.redis.RateLimit(client, "rl", float(args[0]), namespace=ns)

            def caller(i: int) -> None:
                while time.time() < end:
                    rl.acquire()
                    _log(fd, time.time())

        else:
            lim, _, tok = _limits(corral.threads.redis, client, ns, args)

            def caller(i: int) -> None:
                rng = random.Random(os.getpid() * 100 + i)
                while time.time() < end:
                    estimate = rng.randint(50, 150)
                    with lim.acquire({tok: estimate}) as grant:
                        t = time.time()
                        time.sleep(_hold(rng, mode))  # the API call
                        actual = rng.randint(estimate // 2, estimate)
                        grant.adjust(tok, actual)
                        line = _line(grant, actual, mode)
                    _log(fd, t, line)

        threads = [threading.Thread(target=caller, args=(i,)) for i in range(int(callers))]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        client.close()
        print(json.dumps(_stats(rl if mode == "rate" else tok)))
    else:

        async def run() -> None:
            async with _aclient(url, socket_timeout=30) as client:
                if mode == "rate":
                    rl = corral.redis.RateLimit(client, "rl", float(args[0]), namespace=ns)

                    async def caller(i: int) -> None:
                        while time.time() < end:
                            await rl.acquire()
                            _log(fd, time.time())

                else:
                    lim, _, tok = _limits(corral.redis, client, ns, args)

                    async def caller(i: int) -> None:
                        rng = random.Random(os.getpid() * 100 + i)
                        while time.time() < end:
                            estimate = rng.randint(50, 150)
                            async with lim.acquire({tok: estimate}) as grant:
                                t = time.time()
                                await asyncio.sleep(_hold(rng, mode))
                                actual = rng.randint(estimate // 2, estimate)
                                await grant.adjust(tok, actual)
                                line = _line(grant, actual, mode)
                            _log(fd, t, line)

                await asyncio.gather(*(caller(i) for i in range(int(callers))))
                print(json.dumps(_stats(rl if mode == "rate" else tok)))

        asyncio.run(run())
    os.close(fd)
    control.rpush(f"{ns}:done", os.getpid())
    control.close()


if __name__ == "__main__":
    main()
