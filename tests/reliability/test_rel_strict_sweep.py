"""The strict cancellation rule, swept over every blocking operation (issue 17).

docs/design.md, "The cancellation rule": a cancelled call either had no effect and raises,
or completed (its result stands) and the cancellation is raised at the task's next await.

For each operation a target task performs it three times in a row, under contention, and
counts what completed; ``cancel_sweep`` cancels the task at every scheduling step (so also
in the gap where a result was delivered and the task not yet run again: the cancellation
racing completion). Afterwards:

* a task that ends normally after ``task.cancel()`` returned True did at most the one
  operation it was in (its result stood); a second one means the cancellation was
  swallowed;
* what the target reports it did, it did (each scenario checks its own ledger: permits,
  costs charged, results, items), and ``run_schedule`` checks that no waiter is left queued,
  no permit held, no task pending.

The channel and select operations are swept in test_rel_cancel_sweep.py; this file adds
Semaphore / RateLimit / Limits acquire, Group.go under a limit and Group.wait,
SingleFlight.do / do_shared / do_chan, Context.wait, and fan_out / pipeline iteration. The
thread flavour, whose "cancellation" is a Context or a timeout, is checked at the end.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import corral
import corral.testing as ct
import corral.threads
from corral.testing import Schedule

from . import figures

pytestmark = pytest.mark.timeout(figures.TIMEOUT)

SEEDS = figures.count(6, quick=3, stress=60)
ROUNDS = 3


class Target:
    """The swept task: how many operations it completed, and how many when cancelled."""

    def __init__(self) -> None:
        self.done = 0
        self.at_cancel: int | None = None
        self.task: asyncio.Task[Any] | None = None

    def register(self, sched: Schedule, task: asyncio.Task[Any]) -> None:
        self.task = task

        def cancel() -> bool:
            if not task.done():
                self.at_cancel = self.done
            return task.cancel()

        sched.cancel_target(cancel)

    def check(self) -> None:
        task = self.task
        assert task is not None
        assert task.done()
        if not task.cancelled():
            assert task.exception() is None, repr(task.exception())
        if self.at_cancel is not None and not task.cancelled():
            extra = self.done - self.at_cancel
            assert extra <= 1, f"cancellation swallowed: {extra} operations after task.cancel()"


Scenario = Callable[[Schedule], Awaitable[None]]


def _named(name: str, fn: Scenario) -> Scenario:
    fn.__qualname__ = f"strict({name})"
    return fn


# --- limits ---------------------------------------------------------------------------------


def sem_acquire(n: int, form: str) -> Scenario:
    async def scenario(sched: Schedule) -> None:
        sem = corral.Semaphore(2)
        target = Target()
        held_by_target: list[int] = []

        async def other() -> None:
            for _ in range(ROUNDS):
                async with sem.acquire(1):
                    await asyncio.sleep(0)

        async def body() -> None:
            for _ in range(ROUNDS):
                if form == "await":
                    await sem.acquire(n)
                    held_by_target.append(n)
                    target.done += 1
                    sem.release(n)
                    held_by_target.pop()
                elif form == "async with sem":
                    async with sem:
                        target.done += 1
                else:
                    async with sem.acquire(n):
                        target.done += 1
                await asyncio.sleep(0)

        others = [asyncio.create_task(other()) for _ in range(2)]
        t = asyncio.create_task(body())
        target.register(sched, t)
        await asyncio.gather(t, return_exceptions=True)
        if held_by_target:  # cancelled between acquire and release: the permit stood
            sem.release(held_by_target.pop())
        await asyncio.gather(*others)
        target.check()
        assert sem.statistics().held == 0

    return _named(f"Semaphore.acquire({n}) {form}", scenario)


def rate_acquire(joint: bool) -> Scenario:
    async def scenario(sched: Schedule) -> None:
        clock = ct.ManualClock()
        rl = corral.RateLimit(4, per=1.0, burst=2, clock=clock)
        sem = corral.Semaphore(2)
        limits = corral.Limits(rl, sem)
        target = Target()
        charged: list[int] = []

        async def take(c: int) -> None:
            if joint:
                async with limits.acquire({rl: c}):
                    charged.append(c)
            else:
                await rl.acquire(c)
                charged.append(c)

        async def other() -> None:
            for _ in range(ROUNDS):
                await take(1)

        async def body() -> None:
            for _ in range(ROUNDS):
                await take(2)
                target.done += 1

        others = [asyncio.create_task(other()) for _ in range(2)]
        t = asyncio.create_task(body())
        target.register(sched, t)
        tasks = [t, *others]
        while not all(x.done() for x in tasks):
            clock.advance(0.125)
            await asyncio.sleep(0)
        await asyncio.gather(t, return_exceptions=True)
        await asyncio.gather(*others)
        target.check()
        assert rl.statistics().granted == sum(charged), (rl.statistics(), charged)
        assert sem.statistics().held == 0

    return _named("Limits.acquire" if joint else "RateLimit.acquire", scenario)


# --- Group ----------------------------------------------------------------------------------


def group_go(limit: int | None) -> Scenario:
    """The parent task starts workers with ``await g.go`` (waiting for a slot under the
    limit), then waits for them at the block's exit (Group.wait)."""

    async def scenario(sched: Schedule) -> None:
        target = Target()
        finished: list[int] = []

        async def worker(i: int) -> None:
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            finished.append(i)

        async def body() -> None:
            async with corral.Group(limit=limit) as g:
                for i in range(ROUNDS):
                    await g.go(worker, i)
                    target.done += 1
            target.done += 1  # Group.wait (the block's exit) completed

        t = asyncio.create_task(body())
        target.register(sched, t)
        await asyncio.gather(t, return_exceptions=True)
        target.check()
        if not t.cancelled():
            assert sorted(finished) == list(range(ROUNDS)), finished

    return _named(f"Group.go(limit={limit}) + wait", scenario)


