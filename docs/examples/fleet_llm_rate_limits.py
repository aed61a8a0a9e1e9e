"""A fleet of LLM callers under one account's limits: requests per minute, tokens per minute
and calls in flight, shared by every process through Redis (``corral.redis.RateLimit``,
``Semaphore`` and ``Limits``).

An API's rate limit belongs to the account, not to a process: four workers each holding
"60 requests per minute" send 240. Here four processes (two asyncio, two threads, three
callers each) share one account's RPM, TPM and concurrency through Redis. Each call
reserves an estimate of its tokens (prompt + ``max_tokens``) and, once the reply says how
many it really used, corrects the reservation with ``grant.adjust``: the unused tokens go
back to the account at once, for whichever process waits next. The concurrency permit is
held for the call and given back at the end of the ``with`` block (or, if the process
dies, when its lease runs out).

``Limits`` grants all three in one script or waits holding none; waiters queue in Redis in
FIFO order across processes. Time is scaled down (one "minute" is 1 s) and the API is
simulated. Each process writes the instants each call started and ended to one append-only
file; the parent checks every 1-minute window of that log against the rate limits, and
every instant against the concurrency limit.

Run it with a Redis: ``REDIS_URL=redis://localhost:6379/0 python
docs/examples/fleet_llm_rate_limits.py`` (its keys are under ``example-llm:``). For a Redis
Cluster, add ``REDIS_CLUSTER=1`` (REDIS_URL is then any node's): the limits share one hash
tag, so every script runs on one node.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import random
import sys
import tempfile
import time
from typing import Any

MINUTE = 1.0  # seconds: the scaled-down minute
RPM, TPM, TPM_BURST = 40, 4_000, 800  # the account's limits
CONCURRENT = 3  # calls in flight at once, account-wide
LEASE = 3.0  # a dead process's permit comes back after this (a new name waits it once)
MAX_TOKENS = 120  # what a reply may use at most: reserved until it says
CALLS = 12  # per caller; 4 processes x 3 callers = 144 calls
NS = "example-llm"


def limits(mod: Any, client: Any) -> tuple[Any, Any]:
    """The account's limits, as every process makes them (one tag: one Cluster slot)."""
    rpm = mod.RateLimit(client, "rpm", RPM, per=MINUTE, tag="account-42", namespace=NS)
    tpm = mod.RateLimit(
        client, "tpm", TPM, per=MINUTE, burst=TPM_BURST, tag="account-42", namespace=NS
    )
    calls = mod.Semaphore(client, f"{NS}:calls", CONCURRENT, lease=LEASE, tag="account-42")
    return mod.Limits(rpm, tpm, calls), tpm


def call_sizes(rng: random.Random) -> tuple[int, int]:
    """(estimate reserved, tokens really used) for one simulated call."""
    prompt = rng.randint(20, 80)
    return prompt + MAX_TOKENS, prompt + rng.randint(10, MAX_TOKENS)


def client_class(aio: bool) -> Any:
    """redis-py's client class for REDIS_URL: a cluster client when REDIS_CLUSTER=1."""
    if os.environ.get("REDIS_CLUSTER") == "1":
        if aio:
            from redis.asyncio.cluster import RedisCluster

            return RedisCluster
        from redis.cluster import RedisCluster as BlockingCluster

        return BlockingCluster
    if aio:
        import redis.asyncio

        return redis.asyncio.Redis
    import redis

    return redis.Redis


def log(fd: int, t: float, end: float, tokens: int) -> None:
    # one write on O_APPEND: lines never mix
    os.write(fd, f"{t:.6f} {end:.6f} {tokens}\n".encode())


def asyncio_worker(url: str, path: str, seed: int) -> None:
    import corral.redis

    async def main() -> None:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        async with client_class(aio=True).from_url(url) as client:
            account, tpm = limits(corral.redis, client)

            async def caller(i: int) -> None:
                rng = random.Random(seed * 10 + i)
                for _ in range(CALLS):
                    estimate, used = call_sizes(rng)
                    async with account.acquire({tpm: estimate}) as grant:
                        t = time.time()
                        await asyncio.sleep(rng.uniform(0.01, 0.05))  # the API call
                        await grant.adjust(tpm, used)  # refund what the reply did not use
                        end = time.time()
                    log(fd, t, end, used)

            await asyncio.gather(*(caller(i) for i in range(3)))
        os.close(fd)

    asyncio.run(main())


def threads_worker(url: str, path: str, seed: int) -> None:
    import threading

    import corral.threads.redis

    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    client = client_class(aio=False).from_url(url)
    account, tpm = limits(corral.threads.redis, client)

    def caller(i: int) -> None:
        rng = random.Random(seed * 10 + i)
        for _ in range(CALLS):
            estimate, used = call_sizes(rng)
            with account.acquire({tpm: estimate}) as grant:
                t = time.time()
                time.sleep(rng.uniform(0.01, 0.05))  # the API call
                grant.adjust(tpm, used)
                end = time.time()
            log(fd, t, end, used)

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    client.close()
    os.close(fd)


def most_in_window(rows: list[tuple[float, int]], width: float, weight: bool) -> int:
    """The most requests (or tokens) that started in any window of ``width`` seconds."""
    worst = total = j = 0
    for i, (t, _) in enumerate(rows):
        while j < len(rows) and rows[j][0] < t + width:
            total += rows[j][1] if weight else 1
            j += 1
        worst = max(worst, total)
        total -= rows[i][1] if weight else 1
    return worst


def most_in_flight(spans: list[tuple[float, float]]) -> int:
    """The most calls between their start and end at one instant."""
    events = sorted([(t, 1) for t, _ in spans] + [(end, -1) for _, end in spans])
    peak = cur = 0
    for _, d in events:
        cur += d
        peak = max(peak, cur)
    return peak


def main() -> None:
    url = os.environ.get("REDIS_URL", "redis://localhost:6379/0")
    with client_class(aio=False).from_url(url) as client:  # a clean account for this run
        stale = list(client.scan_iter(f"{NS}:*"))
        # (the semaphore's keys too, but its epoch: a new epoch grants nothing for a lease)
        stale += [k for k in client.scan_iter("{account-42}:" + NS + ":*") if k[-2:] != b":e"]
        if stale:
            client.delete(*stale)
    fd, path = tempfile.mkstemp(prefix="fleet-llm-", suffix=".log")
    os.close(fd)
    ctx = multiprocessing.get_context("spawn")
    workers = [asyncio_worker, asyncio_worker, threads_worker, threads_worker]
    procs = [ctx.Process(target=w, args=(url, path, n)) for n, w in enumerate(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    with open(path) as f:
        lines = [line.split() for line in f]
    os.unlink(path)
    rows = sorted((float(t), int(n)) for t, _, n in lines)
    spans = [(float(t), float(end)) for t, end, _ in lines]
    if any(p.exitcode for p in procs) or len(rows) != len(workers) * 3 * CALLS:
        sys.exit("a worker failed")
    print(
        f"{len(rows)} calls from 4 processes; limits: {RPM} requests/min, {TPM:,} tokens/min,"
        f" {CONCURRENT} in flight"
    )
    print(f"most requests in any minute: <= {RPM}: {most_in_window(rows, MINUTE, False) <= RPM}")
    tokens = most_in_window(rows, MINUTE, True)
    print(f"most tokens in any minute: <= {TPM:,} + burst: {tokens <= TPM + TPM_BURST}")
    print(f"most calls in flight: <= {CONCURRENT}: {most_in_flight(spans) <= CONCURRENT}")


if __name__ == "__main__":
    main()
