"""corral.redis rate-limit rows (issue 21): the fleet-wide RateLimit and Limits against the
Python peers that keep rate-limit state in Redis.

They share ``redis_rows``' server (its own ``redis-server`` on a free port, or
``CORRAL_BENCH_REDIS_URL``) and report MISSING without the ``redis`` client, the
``redis-server`` binary, or the peer's package (``limits``, ``pyrate_limiter``).

* ``redis.rate.uncontended``: one thread acquires in a loop, the limit never binds:
  ``corral.threads.redis.RateLimit.acquire()`` against ``limits``' Redis moving window
  ``hit`` and PyrateLimiter's ``RedisBucket`` (``try_acquire``, non-blocking). One round trip
  each; what differs is the script and the client-side work.
* ``redis.rate.accuracy.4proc``: 4 processes share n acquisitions at 500/s (each peer set
  to "500 per second"); the time per op *is* the rate (2 ms is exact). Figures: achieved
  rate, total error, and the most acquisitions *returned* in any 1-second window (the
  instants each process logged right after its acquire returned). ``limits`` cannot wait:
  its recipe polls ``hit`` every millisecond; PyrateLimiter blocks (it polls inside).
* ``redis.rate.joint3``: uncontended, a ``Limits`` of three limiters (one script, one round
  trip) against three sequential ``RateLimit`` acquires.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

from ..harness import Env, Stopwatch, Timing, check
from ..registry import Impl, register
from ._common import peer
from .ratelimits import accuracy_figures
from .redis_rows import _PREFIX, _REQUIRES, _reap, _url

HUGE = 10**9  # per second: the limit never binds
RATE = 500
PROCS = 4
_P = f"{_PREFIX}:rate"


def _uid() -> str:
    return f"{time.monotonic_ns()}"


def _impl(
    name: str, fn: Any, *, peer: bool, needs: tuple[str, ...] = (), reference: str | None = None
) -> Impl:
    target = None if peer or reference is None else 1.0
    return Impl(
        name, fn, peer=peer, requires=(*_REQUIRES, *needs), reference=reference, target=target
    )


# --- one limiter per implementation (threads, blocking clients) -------------------------------
# Each is a context manager that yields the acquire and, at exit, stops whatever the limiter
# started: PyrateLimiter's runs a leak thread until it is closed (a run must not leave it to
# outlive the row: the test's leak check counts it).


@contextlib.contextmanager
def _corral(client: Any, name: str, rate: float) -> Iterator[Callable[[], Any]]:
    import corral.threads.redis

    rl = corral.threads.redis.RateLimit(client, name, rate, namespace=_P)
    yield rl.acquire


@contextlib.contextmanager
def _limits_hit(url: str, name: str, rate: float, *, wait: bool) -> Iterator[Callable[[], Any]]:
    limits = peer("limits")  # typed Any: the bench extra's peers need no stubs
    st = limits.storage.RedisStorage(url)  # (the URL given: a spawned worker has no _url())
    window = limits.strategies.MovingWindowRateLimiter(st)
    item = limits.RateLimitItemPerSecond(int(rate))

    def hit() -> bool:
        ok: bool = window.hit(item, f"{_P}:{name}")
        return ok

    def acquire() -> None:
        while not hit():  # `limits` cannot wait: the usual recipe polls
            time.sleep(0.001)

    yield acquire if wait else hit


@contextlib.contextmanager
def _pyrate(client: Any, name: str, rate: float, *, wait: bool) -> Iterator[Callable[[], Any]]:
    pl = peer("pyrate_limiter")
    bucket = pl.RedisBucket.init([pl.Rate(int(rate), pl.Duration.SECOND)], client, f"{_P}:{name}")
    limiter = pl.Limiter(bucket)

    def acquire() -> bool:
        return bool(limiter.try_acquire("x", blocking=wait))

    try:
        yield acquire
    finally:
        limiter.close()  # stops (and joins) its leak thread


_MAKERS: dict[str, Callable[..., contextlib.AbstractContextManager[Callable[[], Any]]]] = {
    "corral": lambda c, url, n, r, wait: _corral(c, n, r),
    "limits": lambda c, url, n, r, wait: _limits_hit(url, n, r, wait=wait),
    "pyrate": lambda c, url, n, r, wait: _pyrate(c, n, r, wait=wait),
}


def _uncontended(kind: str) -> Callable[[Env, int], Timing]:
    def run(env: Env, n: int) -> Timing:
        import redis

        with (
            redis.Redis.from_url(_url()) as client,
            _MAKERS[kind](client, _url(), f"u:{_uid()}", HUGE, False) as acquire,
        ):
            acquire()  # script loaded, connection made, clock calibrated
            ok = 0
            sw = Stopwatch()
            for _ in range(n):
                ok += acquire() is not False
            t = sw.stop()
            check(ok == n, f"{ok} of {n} acquires granted")
            return t

    return run


register(
    "redis.rate.uncontended",
    items=3_000,
    quick_items=300,
    unit="op",
    note=(
        "one thread, the limit never binds: corral.threads.redis.RateLimit.acquire() vs "
        "limits' Redis moving-window hit() vs PyrateLimiter's RedisBucket try_acquire"
    ),
    impls=[
        _impl("corral.threads.redis", _uncontended("corral"), peer=False, reference="limits (hit)"),
        _impl("limits (hit)", _uncontended("limits"), peer=True, needs=("limits",)),
        _impl("pyrate-limiter", _uncontended("pyrate"), peer=True, needs=("pyrate_limiter",)),
    ],
)


# --- accuracy over 4 processes ----------------------------------------------------------------


def _fleet_worker(kind: str, url: str, name: str, share: int, log: str, go: str) -> None:
    """One process: wait for the start, acquire ``share`` times, log each return."""
    import redis

    fd = os.open(log, os.O_WRONLY | os.O_APPEND)
    with (
        redis.Redis.from_url(url, socket_timeout=120) as client,
        _MAKERS[kind](client, url, name, RATE, True) as acquire,
    ):
        client.rpush(f"{go}:ready", 1)
        client.blpop([go], timeout=120)
        for _ in range(share):
            acquire()
            os.write(fd, f"{time.time():.6f}\n".encode())
    os.close(fd)


def _describe(times: list[float], n: int) -> str:
    achieved, most = accuracy_figures(times, RATE, 1.0)
    return (
        f"achieved {achieved:,.1f}/s ({(achieved / RATE - 1) * 100:+.2f} % vs {RATE}/s); "
        f"most returned in any 1 s window: {most} (limit {min(RATE, n)})"
    )


def _accuracy(kind: str) -> Callable[[Env, int], Timing]:
    def run(env: Env, n: int) -> Timing:
        import redis

        url = _url()
        name = f"a:{_uid()}"
        go = f"{_P}:go:{name}"
        fd, log = tempfile.mkstemp(prefix="corral-bench-rate-")
        os.close(fd)
        shares = [n // PROCS + (1 if k < n % PROCS else 0) for k in range(PROCS)]
        ctx = multiprocessing.get_context("spawn")  # never fork the bench's threaded process
        procs = [
            ctx.Process(target=_fleet_worker, args=(kind, url, name, s, log, go), daemon=True)
            for s in shares
        ]
        try:
            with redis.Redis.from_url(url, socket_timeout=120) as client:
                for p in procs:
                    p.start()
                for _ in procs:
                    check(client.blpop([f"{go}:ready"], timeout=120) is not None, "no worker")
                sw = Stopwatch()
                client.rpush(go, *[1] * PROCS)
                for p in procs:
                    p.join(env.timeout)
                t = sw.stop()
            with open(log) as f:
                times = [float(line) for line in f]
        finally:
            _reap(procs)
            os.unlink(log)
        check(len(times) == n, f"{len(times)} acquisitions logged, expected {n}")
        return Timing(t.wall, t.cpu, _describe(times, n))

    return run


register(
    "redis.rate.accuracy.4proc",
    items=2_500,
    quick_items=1_000,
    unit="op",
    note=(
        f"{PROCS} processes share n acquisitions of {RATE}/s, each configured as '{RATE} per "
        "second' (corral: burst 1, headroom 5 ms; limits: moving window, 1 ms polling; "
        f"pyrate: RedisBucket, blocking). An exact limiter takes {1e9 / RATE:,.0f} ns per op; "
        "less is overshoot. Process start-up is outside the stopwatch"
    ),
    impls=[
        # No reference: the time per op is the rate, not a speed to beat.
        Impl("corral.threads.redis", _accuracy("corral"), peer=False, requires=_REQUIRES),
        _impl("limits (hit + poll)", _accuracy("limits"), peer=True, needs=("limits",)),
        _impl("pyrate-limiter", _accuracy("pyrate"), peer=True, needs=("pyrate_limiter",)),
    ],
)


# --- Limits of three vs three sequential acquires -----------------------------------------------


def _joint(sequential: bool) -> Callable[[Env, int], Timing]:
    def run(env: Env, n: int) -> Timing:
        import redis

        import corral.threads.redis as cr

        with redis.Redis.from_url(_url()) as client:
            tag = f"j{_uid()}"
            a, b, c = (
                cr.RateLimit(client, x, HUGE, burst=10**6, tag=tag, namespace=_P) for x in "abc"
            )
            limits = cr.Limits(a, b, c)
            costs = {b: 100}

            def three() -> None:
                a.acquire()
                b.acquire(100)
                c.acquire()

            def joint() -> None:
                limits.acquire(costs)

            step = three if sequential else joint
            step()
            sw = Stopwatch()
            for _ in range(n):
                step()
            t = sw.stop()
            check(a.statistics().acquired == n + 1, "not every acquire was granted")
            return t

    return run


register(
    "redis.rate.joint3",
    items=2_000,
    quick_items=300,
    unit="op",
    note=(
        "uncontended: corral.threads.redis.Limits(a, b, c).acquire (one script, all or "
        "nothing) vs a.acquire(); b.acquire(100); c.acquire() (three round trips, not atomic)"
    ),
    impls=[
        _impl("Limits (atomic)", _joint(False), peer=False, reference="3 sequential acquires"),
        _impl("3 sequential acquires", _joint(True), peer=True),
    ],
)
