"""Memory rows: bytes per parked waiter, per idle channel, per task in a group, and the peak
RSS of a long pipeline, each beside the asyncio (or queue) equivalent.

Per-object figures come from ``tracemalloc``: the bytes Python allocated between a point
where nothing of the measured kind exists and the point where ``n`` of them exist (every
waiter parked, every task started), divided by ``n``. Both sides pay for the same
scaffolding (a list of ``n`` tasks, the task objects and their coroutine frames), so the
ratio shows what corral adds; a ``bare`` peer (the same tasks, each awaiting a plain
future) shows that floor. Peak RSS is measured in a child process per run (``ru_maxrss``,
whole process, the same imports on both sides): a parent's high-water mark would carry
over from one implementation to the next.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import queue
import subprocess
import sys
import tracemalloc
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any

from ..harness import BenchError, Env, Memory, check
from ..registry import corral_impl, peer_impl, register

# -- tracemalloc ------------------------------------------------------------------------------


class _Traced:
    __slots__ = ("base", "used")

    def __init__(self) -> None:
        self.base = 0
        self.used = 0

    def mark(self) -> None:
        """Record the bytes allocated since the block started (call at the high point)."""
        self.used = tracemalloc.get_traced_memory()[0] - self.base


@contextmanager
def _traced() -> Iterator[_Traced]:
    """Trace allocations inside the block; ``t.mark()`` where the objects all exist."""
    gc.collect()
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    t = _Traced()
    t.base = tracemalloc.get_traced_memory()[0]
    try:
        yield t
    finally:
        if started:
            tracemalloc.stop()


def _per(t: _Traced, n: int) -> Memory:
    check(t.used > 0, f"traced {t.used} bytes for {n} objects")
    return Memory(float(t.used), n)


# -- parked waiters: n tasks each blocked in one receive / acquire ------------------------------

# park(obj) -> awaitable that blocks; wake(obj, n) wakes all n (after the measurement);
# parked(obj) -> how many are parked now (checked at the measurement).
Parker = tuple[
    Callable[[], Any],
    Callable[[Any], Coroutine[Any, Any, Any]],
    Callable[[Any], int],
    Callable[[Any, int], None],
]


def _parked(make: Callable[[], Parker]) -> Callable[[Env, int], Memory]:
    def fn(env: Env, n: int) -> Memory:
        async def main() -> Memory:
            new, park, parked, wake = make()
            obj = new()
            with _traced() as t:
                tasks = [asyncio.create_task(park(obj)) for _ in range(n)]
                await asyncio.sleep(0)  # every task runs up to its park
                check(parked(obj) == n, f"{parked(obj)} parked, expected {n}")
                t.mark()
            wake(obj, n)
            await asyncio.gather(*tasks)
            return _per(t, n)

        return env.run_async(main)

    return fn


def _corral_recv() -> Parker:
    import corral

    def wake(ch: Any, n: int) -> None:
        for i in range(n):
            ch.send_nowait(i)

    return (
        lambda: corral.Channel(0),
        lambda ch: ch.recv(),
        lambda ch: ch.statistics().waiting_receivers,
        wake,
    )


def _asyncio_get() -> Parker:
    def wake(q: Any, n: int) -> None:
        for i in range(n):
            q.put_nowait(i)

    return (asyncio.Queue, lambda q: q.get(), lambda q: len(q._getters), wake)


def _bare_future() -> Parker:
    """The floor: the same task, parked on a plain future."""
    loop = asyncio.get_running_loop()
    futs: list[asyncio.Future[None]] = []

    async def park(_: object) -> None:
        f = loop.create_future()
        futs.append(f)
        await f

    def wake(_: object, n: int) -> None:
        for f in futs:
            f.set_result(None)

    return (lambda: None, park, lambda _: len(futs), wake)


def _corral_acquire() -> Parker:
    import corral

    def new() -> Any:
        sem = corral.Semaphore(1)
        check(sem.try_acquire(), "the first permit")
        return sem

    async def park(sem: Any) -> None:
        await sem.acquire()
        sem.release()

    return (new, park, lambda s: s.statistics().waiting, lambda s, n: s.release())


def _asyncio_acquire() -> Parker:
    def new() -> asyncio.Semaphore:
        sem = asyncio.Semaphore(1)
        sem._value = 0  # held by "main" (acquire_nowait does not exist)
        return sem

    async def park(sem: asyncio.Semaphore) -> None:
        await sem.acquire()
        sem.release()

    def parked(sem: asyncio.Semaphore) -> int:
        return len(sem._waiters or ())

    return (new, park, parked, lambda s, n: s.release())


register(
    "mem.chan.recv_waiter",
    items=20_000,
    quick_items=2_000,
    unit="waiter",
    metric="bytes",
    note=(
        "bytes per asyncio task parked in `await ch.recv()` on an empty corral.Channel, vs "
        "`await q.get()` on an empty asyncio.Queue; each includes its task and coroutine "
        "(`bare`: the same task parked on a plain future)"
    ),
    impls=[
        corral_impl("corral", _parked(_corral_recv), reference="asyncio.Queue.get", target=1.5),
        peer_impl("asyncio.Queue.get", _parked(_asyncio_get)),
        peer_impl("bare task", _parked(_bare_future)),
    ],
)

register(
    "mem.sem.acquire_waiter",
    items=20_000,
    quick_items=2_000,
    unit="waiter",
    metric="bytes",
    note=(
        "bytes per asyncio task parked in `await sem.acquire()` on a held corral.Semaphore(1), "
        "vs asyncio.Semaphore(1); each includes its task and coroutine"
    ),
    impls=[
        corral_impl("corral", _parked(_corral_acquire), reference="asyncio.Semaphore", target=1.5),
        peer_impl("asyncio.Semaphore", _parked(_asyncio_acquire)),
        peer_impl("bare task", _parked(_bare_future)),
    ],
)


# -- idle channels ----------------------------------------------------------------------------


def _idle(make: Callable[[], object]) -> Callable[[Env, int], Memory]:
    def fn(env: Env, n: int) -> Memory:
        with _traced() as t:
            objs = [make() for _ in range(n)]
            t.mark()
        check(len(objs) == n, "made every channel")
        return _per(t, n)

    return fn


def _corral_channel() -> object:
    import corral

    return corral.Channel(16)


def _corral_thread_channel() -> object:
    from corral import threads

    return threads.Channel(16)


register(
    "mem.chan.idle",
    items=20_000,
    quick_items=2_000,
    unit="channel",
    metric="bytes",
    note=(
        "bytes per idle, empty channel of capacity 16: corral.Channel vs asyncio.Queue(16), "
        "corral.threads.Channel vs queue.Queue(16)"
    ),
    impls=[
        corral_impl(
            "corral", _idle(_corral_channel), reference="asyncio.Queue", target=1.5, kind="task"
        ),
        peer_impl("asyncio.Queue", _idle(lambda: asyncio.Queue(16)), kind="task"),
        corral_impl(
            "corral.threads",
            _idle(_corral_thread_channel),
            reference="queue.Queue",
            target=1.5,
            kind="thread",
        ),
        peer_impl("queue.Queue", _idle(lambda: queue.Queue(16)), kind="thread"),
    ],
)


# -- tasks in a group -------------------------------------------------------------------------


def _group_corral(env: Env, n: int) -> Memory:
    async def main() -> Memory:
        import corral

        ev = asyncio.Event()
        started = [0]

        async def work() -> None:
            started[0] += 1
            await ev.wait()

        with _traced() as t:
            async with corral.Group() as g:
                for _ in range(n):
                    await g.go(work)
                await asyncio.sleep(0)
                check(started[0] == n, f"{started[0]} tasks started, expected {n}")
                t.mark()
                ev.set()
        return _per(t, n)

    return env.run_async(main)


def _group_taskgroup(env: Env, n: int) -> Memory:
    async def main() -> Memory:
        ev = asyncio.Event()
        started = [0]

        async def work() -> None:
            started[0] += 1
            await ev.wait()

        with _traced() as t:
            async with asyncio.TaskGroup() as tg:
                for _ in range(n):
                    tg.create_task(work())
                await asyncio.sleep(0)
                check(started[0] == n, f"{started[0]} tasks started, expected {n}")
                t.mark()
                ev.set()
        return _per(t, n)

    return env.run_async(main)


register(
    "mem.group.task",
    items=20_000,
    quick_items=2_000,
    unit="task",
    metric="bytes",
    note=(
        "bytes per running task (parked on one Event) in corral.Group vs asyncio.TaskGroup, "
        "group included"
    ),
    impls=[
        corral_impl("corral", _group_corral, reference="asyncio.TaskGroup", target=1.5),
        peer_impl("asyncio.TaskGroup", _group_taskgroup),
    ],
)


# -- peak RSS of a long pipeline, in a child process ------------------------------------------


_CHILD = "import sys; from corral._bench.rows.memory import child_main; child_main(sys.argv[1:])"


def _child_rss(which: str, n: int, timeout: float) -> Memory:
    """Run the ``pipeline.3stage`` implementation ``which`` over ``n`` items in a fresh
    interpreter; its peak RSS in bytes (one operation: the run)."""
    try:
        import resource  # noqa: F401  (Unix only: ru_maxrss)
    except ImportError:
        raise BenchError("peak RSS needs the resource module (Unix)") from None
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, which, str(n)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"child run failed ({proc.returncode}): {proc.stderr.strip()[-400:]}")
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    check(got["n"] == n, f"child ran {got['n']} items, expected {n}")
    return Memory(float(got["peak_rss"]), 1)


register(
    "mem.pipeline.rss",
    items=1_000_000,
    quick_items=100_000,
    unit="run",
    metric="bytes",
    note=(
        "peak RSS of a child process running n items through the pipeline.3stage pipeline "
        "(3 stages x 4 workers, buffer 64): corral.pipeline vs the hand-written asyncio.Queue "
        "pipeline; same imports on both sides"
    ),
    impls=[
        corral_impl(
            "corral",
            lambda env, n: _child_rss("corral", n, env.timeout),
            reference="asyncio.Queue pipeline",
            target=1.5,
        ),
        peer_impl("asyncio.Queue pipeline", lambda env, n: _child_rss("queue", n, env.timeout)),
    ],
)


def child_main(argv: list[str]) -> None:
    """The child process of ``mem.pipeline.rss``: ``[which, n]``; prints a JSON line."""
    import resource

    from .patterns import _pipe_corral, _pipe_queue

    which, n = argv[0], int(argv[1])
    impl = {"corral": _pipe_corral, "queue": _pipe_queue}[which]
    impl(Env(), n)  # checks the count and sum itself
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    scale = 1 if sys.platform == "darwin" else 1024  # macOS reports bytes
    print(json.dumps({"n": n, "peak_rss": rss_kib * scale}))
