"""Rate-limit rows (issue 11): corral's RateLimit and Limits against aiolimiter,
pyrate-limiter and aiometer.

* ``rate.uncontended``: the cost of one acquire that never waits.
* ``rate.accuracy``: 2,000 acquisitions at 500/s by 8 contending tasks, threads, or
  both. The time per operation *is* the rate (an exact limiter takes 2 ms per
  acquisition); each run's figures give the achieved rate and, measured at the caller
  (right after each acquire returns), the most acquisitions in any 1-second window and
  the smallest gap between two.
* ``rate.joint3``: an RPM + TPM + connections acquire under contention, atomic
  (``Limits``) against three sequential acquires; figures give the worst and mean wait.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ..harness import Env, Stopwatch, Timing, check
from ..registry import ImplFn, corral_impl, peer_impl, register
from ._common import peer

# -- uncontended: one task (or thread) acquires in a loop; the limit never binds --------------

HUGE = 10**12  # per second: nothing ever waits


def _uncontended_async(make: Callable[[], Any], acquire: Callable[[Any], Awaitable[Any]]) -> ImplFn:
    def fn(env: Env, n: int) -> Timing:
        async def main() -> Timing:
            lim = make()
            count = 0
            sw = Stopwatch()
            for _ in range(n):
                await acquire(lim)
                count += 1
            dt = sw.stop()
            check(count == n, f"{count} acquisitions, expected {n}")
            return dt

        return env.run_async(main)

    return fn


def _corral_rl() -> Any:
    import corral

    return corral.RateLimit(HUGE, burst=10**6)


def _corral_acquire(rl: Any) -> Awaitable[None]:
    return rl.acquire()  # type: ignore[no-any-return]


def _aiolimiter() -> Any:
    return peer("aiolimiter").AsyncLimiter(HUGE, 1)


def _aiolimiter_acquire(lim: Any) -> Awaitable[None]:
    return lim.acquire()  # type: ignore[no-any-return]


def _pyrate() -> Any:
    pl = peer("pyrate_limiter")
    return pl.Limiter(pl.Rate(10**9, pl.Duration.SECOND))


async def _pyrate_acquire_async(lim: Any) -> None:
    check(await lim.try_acquire_async("bench"), "pyrate-limiter refused an acquisition")


def _uncontended_sync(make: Callable[[], Any], acquire: Callable[[Any], object]) -> ImplFn:
    def fn(env: Env, n: int) -> Timing:
        lim = make()
        count = 0
        sw = Stopwatch()
        for _ in range(n):
            acquire(lim)
            count += 1
        dt = sw.stop()
        check(count == n, f"{count} acquisitions, expected {n}")
        return dt

    return fn


def _corral_thread_rl() -> Any:
    from corral import threads

    return threads.RateLimit(HUGE, burst=10**6)


def _pyrate_acquire(lim: Any) -> None:
    check(lim.try_acquire("bench") is True, "pyrate-limiter refused an acquisition")


register(
    "rate.uncontended",
    items=100_000,
    quick_items=20_000,
    unit="op",
    note=(
        "one acquire that never waits (limit 1e12/s): `await rl.acquire()` vs "
        "`await aiolimiter.AsyncLimiter.acquire()` (reference) and pyrate-limiter's "
        "`try_acquire_async`; threads: `rl.acquire()` vs pyrate-limiter's `try_acquire`"
    ),
    impls=[
        corral_impl(
            "corral",
            _uncontended_async(_corral_rl, _corral_acquire),
            reference="aiolimiter",
            target=1.0,
        ),
        peer_impl(
            "aiolimiter",
            _uncontended_async(_aiolimiter, _aiolimiter_acquire),
            requires=["aiolimiter"],
        ),
        peer_impl(
            "pyrate-limiter async",
            _uncontended_async(_pyrate, _pyrate_acquire_async),
            requires=["pyrate_limiter"],
        ),
        corral_impl(
            "corral.threads",
            _uncontended_sync(_corral_thread_rl, lambda rl: rl.acquire()),
            reference="pyrate-limiter",
            target=1.0,
            kind="thread",
        ),
        peer_impl(
            "pyrate-limiter",
            _uncontended_sync(_pyrate, _pyrate_acquire),
            requires=["pyrate_limiter"],
            kind="thread",
        ),
    ],
)

# -- accuracy: 8 tasks contend for 500/s ------------------------------------------------------

RATE = 500
PER = 1.0
TASKS = 8


def accuracy_figures(times: list[float], rate: float = RATE, per: float = PER) -> tuple[float, int]:
    """(achieved rate over the run, most acquisitions in any window of ``per`` seconds).

    The rate is counted from the first grant to the last, (n - 1) / span, so a limiter
    that lets its whole burst through at the start shows it; the window is half-open,
    [t, t + per), anchored at every grant.
    """
    ts = sorted(times)
    span = ts[-1] - ts[0]
    achieved = (len(ts) - 1) / span if span > 0 else float("inf")
    most = 0
    j = 0
    for i, t in enumerate(ts):
        while j < len(ts) and ts[j] < t + per:
            j += 1
        most = max(most, j - i)
    return achieved, most


def smallest_gap(times: list[float]) -> float:
    """The least time between two consecutive instants (``inf`` for fewer than two)."""
    ts = sorted(times)
    return min((b - a for a, b in itertools.pairwise(ts)), default=float("inf"))


def _describe(times: list[float], n: int) -> str:
    achieved, most = accuracy_figures(times)
    limit = round(RATE * PER) if n > RATE * PER else n
    gap = smallest_gap(times)
    return (
        f"achieved {achieved:,.1f}/s ({(achieved / RATE - 1) * 100:+.2f} % vs {RATE}/s); "
        f"at the caller: most in any {PER:g} s window {most} (limit {limit}), "
        f"smallest gap {gap * 1e3:.3f} ms (interval {PER / RATE * 1e3:g} ms)"
    )


def _shares(n: int, k: int) -> list[int]:
    return [n // k + (1 if i < n % k else 0) for i in range(k)]


def _accuracy_tasks(make: Callable[[], Any], acquire: Callable[[Any], Awaitable[Any]]) -> ImplFn:
    def fn(env: Env, n: int) -> Timing:
        async def main() -> Timing:
            lim = make()
            times: list[float] = []
            clock = time.monotonic

            async def worker(share: int) -> None:
                for _ in range(share):
                    await acquire(lim)
                    times.append(clock())  # at the caller: right after the acquire returned

            sw = Stopwatch()
            await asyncio.gather(*(worker(s) for s in _shares(n, TASKS)))
            dt = sw.stop()
            check(len(times) == n, f"{len(times)} acquisitions, expected {n}")
            return Timing(dt.wall, dt.cpu, _describe(times, n))

        return env.run_async(main)

    return fn


def _accuracy_threads(make: Callable[[], Any], acquire: Callable[[Any], object]) -> ImplFn:
    def fn(env: Env, n: int) -> Timing:
        lim = make()
        times: list[float] = []
        clock = time.monotonic

        def worker(share: int) -> None:
            for _ in range(share):
                acquire(lim)
                times.append(clock())  # list.append is atomic: no lock in the measurement

        threads = [threading.Thread(target=worker, args=(s,)) for s in _shares(n, TASKS)]
        sw = Stopwatch()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        dt = sw.stop()
        check(len(times) == n, f"{len(times)} acquisitions, expected {n}")
        return Timing(dt.wall, dt.cpu, _describe(times, n))

    return fn


def _corral_mixed_accuracy(env: Env, n: int) -> Timing:
    """Half the workers are tasks (``corral.RateLimit``), half threads (its
    ``as_threads()`` view): one limit, both flavours."""
    import corral

    async def main() -> Timing:
        rl = corral.RateLimit(RATE, per=PER)
        trl = rl.as_threads()
        times: list[float] = []
        clock = time.monotonic
        shares = _shares(n, TASKS)

        async def task_worker(share: int) -> None:
            for _ in range(share):
                await rl.acquire()
                times.append(clock())

        def thread_worker(share: int) -> None:
            for _ in range(share):
                trl.acquire()
                times.append(clock())

        half = TASKS // 2
        threads = [threading.Thread(target=thread_worker, args=(s,)) for s in shares[:half]]
        sw = Stopwatch()
        for t in threads:
            t.start()
        await asyncio.gather(*(task_worker(s) for s in shares[half:]))
        for t in threads:
            await asyncio.to_thread(t.join)
        dt = sw.stop()
        check(len(times) == n, f"{len(times)} acquisitions, expected {n}")
        return Timing(dt.wall, dt.cpu, _describe(times, n))

    return env.run_async(main)


def _corral_rate() -> Any:
    import corral

    return corral.RateLimit(RATE, per=PER)


def _corral_thread_rate() -> Any:
    from corral import threads

    return threads.RateLimit(RATE, per=PER)


def _aiolimiter_rate() -> Any:
    return peer("aiolimiter").AsyncLimiter(RATE, PER)


def _pyrate_rate() -> Any:
    pl = peer("pyrate_limiter")
    return pl.Limiter(pl.Rate(RATE, pl.Duration.SECOND * PER))


def _pyrate_blocking(lim: Any) -> None:
    check(lim.try_acquire("bench") is True, "pyrate-limiter refused an acquisition")


def _aiometer_accuracy(env: Env, n: int) -> Timing:
    aiometer = peer("aiometer")

    async def main() -> Timing:
        times: list[float] = []
        clock = time.monotonic

        async def job() -> None:
            times.append(clock())

        sw = Stopwatch()
        await aiometer.run_all([job] * n, max_at_once=TASKS, max_per_second=RATE / PER)
        dt = sw.stop()
        check(len(times) == n, f"{len(times)} jobs started, expected {n}")
        return Timing(dt.wall, dt.cpu, _describe(times, n))

    return env.run_async(main)


register(
    "rate.accuracy",
    items=2_000,
    quick_items=2_000,  # fewer would fit in aiolimiter's bucket and measure nothing
    unit="op",
    note=(
        f"{TASKS} tasks (or threads) share n acquisitions of {RATE} per {PER:g} s, each "
        f"configured as '{RATE} per second': RateLimit({RATE}) (burst 1; threads; half "
        f"tasks half threads), AsyncLimiter({RATE}, 1) (its bucket holds {RATE}), "
        f"pyrate-limiter Rate({RATE}, SECOND) blocking (tasks; threads), aiometer "
        f"max_per_second={RATE}, max_at_once={TASKS}. Each caller stamps the clock right "
        "after its acquire returns: the figures are at the caller (worst window, "
        f"smallest gap). An exact limiter takes {1e9 / RATE:,.0f} ns per op; less is "
        "overshoot, more is the price of the caller-side guarantee (corral: wake-up "
        "latency is not made up with burst 1)"
    ),
    impls=[
        # No reference: the time per op is the rate, not a speed to beat.
        corral_impl("corral", _accuracy_tasks(_corral_rate, _corral_acquire), reference=None),
        corral_impl(
            "corral.threads",
            _accuracy_threads(_corral_thread_rate, lambda rl: rl.acquire()),
            reference=None,
            kind="thread",
        ),
        corral_impl("corral mixed", _corral_mixed_accuracy, reference=None),
        peer_impl(
            "aiolimiter",
            _accuracy_tasks(_aiolimiter_rate, _aiolimiter_acquire),
            requires=["aiolimiter"],
        ),
        peer_impl(
            "pyrate-limiter async",
            _accuracy_tasks(_pyrate_rate, _pyrate_acquire_async),
            requires=["pyrate_limiter"],
        ),
        peer_impl(
            "pyrate-limiter",
            _accuracy_threads(_pyrate_rate, _pyrate_blocking),
            requires=["pyrate_limiter"],
            kind="thread",
        ),
        peer_impl("aiometer", _aiometer_accuracy, requires=["aiometer"]),
    ],
)

# -- three limits at once, under contention -----------------------------------------------------

JOINT_TASKS = 32
RPM = 2_000.0  # per second here: the scenario is scaled so that every limit binds at times
RPM_BURST = 8
TPM = 17_000.0  # 1..16 tokens a call: 8.5 on average, 2,000 calls/s
TPM_BURST = 200
CONNS = 8
#: Each call holds its connection across asyncio.sleep(d): d is 0.5 ms, or 25 ms for one
#: call in ten (a slow reply), so connections run out now and then, as with a real API.
CALL_S = (0.0005, 0.025)
WINDOW = 0.1  # seconds: the API-side window in which starts are counted


def _joint_impl(sequential: bool) -> ImplFn:
    def fn(env: Env, n: int) -> Timing:
        import corral

        async def main() -> Timing:
            rpm = corral.RateLimit(RPM, burst=RPM_BURST)
            tpm = corral.RateLimit(TPM, burst=TPM_BURST)
            conns = corral.Semaphore(CONNS)
            limits = corral.Limits(rpm, tpm, conns)
            rng = random.Random(7)
            costs = [rng.randint(1, 16) for _ in range(n)]
            waits: list[float] = []
            starts: list[float] = []
            inside = peak = 0
            clock = time.perf_counter
            sleep = asyncio.sleep

            slow = [rng.random() < 0.1 for _ in range(n)]

            async def api_call(i: int) -> None:
                nonlocal inside, peak
                t = clock()
                starts.append(t)
                inside += 1
                peak = max(peak, inside)
                await sleep(CALL_S[slow[i]])
                inside -= 1

            async def call(i: int) -> None:
                cost = costs[i]
                t0 = clock()
                if sequential:
                    await rpm.acquire()
                    await tpm.acquire(cost)
                    async with conns.acquire():
                        waits.append(clock() - t0)
                        await api_call(i)
                else:
                    async with limits.acquire({tpm: cost}):
                        waits.append(clock() - t0)
                        await api_call(i)

            async def worker(k: int) -> None:
                for i in range(k, n, JOINT_TASKS):
                    await call(i)

            sw = Stopwatch()
            await asyncio.gather(*(worker(k) for k in range(JOINT_TASKS)))
            dt = sw.stop()
            check(len(waits) == n, f"{len(waits)} calls, expected {n}")
            check(peak <= CONNS, f"{peak} calls at once, limit {CONNS}")
            check(conns.statistics().held == 0, "connections still held")
            check(tpm.statistics().granted == sum(costs), "tokens charged != tokens asked")
            waits.sort()
            _, most = accuracy_figures(starts, RPM, WINDOW)
            text = (
                f"{n / dt.wall:,.0f} calls/s; wait worst {waits[-1] * 1e3:.1f} ms, "
                f"p99 {waits[int(0.99 * (n - 1))] * 1e3:.1f} ms; calls started in any "
                f"{WINDOW * 1e3:g} ms: at most {most} "
                f"(RPM allows {RPM * WINDOW + RPM_BURST:g})"
            )
            return Timing(dt.wall, dt.cpu, text)

        return env.run_async(main)

    return fn


register(
    "rate.joint3",
    items=6_000,
    quick_items=2_000,
    unit="call",
    note=(
        f"{JOINT_TASKS} tasks make n API calls (0.5 ms each, 25 ms for one in ten), each "
        "needing 1 of "
        f"RPM ({RPM:g}/s, burst {RPM_BURST}), 1..16 tokens of TPM ({TPM:g}/s, burst "
        f"{TPM_BURST}) and 1 of {CONNS} connections: `Limits(rpm, tpm, conns).acquire(...)` "
        "(atomic) vs `await rpm.acquire(); await tpm.acquire(c); async with "
        "conns.acquire()` (sequential, the same corral primitives, the reference). "
        "Sequential acquires spend rate while waiting for a connection, so the calls "
        "then start in bunches the rate limit never allowed"
    ),
    impls=[
        corral_impl("corral Limits", _joint_impl(False), reference="sequential"),
        peer_impl("sequential", _joint_impl(True)),
    ],
)
