"""Semaphore rows: corral's Semaphore against asyncio.Semaphore and threading.Semaphore.

One operation is one acquire followed by one release. Every implementation counts its
acquisitions and the most holders at once; the counts must match ``n`` and the size.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from ..harness import Env, Stopwatch, Timing, check
from ..registry import ImplFn, corral_impl, peer_impl, register

# -- uncontended: one task (or thread) acquires and releases in a loop -------------------------


def _uncontended_async(make: Any, held: Any) -> ImplFn:
    """``make()`` -> semaphore of size 1 (inside the loop); ``held(sem)`` -> permits held."""

    def fn(env: Env, n: int) -> Timing:
        async def main() -> Timing:
            sem = make()
            acquire = sem.acquire
            release = sem.release
            await acquire()  # prove that acquire takes the permit
            check(held(sem) == 1, "acquire did not take the permit")
            release()
            count = 0
            sw = Stopwatch()
            for _ in range(n):
                await acquire()
                release()
                count += 1
            dt = sw.stop()
            check(count == n, f"{count} acquisitions, expected {n}")
            check(held(sem) == 0, "permits still held at the end")
            return dt

        return env.run_async(main)

    return fn


def _uncontended_sync(make: Any, held: Any) -> ImplFn:
    def fn(env: Env, n: int) -> Timing:
        sem = make()
        acquire = sem.acquire
        release = sem.release
        acquire()
        check(held(sem) == 1, "acquire did not take the permit")
        release()
        count = 0
        sw = Stopwatch()
        for _ in range(n):
            acquire()
            release()
            count += 1
        dt = sw.stop()
        check(count == n, f"{count} acquisitions, expected {n}")
        check(held(sem) == 0, "permits still held at the end")
        return dt

    return fn


def _corral_sem() -> Any:
    import corral

    return corral.Semaphore(1)


def _corral_thread_sem() -> Any:
    from corral import threads

    return threads.Semaphore(1)


def _corral_held(sem: Any) -> int:
    held: int = sem.statistics().held
    return held


def _asyncio_held(sem: asyncio.Semaphore) -> int:
    return 1 if sem.locked() else 0


def _threading_held(sem: threading.Semaphore) -> int:
    # No public counter: a non-blocking acquire fails exactly when the permit is taken.
    if sem.acquire(blocking=False):
        sem.release()
        return 0
    return 1


register(
    "sem.uncontended",
    items=200_000,
    quick_items=50_000,
    unit="op",
    note=(
        "acquire + release in a loop, size 1: `await sem.acquire(); sem.release()` in one "
        "task (reference asyncio.Semaphore), `sem.acquire(); sem.release()` in one thread "
        "(reference threading.Semaphore)"
    ),
    impls=[
        corral_impl(
            "corral",
            _uncontended_async(_corral_sem, _corral_held),
            reference="asyncio.Semaphore",
            target=1.2,
        ),
        peer_impl(
            "asyncio.Semaphore", _uncontended_async(lambda: asyncio.Semaphore(1), _asyncio_held)
        ),
        corral_impl(
            "corral.threads",
            _uncontended_sync(_corral_thread_sem, _corral_held),
            reference="threading.Semaphore",
            kind="thread",
        ),
        peer_impl(
            "threading.Semaphore",
            _uncontended_sync(lambda: threading.Semaphore(1), _threading_held),
            kind="thread",
        ),
    ],
)

# -- contended: many tasks, few permits, an await while holding one ----------------------------

TASKS = 100
SIZE = 10


def _contended_async(make: Any, held: Any) -> ImplFn:
    """``TASKS`` tasks share ``n`` acquisitions of a size-``SIZE`` semaphore; each holder
    awaits ``asyncio.sleep(0)`` once, so the others pile up and wait."""

    def fn(env: Env, n: int) -> Timing:
        shares = [n // TASKS + (1 if k < n % TASKS else 0) for k in range(TASKS)]

        async def main() -> Timing:
            sem = make(SIZE)
            acquire = sem.acquire
            release = sem.release
            sleep = asyncio.sleep
            count = inside = peak = 0

            async def worker(share: int) -> None:
                nonlocal count, inside, peak
                for _ in range(share):
                    await acquire()
                    inside += 1
                    if inside > peak:
                        peak = inside
                    await sleep(0)
                    inside -= 1
                    count += 1
                    release()

            sw = Stopwatch()
            await asyncio.gather(*[worker(share) for share in shares])
            dt = sw.stop()
            check(count == n, f"{count} acquisitions, expected {n}")
            check(peak == min(SIZE, TASKS, n), f"at most {peak} holders at once, expected {SIZE}")
            check(held(sem) == 0, "permits still held at the end")
            return dt

        return env.run_async(main)

    return fn


def _corral_sem_n(size: int) -> Any:
    import corral

    return corral.Semaphore(size)


def _asyncio_sem_held(sem: asyncio.Semaphore) -> int:
    return SIZE - sem._value


register(
    "sem.contended",
    items=100_000,
    quick_items=20_000,
    unit="op",
    note=(
        f"{TASKS} tasks, size {SIZE}, each acquires, awaits asyncio.sleep(0), releases, "
        "many times; reference asyncio.Semaphore"
    ),
    impls=[
        corral_impl(
            "corral",
            _contended_async(_corral_sem_n, _corral_held),
            reference="asyncio.Semaphore",
            target=1.1,
        ),
        peer_impl("asyncio.Semaphore", _contended_async(asyncio.Semaphore, _asyncio_sem_held)),
    ],
)