def group_wait() -> Scenario:
    async def scenario(sched: Schedule) -> None:
        target = Target()

        async def worker() -> None:
            for _ in range(3):
                await asyncio.sleep(0)

        async def body() -> None:
            for _ in range(ROUNDS):
                g = corral.Group()
                await g.go(worker)
                await g.wait()
                target.done += 1

        t = asyncio.create_task(body())
        target.register(sched, t)
        await asyncio.gather(t, return_exceptions=True)
        target.check()

    return _named("Group.wait", scenario)


# --- SingleFlight ---------------------------------------------------------------------------


def singleflight(call: str) -> Scenario:
    async def scenario(sched: Schedule) -> None:
        sf: corral.SingleFlight[int, int] = corral.SingleFlight()
        target = Target()
        results: list[int] = []

        async def fn(k: int) -> int:
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            return k * 10

        async def do(k: int) -> int:
            if call == "do":
                return await sf.do(k, fn, k)
            if call == "do_shared":
                return (await sf.do_shared(k, fn, k)).value
            return (await sf.do_chan(k, fn, k).recv()).value

        async def follower() -> None:
            for k in range(ROUNDS):
                assert await sf.do(k, fn, k) == k * 10

        async def body() -> None:
            for k in range(ROUNDS):
                results.append(await do(k))
                target.done += 1

        t = asyncio.create_task(body())
        f = asyncio.create_task(follower())
        target.register(sched, t)
        await asyncio.gather(t, return_exceptions=True)
        await f
        if call == "do_chan":
            # A do_chan flight is not its caller's to stop (Go's DoChan): a caller cancelled
            # in recv() leaves it running until fn returns into the channel's buffer.
            for _ in range(100):
                if not sf.statistics().in_flight:
                    break
                await asyncio.sleep(0)
        target.check()
        assert results == [k * 10 for k in range(len(results))], results
        assert sf.statistics().in_flight == 0  # the key never sticks

    return _named(f"SingleFlight.{call}", scenario)


# --- Context.wait ---------------------------------------------------------------------------


def context_wait() -> Scenario:
    async def scenario(sched: Schedule) -> None:
        ctxs = [corral.with_cancel(corral.background()) for _ in range(ROUNDS)]
        target = Target()

        async def canceller() -> None:
            for c in ctxs:
                await asyncio.sleep(0)
                c.cancel()

        async def body() -> None:
            for c in ctxs:
                await c.wait()
                assert c.cancelled
                target.done += 1

        t = asyncio.create_task(body())
        target.register(sched, t)
        k = asyncio.create_task(canceller())
        await asyncio.gather(t, return_exceptions=True)
        await k
        target.check()

    return _named("Context.wait", scenario)


