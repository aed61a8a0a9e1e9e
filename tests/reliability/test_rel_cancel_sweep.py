"""Cancel every blocking operation at every scheduling step, under several schedules.

For each operation, a scenario puts it under contention (other senders, receivers or
acquirers queued around it), registers it as the sweep's target, and after the run proves:
no item lost or duplicated (what the target reports it did, it did, exactly once), the
others (followers queued behind it) all finish, and — checked by ``run_schedule`` for every
run — no waiter is left queued and no permit is held. A target is cancelled either as a
task (``task.cancel()``) or through the Context its operation was given (``ctx.cancel()``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import corral
import corral.testing as ct
from corral.testing import Schedule

from . import figures

pytestmark = pytest.mark.timeout(figures.TIMEOUT)

HOWS = ("task", "ctx")
SEEDS = figures.count(8, quick=3, stress=60)


class Progress:
    """How many operations the target has completed, and how many when it was cancelled."""

    def __init__(self) -> None:
        self.done = 0
        self.at_cancel: int | None = None


def _target(
    sched: Schedule,
    how: str,
    task: asyncio.Task[Any],
    ctx: corral.CancelContext,
    progress: Progress | None = None,
) -> None:
    if how == "ctx":
        sched.cancel_target(ctx)
        return

    def cancel() -> bool:
        if progress is not None and not task.done():
            progress.at_cancel = progress.done
        return task.cancel()

    sched.cancel_target(cancel)


def _not_swallowed(task: asyncio.Task[Any], progress: Progress) -> None:
    """A cancelled task may finish the operation it was in (it had happened: its result
    stands), but the cancellation must then reach it at its next await: a task that ends
    normally did at most that one operation after being cancelled."""
    if progress.at_cancel is not None and not task.cancelled():
        extra = progress.done - progress.at_cancel
        assert extra <= 1, f"cancellation swallowed: {extra} operations after task.cancel()"


def _in_order(stream: list[Any], what: str) -> None:
    assert stream == sorted(stream), f"{what} out of order: {stream}"


# --- channel send / recv -----------------------------------------------------------------------


def send_op(cap: int, how: str, strict: bool = False) -> Callable[[Schedule], Awaitable[None]]:
    async def scenario(sched: Schedule) -> None:
        ch: corral.Channel[tuple[str, int]] = corral.Channel(cap)
        ctx = corral.with_cancel(corral.background())
        sent: list[tuple[str, int]] = []
        got: list[tuple[str, int]] = []

        progress = Progress()

        async def target() -> None:
            for i in range(3):
                await ch.send(("target", i), ctx=ctx if how == "ctx" else None)
                sent.append(("target", i))
                progress.done += 1

        async def follower() -> None:  # queued behind the target
            for i in range(3):
                await ch.send(("follower", i))
                sent.append(("follower", i))

        async def consumer() -> None:
            async for x in ch:
                got.append(x)
                await asyncio.sleep(0)

        t = asyncio.create_task(target())
        _target(sched, how, t, ctx, progress)
        f = asyncio.create_task(follower())
        c = asyncio.create_task(consumer())
        await asyncio.gather(t, return_exceptions=True)
        await f
        ch.close()
        await c
        ctx.cancel()
        if strict:
            _not_swallowed(t, progress)
        assert sorted(got) == sorted(sent), f"sent {sent}, received {got}"
        for who in ("target", "follower"):
            _in_order([x for x in got if x[0] == who], who)

    scenario.__qualname__ = f"send_op(cap={cap}, how={how!r}, strict={strict})"
    return scenario


def recv_op(cap: int, how: str, strict: bool = False) -> Callable[[Schedule], Awaitable[None]]:
    async def scenario(sched: Schedule) -> None:
        ch: corral.Channel[int] = corral.Channel(cap)
        ctx = corral.with_cancel(corral.background())
        by: dict[str, list[int]] = {"target": [], "follower": [], "drain": []}

        progress = Progress()

        async def target() -> None:
            while True:
                try:
                    x = await ch.recv(ctx=ctx if how == "ctx" else None)
                except corral.EndOfChannel:
                    return
                by["target"].append(x)
                progress.done += 1

        async def follower() -> None:  # queued behind the target
            for _ in range(2):
                try:
                    by["follower"].append(await ch.recv())
                except corral.EndOfChannel:
                    return

        async def producer() -> None:
            for i in range(6):
                await ch.send(i)
            ch.close()

        t = asyncio.create_task(target())
        _target(sched, how, t, ctx, progress)
        f = asyncio.create_task(follower())
        p = asyncio.create_task(producer())
        await asyncio.gather(t, return_exceptions=True)
        by["drain"] = [x async for x in ch]  # what nobody took; lets the producer finish
        await asyncio.gather(f, p)
        ctx.cancel()
        if strict:
            _not_swallowed(t, progress)
        everything = sorted(x for xs in by.values() for x in xs)
        assert everything == list(range(6)), f"lost or duplicated: {by}"
        for who, xs in by.items():
            _in_order(xs, who)

    scenario.__qualname__ = f"recv_op(cap={cap}, how={how!r}, strict={strict})"
    return scenario


# --- select ------------------------------------------------------------------------------------


def select_op(
    n_cases: int, how: str, strict: bool = False
) -> Callable[[Schedule], Awaitable[None]]:
    """The target selects over ``n_cases - 1`` receive cases and one send case, 3 rounds."""

    async def scenario(sched: Schedule) -> None:
        ins: list[corral.Channel[tuple[int, int]]] = [
            corral.Channel(i % 2) for i in range(n_cases - 1)
        ]
        out: corral.Channel[tuple[str, int]] = corral.Channel(0)
        ctx = corral.with_cancel(corral.background())
        produced: list[tuple[int, int]] = []
        received: list[tuple[int, int]] = []
        offered_sent: list[tuple[str, int]] = []
        out_got: list[tuple[str, int]] = []

        progress = Progress()

        async def target() -> None:
            live = list(ins)
            for r in range(3):
                cases: list[Any] = [c.recv_case() for c in live]
                cases.append(out.send_case(("target", r)))
                s = await corral.select(*cases, ctx=ctx if how == "ctx" else None)
                if s.index == len(live):
                    offered_sent.append(("target", r))
                elif s.ok:
                    received.append(s.value)
                else:
                    del live[s.index]
                progress.done += 1

        async def produce(k: int) -> None:
            for i in range(2):
                await ins[k].send((k, i))
                produced.append((k, i))
            ins[k].close()

        async def out_consumer() -> None:
            out_got.extend([x async for x in out])

        t = asyncio.create_task(target())
        _target(sched, how, t, ctx, progress)
        prods = [asyncio.create_task(produce(k)) for k in range(len(ins))]
        oc = asyncio.create_task(out_consumer())
        await asyncio.gather(t, return_exceptions=True)
        drained = [[x async for x in c] for c in ins]
        await asyncio.gather(*prods)
        out.close()
        await oc
        ctx.cancel()
        if strict:
            _not_swallowed(t, progress)
        got = received + [x for d in drained for x in d]
        assert sorted(got) == sorted(produced), f"produced {produced}, got {got}"
        assert out_got == offered_sent, f"send case: reported {offered_sent}, got {out_got}"
        for k in range(len(ins)):
            _in_order([x for x in received if x[0] == k], f"channel {k}")

    scenario.__qualname__ = f"select_op(cases={n_cases}, how={how!r}, strict={strict})"
    return scenario


# --- semaphore acquire -------------------------------------------------------------------------


def acquire_op(weight: int, how: str) -> Callable[[Schedule], Awaitable[None]]:
    """size 3; a holder, the target acquiring ``weight``, and two followers queued behind.

    Also checks FIFO as far as a task can see it: when a task runs with its grant, no task
    that called ``acquire`` before it may still be queued. (Which waiters are queued is
    not visible, only how many: ``statistics().waiting`` counts the live queued ones, and
    under FIFO they can only be later arrivals that have neither run with a grant nor
    finished.)
    """

    async def scenario(sched: Schedule) -> None:
        sem = corral.Semaphore(3)
        ctx = corral.with_cancel(corral.background())
        arrived: list[str] = []
        granted: list[str] = []
        tasks: dict[str, asyncio.Task[None]] = {}

        async def user(name: str, n: int, steps: int, c: corral.Context | None = None) -> None:
            arrived.append(name)  # same step as the acquire call: this is the queue order
            async with sem.acquire(n, ctx=c):
                granted.append(name)
                later = arrived[arrived.index(name) + 1 :]
                undecided = [y for y in later if y not in granted and not tasks[y].done()]
                waiting = sem.statistics().waiting
                assert waiting <= len(undecided), (
                    f"not FIFO: {name} runs with its grant while {waiting} waiter(s) are "
                    f"queued but only {undecided} arrived after it (arrived {arrived}, "
                    f"granted {granted})"
                )
                for _ in range(steps):
                    await asyncio.sleep(0)

        for name, n, steps in (("holder", 2, 3), ("target", weight, 1), ("follower1", 1, 1)):
            c = ctx if name == "target" and how == "ctx" else None
            tasks[name] = asyncio.create_task(user(name, n, steps, c))
        tasks["follower2"] = asyncio.create_task(user("follower2", 3, 1))
        _target(sched, how, tasks["target"], ctx)
        await asyncio.gather(tasks["target"], return_exceptions=True)
        # The followers finish: a cancelled waiter passed the queue on.
        await asyncio.gather(tasks["holder"], tasks["follower1"], tasks["follower2"])
        ctx.cancel()
        st = sem.statistics()
        assert (st.held, st.waiting) == (0, 0), st

    scenario.__qualname__ = f"acquire_op(n={weight}, how={how!r})"
    return scenario


# --- rate limit and joint acquire (issue 11) ----------------------------------------------------


def rate_op(cost: int, how: str, joint: bool) -> Callable[[Schedule], Awaitable[None]]:
    """A RateLimit (2/s, burst 2) on a manual clock that a ticker task advances by 0.25 s
    per step; a first caller takes the burst, the target asks ``cost``, two followers queue
    behind. With ``joint`` every acquire is a Limits over the rate limit and a Semaphore(2).

    Proves "nothing charged on cancellation": the rate limit's ``granted`` equals the costs
    of the acquires that returned, whatever step the target was cancelled at; and no permit
    is held and nobody is left queued.
    """

    async def scenario(sched: Schedule) -> None:
        clock = ct.ManualClock()
        rl = corral.RateLimit(2, per=1.0, burst=2, clock=clock)
        sem = corral.Semaphore(2)
        limits = corral.Limits(rl, sem)
        ctx = corral.with_cancel(corral.background())
        charged: list[tuple[str, int]] = []

        async def user(name: str, c: int, cx: corral.Context | None = None) -> None:
            if joint:
                async with limits.acquire({rl: c}, ctx=cx):
                    charged.append((name, c))
                    await asyncio.sleep(0)
            else:
                await rl.acquire(c, ctx=cx)
                charged.append((name, c))

        tasks: dict[str, asyncio.Task[None]] = {}
        for name, c in (("first", 2), ("target", cost), ("follower1", 1), ("follower2", 2)):
            cx = ctx if name == "target" and how == "ctx" else None
            tasks[name] = asyncio.create_task(user(name, c, cx))
        _target(sched, how, tasks["target"], ctx)

        async def ticker() -> None:
            while not all(t.done() for t in tasks.values()):
                clock.advance(0.25)
                await asyncio.sleep(0)

        await ticker()
        await asyncio.gather(tasks["target"], return_exceptions=True)
        await asyncio.gather(tasks["first"], tasks["follower1"], tasks["follower2"])
        ctx.cancel()
        st = rl.statistics()
        assert st.granted == sum(c for _, c in charged), (st, charged)
        assert st.waiting == 0, st
        assert sem.statistics().held == 0

    scenario.__qualname__ = f"rate_op(cost={cost}, how={how!r}, joint={joint})"
    return scenario


OPERATIONS: list[tuple[str, Callable[[str], Callable[[Schedule], Awaitable[None]]]]] = [
    ("rate acquire cost=1", lambda how: rate_op(1, how, joint=False)),
    ("rate acquire cost=2 (=burst)", lambda how: rate_op(2, how, joint=False)),
    ("Limits acquire (rate+semaphore)", lambda how: rate_op(2, how, joint=True)),
    ("send cap=0", lambda how: send_op(0, how)),
    ("send cap=1", lambda how: send_op(1, how)),
    ("recv cap=0", lambda how: recv_op(0, how)),
    ("recv cap=1", lambda how: recv_op(1, how)),
    ("select 2 cases", lambda how: select_op(2, how)),
    ("select 3 cases", lambda how: select_op(3, how)),
    ("select 4 cases", lambda how: select_op(4, how)),
    ("acquire n=1", lambda how: acquire_op(1, how)),
    ("acquire n=2", lambda how: acquire_op(2, how)),
    ("acquire n=3 (=size)", lambda how: acquire_op(3, how)),
]


@pytest.mark.parametrize("how", HOWS)
@pytest.mark.parametrize(("name", "make"), OPERATIONS, ids=[n for n, _ in OPERATIONS])
def test_cancel_at_every_step_loses_nothing_and_strands_nobody(
    name: str, make: Callable[[str], Callable[[Schedule], Awaitable[None]]], how: str
) -> None:
    report = None
    try:
        report = ct.cancel_sweep(make(how), seeds=range(SEEDS))
    finally:
        value = (
            f"{report.runs} cancel points ({report.landed} with the target live), "
            "0 lost, 0 leaked permits, 0 stranded waiters"
            if report
            else "FAILED"
        )
        figures.record(
            "cancellation sweep", f"{name}, cancelled via {how}", value, "", report is not None
        )
    assert report.landed > 0  # the sweep really cancelled something


STRICT_OPERATIONS: list[tuple[str, Callable[[], Callable[[Schedule], Awaitable[None]]]]] = [
    ("send cap=0", lambda: send_op(0, "task", strict=True)),
    ("send cap=1", lambda: send_op(1, "task", strict=True)),
    ("recv cap=0", lambda: recv_op(0, "task", strict=True)),
    ("recv cap=1", lambda: recv_op(1, "task", strict=True)),
    ("select 3 cases", lambda: select_op(3, "task", strict=True)),
]


@pytest.mark.parametrize(("name", "make"), STRICT_OPERATIONS, ids=[n for n, _ in STRICT_OPERATIONS])
def test_a_cancelled_task_gets_the_cancellation_at_its_next_operation(
    name: str, make: Callable[[], Callable[[Schedule], Awaitable[None]]]
) -> None:
    """docs/design.md: an operation that completed although its task was cancelled returns
    its result, "and the cancellation is re-delivered at its next await". A task that ends
    normally after ``task.cancel()`` returned True may have done only that one operation.

    Fails while the re-delivery is a ``call_soon`` callback: operations that complete
    without suspending (a waiting receiver, buffer room) run before it, and a task that
    returns first ends with a result (see the reliability report)."""
    report = None
    try:
        report = ct.cancel_sweep(make(), seeds=range(SEEDS))
    finally:
        figures.record(
            "cancellation sweep",
            f"{name}: cancellation reaches the task at its next operation",
            f"{report.runs} cancel points, 0 swallowed" if report else "FAILED (bug reported)",
            "",
            report is not None,
        )


def test_the_sweep_catches_an_abort_that_ignores_the_claim(monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutation check: break the claim protocol (an abort that wins even after a waker
    completed the waiter) and the receive sweep must report a lost item."""
    from corral._core.waiter import Waiter

    def abort_ignoring_claim(self: Waiter, error: BaseException, *, wake: bool = True) -> bool:
        self.done = True
        self.error = error
        return True

    ct.cancel_sweep(recv_op(0, "task"), seeds=range(2))  # passes before the mutation
    monkeypatch.setattr(Waiter, "abort", abort_ignoring_claim)
    with pytest.raises(ct.ScheduleFailure, match="lost or duplicated"):
        ct.cancel_sweep(recv_op(0, "task"), seeds=range(2))
