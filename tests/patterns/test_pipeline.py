"""pipeline: composition, the in-flight bound, failure shapes, mixed workers, statistics.

The failure shapes are the ones teams keep hand-rolling wrong (lessons-from-peers, ask 9):
a stage error while upstream is blocked on a full buffer, an error raised by the source,
an early break, and two failures in the same tick.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import math
import threading
import time
from typing import Any

import pytest

import corral
import corral.threads

from .helpers import Background, Counter, Flavour, Gate, Kind, counting, parked, stalled, until


async def test_pipeline_chains_stages(flavour: Flavour, kind: Kind) -> None:
    flow = flavour.pipeline(
        range(30),
        corral.stage(kind.fn(lambda x: x + 1), workers=3),
        kind.fn(lambda x: x * 2),  # a bare function is stage(fn)
        corral.stage(str, workers=2),
        ordered=True,
    )
    assert await flavour.collect(flow) == [str((x + 1) * 2) for x in range(30)]


@pytest.mark.parametrize("second", ["async", "sync"])
async def test_items_in_flight_never_exceed_the_bound(
    flavour: Flavour, kind: Kind, second: str
) -> None:
    # At most sum(buffer + workers) items are taken from a plain iterable and not yet
    # delivered (its first stage reads it directly, no feeder); and that much is reached.
    pulled = Counter()
    stages = [
        corral.stage(kind.fn(lambda x: x), workers=2, buffer=3),
        corral.stage(Kind(second).fn(lambda x: x), workers=3, buffer=1),
        corral.stage(kind.fn(lambda x: x), workers=1, buffer=4),
    ]
    bound = sum(s.workers + s.buffer for s in stages)
    flow = flavour.pipeline(counting(iter(range(300)), pulled), *stages)
    got: list[int] = []
    async with flavour.open(flow) as out:
        for _ in range(4):
            # Full again: every worker parked with `bound` items inside. (Not "parked, then
            # count": a poll can see every worker parked while a hand-over is still on its way,
            # one item short; seen on 3.13t under load.)
            await until(
                lambda: stalled(flow) and pulled.value - len(got) == bound,
                f"every worker parked with {bound} items in the pipeline",
            )
            got.append(await flavour.next(out))
        while len(got) < 300:
            got.append(await flavour.next(out))
            # After k deliveries the pipeline holds at most `bound` items: exact, since
            # only this consumer takes items out.
            assert pulled.value - len(got) <= bound
    assert sorted(got) == list(range(300))


async def test_items_in_flight_from_an_async_source_exceed_it_by_one_at_most(
    flavour: Flavour, kind: Kind
) -> None:
    # An async iterable goes through a feeder that holds one item: the "+ 1".
    pulled = Counter()

    async def source() -> Any:
        for i in range(200):
            pulled.add()
            yield i

    stages = [corral.stage(kind.fn(abs), workers=2, buffer=2) for _ in range(3)]
    bound = sum(s.workers + s.buffer for s in stages) + 1
    got: list[int] = []
    async with flavour.open(flavour.pipeline(source(), *stages)) as out:
        await until(lambda: pulled.value == bound, "the pipeline and its feeder to fill up")
        while len(got) < 200:
            got.append(await flavour.next(out))
            assert pulled.value - len(got) <= bound
    assert sorted(got) == list(range(200))


async def test_stage_error_while_upstream_is_blocked_reaches_the_consumer_within_a_second(
    flavour: Flavour, kind: Kind
) -> None:
    go = Gate()

    def fail(x: int) -> Any:
        if x == 0:

            def boom(_: Any = None) -> Any:
                raise ValueError("stage 2 failed on item 0")

            waited = kind.wait(go.ctx)
            if waited is None:
                return boom()

            async def later() -> Any:
                await waited
                return boom()

            return later()
        return x

    flow = flavour.pipeline(
        itertools.count(),
        corral.stage(kind.fn(lambda x: x), workers=2, buffer=2),
        corral.stage(kind.fn(fail), workers=1, buffer=2),
    )
    consumer = Background(flavour, flow)
    await until(lambda: consumer.items == [] and parked(flow, 0) == 2, "stage 1 blocked")
    opened = time.monotonic()
    go.open()
    await consumer.join()
    assert isinstance(consumer.error, ValueError)
    assert str(consumer.error) == "stage 2 failed on item 0"
    assert consumer.ended_at - opened < 1.0


@pytest.mark.parametrize("source_kind", ["generator", "async generator"])
async def test_an_exception_raised_by_the_source_propagates(
    flavour: Flavour, kind: Kind, source_kind: str
) -> None:
    class SourceBroke(Exception):
        pass

    def gen() -> Any:
        yield from range(5)
        raise SourceBroke("no more")

    async def agen() -> Any:
        for i in range(5):
            yield i
        raise SourceBroke("no more")

    src = gen() if source_kind == "generator" else agen()
    flow = flavour.pipeline(src, corral.stage(kind.fn(abs), workers=2))
    with pytest.raises(SourceBroke, match="no more"):
        await flavour.collect(flow)


async def test_early_break_stops_every_worker(flavour: Flavour, kind: Kind) -> None:
    flow = flavour.pipeline(
        itertools.count(),
        corral.stage(kind.fn(lambda x: x), workers=3),
        corral.stage(Kind("sync").fn(lambda x: x), workers=2),
        corral.stage(Kind("async").fn(lambda x: x), workers=2),
    )
    async with flavour.open(flow) as out:
        for _ in range(5):
            await flavour.next(out)
    assert flow.statistics().running is False  # and the harness finds nothing left


async def test_aclose_stops_a_pipeline_blocked_on_a_full_buffer(flavour: Flavour) -> None:
    flow = flavour.pipeline(itertools.count(), corral.stage(abs, workers=2, buffer=2))
    async with flavour.open(flow):
        await until(lambda: stalled(flow), "the pipeline to fill up")
        await flavour.aclose(flow)
        assert flow.statistics().running is False
        assert await flavour.items(flow) == []  # closed: iteration is over


async def test_two_failures_in_one_tick_produce_one_error(flavour: Flavour, kind: Kind) -> None:
    go = Gate()
    entered = Counter()

    def fail_together(x: int) -> Any:
        entered.add()
        waited = kind.wait(go.ctx)

        def boom() -> Any:
            raise ValueError(f"worker failed on {x}")

        if waited is None:
            return boom()

        async def later() -> Any:
            await waited
            return boom()

        return later()

    flow = flavour.pipeline(range(2), corral.stage(kind.fn(fail_together), workers=2))
    consumer = Background(flavour, flow)
    await until(lambda: entered.value == 2, "both workers inside the function")
    go.open()  # released together: both raise in the same tick
    await consumer.join()
    assert isinstance(consumer.error, ValueError)
    assert str(consumer.error) in ("worker failed on 0", "worker failed on 1")
    # The harness fails the test on an "exception never retrieved" or any logged error.


async def test_mixed_task_and_thread_stages_move_10000_items_without_deadlock(
    flavour: Flavour,
) -> None:
    a, s = Kind("async"), Kind("sync")
    flow = flavour.pipeline(
        range(10_000),
        corral.stage(a.fn(lambda x: x + 1), workers=3, buffer=1),
        corral.stage(s.fn(lambda x: x - 1), workers=2, buffer=0),
        corral.stage(a.fn(lambda x: x * 2), workers=2, buffer=4),
        corral.stage(s.fn(lambda x: x // 2), workers=3, buffer=2),
        corral.stage(a.fn(lambda x: x), workers=1, buffer=8),
    )
    count = total = 0
    async with flavour.open(flow) as out:
        for x in await flavour.items(out):
            count += 1
            total += x
    assert (count, total) == (10_000, sum(range(10_000)))


@pytest.mark.slow
async def test_process_and_executor_stages_mix_with_tasks_and_threads(flavour: Flavour) -> None:
    with concurrent.futures.ThreadPoolExecutor(2) as ex:
        flow = flavour.pipeline(
            range(60),
            corral.stage(Kind("async").fn(lambda x: x + 1), workers=2),
            corral.stage(math.factorial, workers=2, run_in="process"),
            corral.stage(math.log, workers=2, executor=ex),
            corral.stage(round, workers=1),
            ordered=True,
        )
        out = await flavour.collect(flow)
    assert out == [round(math.log(math.factorial(x + 1))) for x in range(60)]


async def test_statistics_name_the_bottleneck(flavour: Flavour) -> None:
    def slow(x: int) -> int:
        time.sleep(0.002)  # the work itself, not a synchronization
        return x

    flow = flavour.pipeline(
        range(60),
        corral.stage(abs, name="parse"),
        corral.stage(slow, name="enrich"),
        corral.stage(Kind("async").fn(abs), name="store"),
    )
    assert len(await flavour.collect(flow)) == 60
    stats = flow.statistics()
    assert [s.name for s in stats.stages] == ["parse", "enrich", "store"]
    assert all(s.items_in == s.items_out == 60 for s in stats.stages)
    assert stats.bottleneck is not None
    assert stats.bottleneck.name == "enrich"
    assert stats.stages[0].waiting_output > 0  # the stage before it waited for room
    report = stats.report()
    assert "bottleneck: 'enrich'" in report
    assert stats.delivered == 60
    assert not stats.running


async def test_ordered_pipeline_keeps_order_through_skips(flavour: Flavour, kind: Kind) -> None:
    def odd_fails(x: int) -> int:
        if x % 2:
            raise ValueError(x)
        return x

    flow = flavour.pipeline(
        range(40),
        corral.stage(kind.fn(lambda x: x), workers=3),
        corral.stage(kind.fn(odd_fails), workers=3, errors="skip"),
        corral.stage(Kind("sync").fn(lambda x: x // 2), workers=2),
        ordered=True,
    )
    assert await flavour.collect(flow) == list(range(20))


async def test_collect_policy_on_the_last_stage_gives_outcomes(flavour: Flavour) -> None:
    def inverse(x: int) -> float:
        return 1 / x

    flow = flavour.pipeline(
        range(-2, 3), corral.stage(inverse, errors="collect", workers=2), ordered=True
    )
    out = await flavour.collect(flow)
    assert [o.item for o in out] == [-2, -1, 0, 1, 2]
    assert isinstance(out[2].error, ZeroDivisionError)
    assert [o.value for o in out if o.ok] == [-0.5, -1.0, 1.0, 0.5]


async def test_pipeline_reads_a_channel_fed_by_another_thread(flavour: Flavour) -> None:
    ch = corral.threads.Channel(4)

    def produce() -> None:
        for i in range(500):
            ch.send(i)
        ch.close()

    t = threading.Thread(target=produce)
    t.start()
    out = await flavour.collect(flavour.pipeline(ch, corral.stage(abs, workers=3)))
    t.join()
    assert sorted(out) == list(range(500))


def test_pipeline_bad_arguments_name_the_argument() -> None:
    for mod in (corral, corral.threads):
        with pytest.raises(ValueError, match="pipeline: needs at least one stage"):
            mod.pipeline(range(3))
        with pytest.raises(TypeError, match=r"pipeline: stage 2 must be a corral\.stage"):
            mod.pipeline(range(3), abs, 42)
        with pytest.raises(TypeError, match="pipeline: source must be an iterable"):
            mod.pipeline(42, abs)
    with pytest.raises(ValueError, match="stage: workers must be >= 1"):
        corral.stage(abs, workers=0)
    with pytest.raises(ValueError, match="stage: buffer must be >= 0"):
        corral.stage(abs, buffer=-1)
    with pytest.raises(TypeError, match="stage: name must be a str"):
        corral.stage(abs, name=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="stage: fn must be callable"):
        corral.stage("abs")  # type: ignore[arg-type]
