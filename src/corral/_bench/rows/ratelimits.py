"""Rate-limit rows (issue 11): corral's RateLimit and Limits against aiolimiter,
pyrate-limiter and aiometer.

* ``rate.uncontended``: the cost of one acquire that never waits.
* ``rate.accuracy``: 2,000 acquisitions at 500/s by 8 contending tasks. The time per
  operation *is* the rate (an exact limiter takes 2 ms per acquisition); each run's
  figures give the achieved rate and the most acquisitions seen in any 1-second window.
* ``rate.joint3``: an RPM + TPM + connections acquire under contention, atomic
  (``Limits``) against three sequential acquires; figures give the worst and mean wait.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ..harness import Env, Stopwatch, Timing, check
from ..registry import ImplFn, corral_impl, peer_impl, register

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
    import aiolimiter

    return aiolimiter.AsyncLimiter(HUGE, 1)


def _aiolimiter_acquire(lim: Any) -> Awaitable[None]:
    return lim.acquire()  # type: ignore[no-any-return]


def _pyrate() -> Any:
    from pyrate_limiter import Duration, Limiter, Rate

    return Limiter(Rate(10**9, Duration.SECOND))


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


def _describe(times: list[float], n: int) -> tuple[str, float, int]:
    achieved, most = accuracy_figures(times)
    limit = round(RATE * PER) if n > RATE * PER else n
    text = (
        f"achieved {achieved:,.1f}/s ({(achieved / RATE - 1) * 100:+.2f} % vs {RATE}/s); "
        f"most in any {PER:g} s window: {most} (limit {limit})"
    )
    return text, achieved, most


def _accuracy_tasks(make: Callable[[], Any], acquire: Callable[[Any], Awaitable[Any]]) -> ImplFn:
    def fn(env: Env, n: int) -> Timing:
        async def main() -> Timing:
            lim = make()
            times: list[float] = []
            clock = time.monotonic
            shares = [n // TASKS + (1 if k < n % TASKS else 0) for k in range(TASKS)]

            async def worker(share: int) -> None:
                for _ in range(share):
                    await acquire(lim)
                    times.append(clock())

            sw = Stopwatch()
            await asyncio.gather(*(worker(s) for s in shares))
            dt = sw.stop()
            check(len(times) == n, f"{len(times)} acquisitions, expected {n}")
            text, _, _ = _describe(times, n)
            return Timing(dt.wall, dt.cpu, text)

        return env.run_async(main)

    return fn


def _corral_rate() -> Any:
    import corral

    return corral.RateLimit(RATE, per=PER)


def _aiolimiter_rate() -> Any:
    import aiolimiter

    return aiolimiter.AsyncLimiter(RATE, PER)


def _aiometer_accuracy(env: Env, n: int) -> Timing:
    import aiometer

    async def main() -> Timing:
        times: list[float] = []
        clock = time.monotonic

        async def job() -> None:
            times.append(clock())

        sw = Stopwatch()
        await aiometer.run_all([job] * n, max_at_once=TASKS, max_per_second=RATE / PER)
        dt = sw.stop()
        check(len(times) == n, f"{len(times)} jobs started, expected {n}")
        text, _, _ = _describe(times, n)
        return Timing(dt.wall, dt.cpu, text)

    return env.run_async(main)


register(
    "rate.accuracy",
    items=2_000,
    quick_items=2_000,  # fewer would fit in aiolimiter's bucket and measure nothing
    unit="op",
    note=(
        f"{TASKS} tasks share n acquisitions of {RATE} per {PER:g} s, each configured as "
        f"'{RATE} per second': RateLimit({RATE}) (burst 1), AsyncLimiter({RATE}, 1) (its "
        f"bucket holds {RATE}), aiometer max_per_second={RATE}, max_at_once={TASKS}. "
        f"An exact limiter takes {1e9 / RATE:,.0f} ns per op; less is overshoot"
    ),
    impls=[
        # No reference: the time per op is the rate, not a speed to beat.
        corral_impl("corral", _accuracy_tasks(_corral_rate, _corral_acquire), reference=None),
        peer_impl(
            "aiolimiter",
            _accuracy_tasks(_aiolimiter_rate, _aiolimiter_acquire),
            requires=["aiolimiter"],
        ),
        peer_impl("aiometer", _aiometer_accuracy, requires=["aiometer"]),
    ],
)

# -- three limits at once, under contention -----------------------------------------------------

JOINT_TASKS = 16
RPM = 40_000.0  # per second here: the test is scaled so the limits bind within a second
TPM = 300_000.0
TPM_BURST = 400
CONNS = 4


def _joint_impl(sequential: bool) -> ImplFn:
    def fn(env: Env, n: int) -> Timing:
        import corral

        async def main() -> Timing:
            rpm = corral.RateLimit(RPM, burst=8)
            tpm = corral.RateLimit(TPM, burst=TPM_BURST)
            conns = corral.Semaphore(CONNS)
            limits = corral.Limits(rpm, tpm, conns)
            rng = random.Random(7)
            costs = [rng.randint(1, 16) for _ in range(n)]
            waits: list[float] = []
            inside = peak = 0
            clock = time.perf_counter
            sleep = asyncio.sleep

            async def call(cost: int) -> None:
                nonlocal inside, peak
                t0 = clock()
                if sequential:
                    await rpm.acquire()
                    await tpm.acquire(cost)
                    await conns.acquire()
                    waits.append(clock() - t0)
                    try:
                        inside += 1
                        peak = max(peak, inside)
                        await sleep(0)
                        inside -= 1
                    finally:
                        conns.release()
                else:
                    async with limits.acquire({tpm: cost}):
                        waits.append(clock() - t0)
                        inside += 1
                        peak = max(peak, inside)
                        await sleep(0)
                        inside -= 1

            async def worker(k: int) -> None:
                for i in range(k, n, JOINT_TASKS):
                    await call(costs[i])

            sw = Stopwatch()
            await asyncio.gather(*(worker(k) for k in range(JOINT_TASKS)))
            dt = sw.stop()
            check(len(waits) == n, f"{len(waits)} calls, expected {n}")
            check(peak <= CONNS, f"{peak} calls at once, limit {CONNS}")
            check(conns.statistics().held == 0, "connections still held")
            check(tpm.statistics().granted == sum(costs), "tokens charged != tokens asked")
            waits.sort()
            text = (
                f"{n / dt.wall:,.0f} calls/s; wait worst {waits[-1] * 1e3:.2f} ms, "
                f"p99 {waits[int(0.99 * (n - 1))] * 1e3:.2f} ms, "
                f"mean {sum(waits) / n * 1e3:.3f} ms"
            )
            return Timing(dt.wall, dt.cpu, text)

        return env.run_async(main)

    return fn


register(
    "rate.joint3",
    items=20_000,
    quick_items=5_000,
    unit="call",
    note=(
        f"{JOINT_TASKS} tasks make n calls, each needing 1 of RPM ({RPM:g}/s, burst 8), "
        f"1..16 tokens of TPM ({TPM:g}/s, burst {TPM_BURST}) and 1 of {CONNS} connections, "
        "held across one await: `Limits(rpm, tpm, conns).acquire(...)` (atomic) vs "
        "`await rpm.acquire(); await tpm.acquire(c); await conns.acquire()` (sequential, "
        "the same corral primitives, the reference)"
    ),
    impls=[
        corral_impl("corral Limits", _joint_impl(False), reference="sequential"),
        peer_impl("sequential", _joint_impl(True)),
    ],
)
