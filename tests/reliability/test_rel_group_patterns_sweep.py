"""Cancellation and exception-injection sweeps over Group and the patterns.

Cancellation: the task waiting in a Group (``async with`` exit, or ``go`` waiting for a slot
under a limit), the consumer of a fan-out / pipeline, and a worker of each pipeline stage
are cancelled at every scheduling step (``corral.testing.cancel_sweep``). Afterwards:
every worker ended, items handed to workers through a channel are conserved, and — checked
for every run — no waiter queued, no permit held, no task pending.

Exception injection: a worker (Group), an item position in a stage (pipeline) or in a
fan-out, raises a unique error. The error must come out exactly once, as itself (the same
object, or for a second receiver a copy chained to it); no new work starts after it; the
siblings end (cancelled or finished), and the run leaves nothing behind.
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

SEEDS = figures.count(4, quick=2, stress=30)


class Injected(Exception):
    """The error an injection sweep plants; unique per run."""


def _record_sweep(name: str, report: ct.SweepReport | None) -> None:
    value = (
        f"{report.runs} cancel points ({report.landed} with the target live), "
        "0 lost, 0 leaked permits, 0 stranded waiters, every worker ended"
        if report
        else "FAILED"
    )
    figures.record("cancellation sweep", name, value, "", report is not None)


# --- Group ---------------------------------------------------------------------------------


def group_op(how: str, limit: int | None) -> Callable[[Schedule], Awaitable[None]]:
    """Workers take items from a channel inside a Group; the parent task (``async with``
    exit, or ``go`` waiting for a slot when ``limit`` is set) or the group's Context is
    cancelled."""

    async def scenario(sched: Schedule) -> None:
        ctx = corral.with_cancel(corral.background())
        ch: corral.Channel[int] = corral.Channel(0)
        got: list[int] = []
        sent: list[int] = []
        workers: list[asyncio.Task[None]] = []

        async def worker() -> None:
            for _ in range(2):
                got.append(await ch.recv())
                await asyncio.sleep(0)

        async def parent() -> None:
            async with corral.Group(ctx=ctx if how == "ctx" else None, limit=limit) as g:
                workers.extend([await g.go(worker) for _ in range(3)])

        async def producer() -> None:
            for x in range(6):
                await ch.send(x)
                sent.append(x)
            ch.close()

        p = asyncio.create_task(parent())
        sched.cancel_target(p if how == "task" else ctx)
        prod = asyncio.create_task(producer())
        await asyncio.gather(p, return_exceptions=True)
        assert all(w.done() for w in workers), "a worker outlived its group"
        rest = [x async for x in ch]
        await prod
        ctx.cancel()
        assert sorted(got + rest) == sent == list(range(6)), (got, rest, sent)

    scenario.__qualname__ = f"group_op(how={how!r}, limit={limit})"
    return scenario


@pytest.mark.parametrize("limit", [None, 1, 2])
@pytest.mark.parametrize("how", ["task", "ctx"])
def test_cancelling_a_group_at_every_step_ends_every_worker_and_loses_nothing(
    how: str, limit: int | None
) -> None:
    report = None
    try:
        report = ct.cancel_sweep(group_op(how, limit), seeds=range(SEEDS))
    finally:
        what = "Group wait" if limit is None else f"Group go (limit={limit}) + wait"
        _record_sweep(f"{what}, cancelled via {how}", report)
    assert report.landed > 0


# --- fan_out / pipeline consumers and stage workers ---------------------------------------


def consumer_op(kind: str) -> Callable[[Schedule], Awaitable[None]]:
    """The task iterating a fan-out or a 3-stage pipeline is cancelled."""

    async def scenario(sched: Schedule) -> None:
        src = list(range(8))
        got: list[int] = []

        async def step(x: int) -> int:
            await asyncio.sleep(0)
            return x

        def flow() -> Any:
            if kind == "fan_out":
                return corral.fan_out(step, src, workers=2, buffer=1)
            stages = [corral.stage(step, workers=2, buffer=1) for _ in range(3)]
            return corral.pipeline(src, *stages)

        async def consume() -> None:
            async with flow() as out:
                got.extend([x async for x in out])

        c = asyncio.create_task(consume())
        sched.cancel_target(c)
        await asyncio.gather(c, return_exceptions=True)
        assert len(got) == len(set(got)), got
        assert set(got) <= set(src), got
        if not c.cancelled():
            assert sorted(got) == src, got

    scenario.__qualname__ = f"consumer_op({kind!r})"
    return scenario


def stage_worker_op(stage_index: int) -> Callable[[Schedule], Awaitable[None]]:
    """A worker task of stage ``stage_index`` of a 3-stage pipeline is cancelled from
    outside (found from inside the stage function, as ``asyncio.current_task()``)."""

    async def scenario(sched: Schedule) -> None:
        src = list(range(8))
        got: list[int] = []
        registered = [False]

        def make(k: int) -> Callable[[int], Awaitable[int]]:
            async def step(x: int) -> int:
                if k == stage_index and not registered[0]:
                    registered[0] = True
                    task = asyncio.current_task()
                    assert task is not None
                    sched.cancel_target(task)
                await asyncio.sleep(0)
                return x

            return step

        stages = [corral.stage(make(k), workers=2, buffer=1) for k in range(3)]
        outcome: list[BaseException | None] = [None]
        try:
            async with corral.pipeline(src, *stages) as out:
                got.extend([x async for x in out])
        except (asyncio.CancelledError, corral.Cancelled) as exc:
            outcome[0] = exc  # the pipeline reports the cancelled worker
        assert len(got) == len(set(got)), got
        assert set(got) <= set(src), got
        if outcome[0] is None:
            assert sorted(got) == src, f"pipeline ended normally but delivered {got}"

    scenario.__qualname__ = f"stage_worker_op(stage={stage_index})"
    return scenario


@pytest.mark.parametrize("kind", ["fan_out", "pipeline"])
def test_cancelling_a_flow_consumer_at_every_step_stops_every_worker(kind: str) -> None:
    report = None
    try:
        report = ct.cancel_sweep(consumer_op(kind), seeds=range(SEEDS))
    finally:
        _record_sweep(f"{kind} consumer, cancelled via task", report)
    assert report.landed > 0


@pytest.mark.parametrize("stage_index", [0, 1, 2])
def test_cancelling_a_pipeline_stage_worker_at_every_step(stage_index: int) -> None:
    report = None
    try:
        report = ct.cancel_sweep(stage_worker_op(stage_index), seeds=range(SEEDS))
    finally:
        _record_sweep(f"pipeline stage {stage_index + 1} worker, cancelled via task", report)
    assert report.landed > 0


# --- exception injection -------------------------------------------------------------------


def _is_delivered(caught: BaseException, planted: Injected) -> bool:
    """The planted error itself, or one copy chained to it (a second receiver's)."""
    return caught is planted or (isinstance(caught, Injected) and caught.args == planted.args)


async def _group_injection(sched: Schedule, worker: int, at_step: int, errors: str) -> None:
    planted = Injected(f"worker {worker} at step {at_step}")
    started_after: list[int] = []
    failed = [False]
    done: list[int] = []

    async def work(i: int) -> None:
        for step in range(3):
            if failed[0]:
                started_after.append(i)
            if i == worker and step == at_step:
                failed[0] = True
                raise planted
            await asyncio.sleep(0)
        done.append(i)

    caught: list[BaseException] = []
    try:
        async with corral.Group(report=errors) as g:  # type: ignore[arg-type]
            for i in range(4):
                await g.go(work, i)
    except BaseException as exc:
        caught.append(exc)
    assert len(caught) == 1, caught
    exc = caught[0]
    if errors == "first":
        assert _is_delivered(exc, planted), repr(exc)
    else:
        assert isinstance(exc, BaseExceptionGroup), repr(exc)
        leaves = [e for e in exc.exceptions if isinstance(e, Injected)]
        assert len(leaves) == 1, repr(exc)
        assert _is_delivered(leaves[0], planted), repr(exc)
    assert list(g.errors).count(planted) == 1, g.errors
    # A sibling already scheduled when the error struck takes that one step (the group
    # learns of the failure from a done callback, after the ready queue): no more.
    extra = {i: started_after.count(i) for i in set(started_after)}
    assert all(n <= 1 for n in extra.values()), f"siblings went on after the failure: {extra}"
    assert worker not in done


@pytest.mark.parametrize("errors", ["first", "all"])
def test_an_error_injected_in_any_group_worker_at_any_step_is_raised_once(errors: str) -> None:
    seeds = range(figures.count(6, quick=2, stress=40))
    runs = 0
    for worker in range(4):
        for at_step in range(3):

            async def scenario(sched: Schedule, w: int = worker, s: int = at_step) -> None:
                await _group_injection(sched, w, s, errors)

            scenario.__qualname__ = f"group_injection(worker={worker}, step={at_step})"
            runs += ct.explore(scenario, seeds=seeds).runs
    figures.record(
        "exception injection",
        f"Group errors={errors!r}, every worker x every step",
        f"{runs} runs: delivered exactly once, no work after it, siblings ended",
    )


async def _flow_injection(
    sched: Schedule, kind: str, stage_index: int, position: int, no_new_work: bool
) -> None:
    src = list(range(8))
    planted = Injected(f"{kind} stage {stage_index} item {position}")
    after: list[tuple[int, int]] = []
    failed = [False]

    def make(k: int) -> Callable[[int], Awaitable[int]]:
        async def step(x: int) -> int:
            if failed[0]:
                after.append((k, x))
            await asyncio.sleep(0)
            if k == stage_index and x == position:
                failed[0] = True
                raise planted
            return x

        return step

    if kind == "fan_out":
        flow = corral.fan_out(make(0), src, workers=3, buffer=1)
    else:
        flow = corral.pipeline(src, *[corral.stage(make(k), workers=2) for k in range(3)])
    got: list[int] = []
    caught: list[BaseException] = []
    try:
        async with flow as out:
            got.extend([x async for x in out])
    except BaseException as exc:
        caught.append(exc)
    assert len(caught) == 1, caught
    assert _is_delivered(caught[0], planted), caught
    assert position not in got, got
    assert len(got) == len(set(got)), got
    if no_new_work:
        # A call already running when the error struck may finish its item; none may
        # *start* after the error was raised (product.md: the first error stops queued work).
        assert not after, f"stage function called after the failure: {after} (stage, item)"


def _flow_injection_sweep(kind: str, no_new_work: bool) -> int:
    seeds = range(figures.count(4, quick=2, stress=30))
    stages = 1 if kind == "fan_out" else 3
    runs = 0
    for stage_index in range(stages):
        for position in range(8):

            async def scenario(sched: Schedule, s: int = stage_index, p: int = position) -> None:
                await _flow_injection(sched, kind, s, p, no_new_work)

            scenario.__qualname__ = (
                f"flow_injection({kind!r}, stage={stage_index}, item={position})"
            )
            runs += ct.explore(scenario, seeds=seeds).runs
    return runs


@pytest.mark.parametrize("kind", ["fan_out", "pipeline"])
def test_an_error_injected_at_any_position_of_any_stage_is_raised_once(kind: str) -> None:
    runs = 0
    try:
        runs = _flow_injection_sweep(kind, no_new_work=False)
    finally:
        figures.record(
            "exception injection",
            f"{kind}, every stage x every item position",
            f"{runs} runs: delivered exactly once, siblings ended" if runs else "FAILED",
            "",
            runs > 0,
        )


@pytest.mark.parametrize("kind", ["fan_out", "pipeline"])
def test_no_stage_call_starts_after_the_first_error(kind: str) -> None:
    """product.md: the first error "stops starting queued work". Fails while a worker woken
    with an item (or resuming from a pause) calls the stage function without looking at
    the run's Context first: see the reliability report."""
    runs = 0
    try:
        runs = _flow_injection_sweep(kind, no_new_work=True)
    finally:
        figures.record(
            "exception injection",
            f"{kind}: no stage call starts after the first error",
            f"{runs} runs: 0 calls after the error" if runs else "FAILED (bug reported)",
            "",
            runs > 0,
        )


async def _relay_injection(sched: Schedule, kind: str, position: int) -> None:
    """A source iterable of tee / fan_in raises at ``position``: every output's consumer
    gets the items before it, then that error (its first error: the planted one)."""
    planted = Injected(f"{kind} source raises at item {position}")

    def source(base: int) -> Any:
        for i in range(6):
            if base == 0 and i == position:
                raise planted
            yield base + i

    if kind == "tee":
        relay: Any = corral.tee(source(0), 2, policy=sched.rng.choice(("lockstep", "buffer")))
    else:
        relay = corral.fan_in(source(0), source(100))

    async def consume(o: Any) -> tuple[list[int], BaseException | None]:
        got: list[int] = []
        try:
            async for x in o:
                got.append(x)  # noqa: PERF401 - keep what came before the error
        except Injected as exc:
            return got, exc
        return got, None

    async with relay as opened:
        outs = opened if kind == "tee" else (opened,)
        results = await asyncio.gather(*[consume(o) for o in outs])
    for got, exc in results:
        assert exc is not None, f"{kind}: the error never came out (got {got})"
        assert _is_delivered(exc, planted), repr(exc)
        mine = [x for x in got if x < 100]
        assert mine == list(range(position)), f"{kind}: items before the error: {got}"
        assert len(got) == len(set(got)), got


@pytest.mark.parametrize("kind", ["tee", "fan_in"])
def test_an_error_raised_by_a_relay_source_reaches_every_output_once(kind: str) -> None:
    seeds = range(figures.count(4, quick=2, stress=30))
    runs = 0
    try:
        for position in range(6):

            async def scenario(sched: Schedule, p: int = position) -> None:
                await _relay_injection(sched, kind, p)

            scenario.__qualname__ = f"relay_injection({kind!r}, item={position})"
            runs += ct.explore(scenario, seeds=seeds).runs
    finally:
        figures.record(
            "exception injection",
            f"{kind} source, every item position",
            f"{runs} runs: every output gets the items, then the error once" if runs else "FAILED",
            "",
            runs > 0,
        )


# --- SingleFlight --------------------------------------------------------------------------


def singleflight_op(victim: str, how: str) -> Callable[[Schedule], Awaitable[None]]:
    """A leader and two followers share one call; the leader (or a follower) is cancelled.

    The others must still get the value of that one call (followers finish); the call runs
    once; once everyone has left, the key is free: a new caller starts a fresh call.
    """

    async def scenario(sched: Schedule) -> None:
        sf: corral.SingleFlight[str, tuple[str, int]] = corral.SingleFlight()
        ctx = corral.with_cancel(corral.background())
        release: corral.Channel[None] = corral.Channel(0)
        calls: list[int] = []

        async def load() -> tuple[str, int]:
            calls.append(len(calls))
            n = len(calls)
            for _ in range(2):
                await asyncio.sleep(0)
            await release.recv()
            return ("value", n)

        results: dict[str, Any] = {}

        async def caller(name: str, c: corral.Context | None) -> None:
            results[name] = await sf.do("k", load, ctx=c)

        names = ["leader", "follower1", "follower2"]
        tasks = {}
        for name in names:
            c = ctx if name == victim and how == "ctx" else None
            tasks[name] = asyncio.create_task(caller(name, c))
        sched.cancel_target(tasks[victim] if how == "task" else ctx)
        for _ in range(6):
            await asyncio.sleep(0)
        while any(not t.done() for n, t in tasks.items() if n != victim):
            if release.statistics().waiting_receivers:
                release.send_nowait(None)
            await asyncio.sleep(0)
        await asyncio.gather(*tasks.values(), return_exceptions=True)
        survivors = [n for n in names if n != victim]
        for n in survivors:
            assert results.get(n) == ("value", 1), f"{n} got {results.get(n)}, calls {calls}"
        assert calls == [0], f"the call ran {len(calls)} times"
        if victim in results:
            assert results[victim] == ("value", 1)
        # The key is free again: a new caller starts a fresh call.
        fresh = asyncio.create_task(sf.do("k", load))
        while not fresh.done():
            if release.statistics().waiting_receivers:
                release.send_nowait(None)
            await asyncio.sleep(0)
        assert fresh.result() == ("value", 2), fresh.result()
        ctx.cancel()
        st = sf.statistics()
        assert (st.in_flight, st.waiters, st.started) == (0, 0, 2), st

    scenario.__qualname__ = f"singleflight_op(victim={victim!r}, how={how!r})"
    return scenario


@pytest.mark.parametrize("victim", ["leader", "follower1"])
@pytest.mark.parametrize("how", ["task", "ctx"])
def test_cancelling_a_singleflight_caller_at_every_step_lets_the_others_finish(
    victim: str, how: str
) -> None:
    report = None
    try:
        report = ct.cancel_sweep(singleflight_op(victim, how), seeds=range(SEEDS))
    finally:
        _record_sweep(f"SingleFlight do ({victim}), cancelled via {how}", report)
    assert report.landed > 0


async def _singleflight_injection(sched: Schedule, at_step: int, callers: int) -> None:
    sf: corral.SingleFlight[str, int] = corral.SingleFlight()
    planted = Injected(f"the shared call fails at step {at_step}")

    async def load() -> int:
        for step in range(3):
            if step == at_step:
                raise planted
            await asyncio.sleep(0)
        return 1

    async def caller() -> BaseException | int:
        try:
            return await sf.do("k", load)
        except Injected as exc:
            return exc

    outcomes = await asyncio.gather(*[caller() for _ in range(callers)])
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(errors) == callers, f"every caller gets the error: {outcomes}"
    assert all(e.args == planted.args for e in errors), errors
    # Each caller its own object: one exception raised in many tasks would splice their
    # tracebacks (lessons-from-peers, item 2).
    assert len({id(e) for e in errors}) == callers, "callers share one exception object"
    st = sf.statistics()
    # A caller that arrives after a failed call finished starts a fresh one (that fails too).
    assert (st.in_flight, st.waiters) == (0, 0), st
    assert st.started + st.joined == callers, st


def test_an_error_in_a_shared_call_reaches_every_caller_once_as_its_own_copy() -> None:
    seeds = range(figures.count(4, quick=2, stress=30))
    runs = 0
    try:
        for at_step in range(3):
            for callers in (1, 2, 5):

                async def scenario(sched: Schedule, s: int = at_step, c: int = callers) -> None:
                    await _singleflight_injection(sched, s, c)

                scenario.__qualname__ = f"singleflight_injection(step={at_step}, callers={callers})"
                runs += ct.explore(scenario, seeds=seeds).runs
    finally:
        figures.record(
            "exception injection",
            "SingleFlight call, every step x 1/2/5 callers",
            f"{runs} runs: every caller gets it once, as its own copy" if runs else "FAILED",
            "",
            runs > 0,
        )