# --- fan_out / pipeline iteration -----------------------------------------------------------


def flow_iteration(kind: str) -> Scenario:
    async def scenario(sched: Schedule) -> None:
        src = list(range(6))
        target = Target()
        got: list[int] = []

        async def step(x: int) -> int:
            await asyncio.sleep(0)
            return x

        def flow() -> Any:
            if kind == "fan_out":
                return corral.fan_out(step, src, workers=2, buffer=1)
            return corral.pipeline(src, *[corral.stage(step, workers=2, buffer=1)] * 2)

        async def body() -> None:
            async with flow() as out:
                async for x in out:
                    got.append(x)
                    target.done += 1

        t = asyncio.create_task(body())
        target.register(sched, t)
        await asyncio.gather(t, return_exceptions=True)
        target.check()
        assert len(got) == len(set(got)), got
        if not t.cancelled():
            assert sorted(got) == src, got

    return _named(f"{kind} iteration", scenario)


OPERATIONS: dict[str, Callable[[], Scenario]] = {
    "Semaphore.acquire(1) await": lambda: sem_acquire(1, "await"),
    "Semaphore.acquire(2) async with": lambda: sem_acquire(2, "async with acquire"),
    "async with sem": lambda: sem_acquire(1, "async with sem"),
    "RateLimit.acquire": lambda: rate_acquire(joint=False),
    "Limits.acquire": lambda: rate_acquire(joint=True),
    "Group.go limit=1 + wait": lambda: group_go(1),
    "Group.go limit=2 + wait": lambda: group_go(2),
    "Group.go no limit + wait": lambda: group_go(None),
    "Group.wait": group_wait,
    "SingleFlight.do": lambda: singleflight("do"),
    "SingleFlight.do_shared": lambda: singleflight("do_shared"),
    "SingleFlight.do_chan": lambda: singleflight("do_chan"),
    "Context.wait": context_wait,
    "fan_out iteration": lambda: flow_iteration("fan_out"),
    "pipeline iteration": lambda: flow_iteration("pipeline"),
}


@pytest.mark.parametrize("name", list(OPERATIONS))
def test_a_cancelled_operation_had_no_effect_or_its_result_stands_and_the_task_is_cancelled(
    name: str,
) -> None:
    report = None
    try:
        report = ct.cancel_sweep(OPERATIONS[name](), seeds=range(SEEDS))
    finally:
        figures.record(
            "cancellation sweep (strict)",
            f"{name}: no effect, or result stands and the cancellation is raised next",
            f"{report.runs} cancel points ({report.landed} live), 0 swallowed"
            if report
            else "FAILED",
            "",
            report is not None,
        )
    assert report.landed > 0


# --- threads: the cancellation is a Context (or a timeout) ------------------------------------


THREAD_RUNS = figures.count(150, quick=60, stress=1500)


def _thread_race(
    setup: Callable[[], None],
    op: Callable[[corral.Context], Any],
    kick: Callable[[], None],
    undo: Callable[[], None],
    no_effect: Callable[[], bool],
    parked: Callable[[], bool],
) -> tuple[int, int]:
    """Per run: ``setup()`` makes ``op`` block; a thread runs ``op(ctx)`` while the main
    thread, in a random order and after a random short spin, cancels ``ctx`` and calls
    ``kick()`` (which lets ``op`` complete). Either ``op`` raised ``Cancelled`` and had no
    effect (``no_effect()`` after the run), or it returned, its result stands (``undo()``
    takes it back), and the thread's next call with that ctx raised."""
    rng = random.Random(0)
    raised = completed = 0
    for _ in range(THREAD_RUNS):
        setup()
        ctx = corral.with_cancel(corral.background())
        start = threading.Barrier(2)
        outcome: list[str] = []
        spin = rng.randrange(0, 300)
        kick_first = rng.random() < 0.5

        def run(
            c: corral.CancelContext = ctx, b: threading.Barrier = start, out: list[str] = outcome
        ) -> None:
            b.wait()
            try:
                op(c)
            except corral.Cancelled:
                out.append("raised")
                return
            out.append("completed")
            try:  # the next blocking call with the cancelled ctx raises
                op(c)
            except corral.Cancelled:
                out.append("next raised")

        t = threading.Thread(target=run)
        t.start()
        start.wait()
        if rng.random() < 0.8:  # mostly once the operation waits: the race is at the claim
            deadline = time.monotonic() + 10
            while not parked() and time.monotonic() < deadline:
                time.sleep(0)  # polls a condition; not timing-dependent
        for _ in range(spin):
            pass
        if kick_first:
            kick()
            ctx.cancel()
        else:
            ctx.cancel()
            kick()
        t.join(10)
        assert not t.is_alive(), "the operation did not end"
        if outcome == ["raised"]:
            raised += 1
            assert no_effect(), "a cancelled operation had an effect"
        else:
            completed += 1
            assert outcome == ["completed", "next raised"], outcome
            undo()
            assert no_effect()
    return raised, completed


def test_threads_a_ctx_cancelled_operation_had_no_effect_or_its_result_stands() -> None:
    rows: list[tuple[str, tuple[int, int]]] = []

    sem = corral.threads.Semaphore(1)
    rows.append(
        (
            "Semaphore.acquire",
            _thread_race(
                setup=lambda: sem.acquire(),
                op=lambda ctx: sem.acquire(ctx=ctx),
                kick=sem.release,
                undo=sem.release,
                no_effect=lambda: sem.statistics().held == 0,
                parked=lambda: sem.statistics().waiting == 1,
            ),
        )
    )

    ch: corral.threads.Channel[int] = corral.threads.Channel(1)
    rows.append(
        (
            "Channel.send",
            _thread_race(
                setup=lambda: ch.send_nowait(0),
                op=lambda ctx: ch.send(1, ctx=ctx),
                kick=ch.recv_nowait,
                undo=ch.recv_nowait,
                no_effect=lambda: len(ch) == 0,
                parked=lambda: ch.statistics().waiting_senders == 1,
            ),
        )
    )

    clock = ct.ManualClock()
    rl = corral.threads.RateLimit(1, per=1.0, burst=1, clock=clock)
    granted = [0]

    def rate_setup() -> None:
        clock.advance(1.0)
        rl.acquire()  # spends the burst: the next acquire waits for the clock
        granted[0] = rl.statistics().granted

    rows.append(
        (
            "RateLimit.acquire",
            _thread_race(
                setup=rate_setup,
                op=lambda ctx: rl.acquire(ctx=ctx),
                kick=lambda: clock.advance(1.0),
                undo=lambda: granted.__setitem__(0, granted[0] + 1),
                no_effect=lambda: rl.statistics().granted == granted[0],
                parked=lambda: rl.statistics().waiting == 1,
            ),
        )
    )

    lsem = corral.threads.Semaphore(1)
    limits = corral.threads.Limits(rl, lsem)

    def limits_setup() -> None:
        clock.advance(1.0)
        lsem.acquire()  # held: the joint acquire waits for it
        granted[0] = rl.statistics().granted

    def limits_undo() -> None:
        granted[0] += 1
        lsem.release()

    rows.append(
        (
            "Limits.acquire",
            _thread_race(
                setup=limits_setup,
                op=lambda ctx: limits.acquire(ctx=ctx),
                kick=lsem.release,
                undo=limits_undo,
                no_effect=lambda: (
                    rl.statistics().granted == granted[0] and lsem.statistics().held == 0
                ),
                parked=lambda: lsem.statistics().waiting == 1,
            ),
        )
    )

    sf: corral.threads.SingleFlight[str, int] = corral.threads.SingleFlight()
    gate = [threading.Event()]

    def flight() -> int:
        gate[0].wait(10)
        return 7

    def sf_setup() -> None:
        gate[0] = threading.Event()

    rows.append(
        (
            "SingleFlight.do",
            _thread_race(
                setup=sf_setup,
                op=lambda ctx: sf.do("k", flight, ctx=ctx),
                kick=lambda: gate[0].set(),
                undo=lambda: None,
                no_effect=lambda: True,  # a caller that left takes nothing
                parked=lambda: sf.statistics().waiters == 1,
            ),
        )
    )
    for name, (raised, completed) in rows:
        figures.record(
            "cancellation sweep (strict), threads",
            f"{name}: ctx cancelled racing completion",
            f"{raised} raised with no effect, {completed} completed and the next call raised",
        )
