"""fan_out: results, order, error policies, laziness, stopping early, progress, arguments.

Every test runs for both flavours (who consumes) and, where work functions matter, both
kinds of work (coroutine functions as tasks, plain functions in threads), so each test
covers tasks and threads on both sides.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import logging
import math
import sys
import threading
import types
from typing import Any

import pytest

import corral
import corral.threads

from .helpers import Counter, Flavour, Gate, Kind, counting, parked, stalled, until


async def test_fan_out_yields_every_result(flavour: Flavour, kind: Kind) -> None:
    out = await flavour.collect(flavour.fan_out(kind.fn(lambda x: x * x), range(50), workers=4))
    assert sorted(out) == [x * x for x in range(50)]


async def test_fan_out_ordered_keeps_input_order_when_the_head_is_slowest(
    flavour: Flavour, kind: Kind
) -> None:
    # Item 0 finishes last (it waits until item 5 is done): ordered output still starts
    # with it, and the reorder buffer never holds more than the window.
    five_done = Gate()

    def body(x: int) -> Any:
        if x == 0:
            return _then(kind.wait(five_done.ctx), x)
        if x == 5:
            five_done.open()
        return x

    flow = flavour.fan_out(kind.fn(body), range(20), workers=3, ordered=True)
    assert await flavour.collect(flow) == list(range(20))


def _then(awaitable: Any, value: Any) -> Any:
    if awaitable is None:
        return value

    async def go() -> Any:
        await awaitable
        return value

    return go()


async def test_fan_out_ordered_window_bounds_items_taken_past_a_stuck_head(
    flavour: Flavour, kind: Kind
) -> None:
    # aiostream#89's shape: one slow head item. With ordered=True, no more than `window`
    # items may be taken from the input beyond the oldest one not yet delivered, however
    # much room the buffers have.
    window = 5
    head = Gate()
    pulled = Counter()

    def body(x: int) -> Any:
        if x == 0:
            return _then(kind.wait(head.ctx), x)
        return x

    flow = flavour.fan_out(
        kind.fn(body),
        counting(iter(range(100)), pulled),
        workers=3,
        buffer=20,
        ordered=True,
        window=window,
    )
    async with flavour.open(flow) as results:
        # The two free workers finish items 1-4, then wait for a window slot.
        await until(lambda: parked(flow) == 2, "two workers parked on the window")
        assert pulled.value == window  # the window, not the buffer, bounds it
        head.open()
        assert await flavour.items(results) == list(range(100))


async def test_fan_out_collect_policy_ties_each_error_to_its_item(
    flavour: Flavour, kind: Kind
) -> None:
    def body(x: int) -> int:
        if x % 3 == 0:
            raise ValueError(f"bad {x}")
        return x * 10

    out = await flavour.collect(
        flavour.fan_out(kind.fn(body), range(9), workers=2, errors="collect", ordered=True)
    )
    assert [o.item for o in out] == list(range(9))
    for o in out:
        assert isinstance(o, corral.Outcome)
        if o.item % 3 == 0:
            assert not o.ok
            assert isinstance(o.error, ValueError)
            assert str(o.error) == f"bad {o.item}"
            with pytest.raises(ValueError, match=f"bad {o.item}"):
                o.unwrap()
        else:
            assert o.ok
            assert o.unwrap() == o.item * 10


async def test_fan_out_skip_policy_logs_and_drops_failed_items(
    flavour: Flavour, kind: Kind, caplog: pytest.LogCaptureFixture
) -> None:
    def body(x: int) -> int:
        if x in (2, 7):
            raise KeyError(x)
        return x

    with caplog.at_level(logging.DEBUG, logger="corral"):
        flow = flavour.fan_out(kind.fn(body), range(10), workers=3, errors="skip", ordered=True)
        out = await flavour.collect(flow)
    assert out == [0, 1, 3, 4, 5, 6, 8, 9]
    # One warning line per skipped item, naming the error, with no traceback (21 bad lines
    # once printed 253 lines of stderr); the traceback is at the debug level.
    warned = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert sorted(r.getMessage().rsplit(": ", 1)[1] for r in warned) == ["2", "7"]
    assert sorted((r.item, r.error.args[0]) for r in warned) == [(2, 2), (7, 7)]
    assert all("KeyError" in r.getMessage() and r.exc_info is None for r in warned)
    debug = [r for r in caplog.records if r.levelno == logging.DEBUG and "skipped" in r.msg]
    assert {r.exc_info[1].args[0] for r in debug if r.exc_info and r.exc_info[1]} == {2, 7}
    assert flow.statistics().stages[0].errors == 2


async def test_fan_out_first_error_is_raised_and_cancels_the_rest(
    flavour: Flavour, kind: Kind
) -> None:
    # Items other than 3 wait on the run's own ctx: only the cancellation that the first
    # error causes can release them (a thread cannot be interrupted, but can wait on ctx).
    holder: dict[str, Any] = {}

    def body(x: int) -> Any:
        if x == 3:
            raise RuntimeError("item 3 failed")
        return _then(kind.wait(holder["flow"].ctx), x)

    flow = flavour.fan_out(kind.fn(body), range(10), workers=4)
    holder["flow"] = flow
    with pytest.raises(RuntimeError, match="item 3 failed"):
        await flavour.collect(flow)
    assert flow.ctx.cancelled
    assert isinstance(flow.ctx.cause, RuntimeError)


async def test_fan_out_reads_an_endless_generator_lazily(flavour: Flavour, kind: Kind) -> None:
    pulled = Counter()
    workers, buffer = 3, 4
    flow = flavour.fan_out(
        kind.fn(lambda x: x), counting(itertools.count(), pulled), workers=workers, buffer=buffer
    )
    got = []
    async with flavour.open(flow) as results:
        while len(got) < 10:
            got.append(await flavour.next(results))
        await until(lambda: stalled(flow), "the workers to fill the buffer and park")
        # In flight: taken from the input and not yet delivered.
        assert pulled.value - len(got) == workers + buffer
    assert len(got) == 10
    assert flow.statistics().running is False


def _generator_with_cleanup(log: list[str]) -> Any:
    try:
        yield from itertools.count()
    finally:
        log.append("closed")


async def test_fan_out_break_stops_every_worker_and_closes_the_generator(
    flavour: Flavour, kind: Kind
) -> None:
    log: list[str] = []
    flow = flavour.fan_out(kind.fn(lambda x: x), _generator_with_cleanup(log), workers=4)
    async with flavour.open(flow) as results:
        assert await flavour.next(results) is not None
    # Leaving the block waited for every worker; the harness checks none is left.
    assert log == ["closed"]
    assert flow.statistics().running is False
    assert flow.ctx.cancelled


async def test_cancelled_consumer_stops_every_worker() -> None:
    started = asyncio.Event()
    forever = corral.with_cancel(corral.background())

    async def body(x: int) -> int:
        started.set()
        await forever.wait()  # never done: only cancellation ends it
        return x

    async def consume() -> None:
        async with corral.fan_out(body, range(100), workers=5) as results:
            async for _ in results:
                pass

    task = asyncio.create_task(consume())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    forever.cancel()


async def test_cancelled_consumer_waits_for_thread_workers_then_reraises() -> None:
    # A thread cannot be interrupted: the cancelled consumer waits for its call to return
    # (the run's ctx tells it to), then the cancellation propagates.
    entered = threading.Event()
    holder: dict[str, Any] = {}

    def body(x: int) -> int:
        entered.set()
        holder["flow"].ctx.wait_blocking()
        return x

    flow = corral.fan_out(body, range(3), workers=1)
    holder["flow"] = flow

    async def consume() -> None:
        async with flow as results:
            async for _ in results:
                pass

    task = asyncio.create_task(consume())
    await until(entered.is_set)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert flow.statistics().running is False


async def test_a_stage_error_is_not_lost_to_a_cancellation_racing_it() -> None:
    # spdl PR #1572's shape: the consumer is cancelled from outside while a worker's
    # error is waiting to be raised; the error still comes out (the cancellation is its
    # __context__).
    failed = asyncio.Event()

    async def body(x: int) -> int:
        if x == 0:
            failed.set()
            raise LookupError("stage failed")
        return x

    async def consume() -> None:
        async with corral.fan_out(body, range(3), workers=1):
            await asyncio.Event().wait()  # busy elsewhere: never reads the results

    task = asyncio.create_task(consume())
    await failed.wait()
    task.cancel()
    with pytest.raises(LookupError, match="stage failed") as info:
        await task
    assert isinstance(info.value.__context__, asyncio.CancelledError)


async def test_parent_ctx_cancellation_raises_cancelled(flavour: Flavour, kind: Kind) -> None:
    parent = corral.with_cancel(corral.background())
    got = []

    def body(x: int) -> Any:
        if x == 5:
            parent.cancel(LookupError("shutting down"))
        return x

    flow = flavour.fan_out(kind.fn(body), range(1000), workers=2, buffer=1, ctx=parent)
    with pytest.raises(corral.Cancelled) as info:
        async with flavour.open(flow) as results:
            while len(got) < 1000:
                got.append(await flavour.next(results))
    assert isinstance(info.value.cause, LookupError)
    assert len(got) < 1000


async def test_go_multi_consumer_fan_out_fan_in_exact_count_and_sum(flavour: Flavour) -> None:
    # Go's runtime/chan_test.go TestMultiConsumer: 23 workers share one input; every item
    # comes out exactly once.
    nwork, niter = 23, 271_828
    mod = flavour.mod
    if flavour.name == "aio":

        async def work(x: int) -> int:
            return x

        fn: Any = work
    else:
        fn = abs  # a C function: the test measures the machinery, not Python calls
    count = total = 0
    async with flavour.open(mod.fan_out(fn, range(niter), workers=nwork, buffer=256)) as res:
        if flavour.name == "aio":
            async for x in res:
                count += 1
                total += x
        else:
            for x in res:
                count += 1
                total += x
    assert count == niter
    assert total == niter * (niter - 1) // 2


async def test_fan_out_accepts_async_iterables_and_channels(flavour: Flavour, kind: Kind) -> None:
    async def agen() -> Any:
        for i in range(20):
            yield i

    out = await flavour.collect(flavour.fan_out(kind.fn(lambda x: -x), agen(), workers=3))
    assert sorted(out) == sorted(-i for i in range(20))

    ch = corral.threads.Channel(30)
    for i in range(30):
        ch.send(i)
    ch.close()
    flow = flavour.fan_out(kind.fn(lambda x: x + 1), ch, workers=3, ordered=True)
    assert await flavour.collect(flow) == list(range(1, 31))


async def test_fan_out_async_generator_left_early_is_closed(flavour: Flavour) -> None:
    log: list[str] = []

    async def agen() -> Any:
        try:
            for i in itertools.count():
                yield i
        finally:
            log.append("closed")

    flow = flavour.fan_out(abs, agen(), workers=2)
    async with flavour.open(flow) as results:
        await flavour.next(results)
    assert log == ["closed"]


async def test_fan_out_on_a_callers_executor(flavour: Flavour) -> None:
    with concurrent.futures.ThreadPoolExecutor(2) as ex:
        out = await flavour.collect(
            flavour.fan_out(math.isqrt, range(100), workers=4, executor=ex, ordered=True)
        )
    assert out == [math.isqrt(i) for i in range(100)]


@pytest.mark.slow
async def test_fan_out_in_processes(flavour: Flavour) -> None:
    out = await flavour.collect(
        flavour.fan_out(math.factorial, range(40), workers=2, run_in="process", ordered=True)
    )
    assert out == [math.factorial(i) for i in range(40)]


async def test_process_stage_with_an_unpicklable_function_is_a_clear_error(
    flavour: Flavour,
) -> None:
    with pytest.raises(TypeError, match=r"cannot be sent to a worker process.*module level"):
        flavour.fan_out(lambda x: x, range(3), run_in="process")
    with pytest.raises(TypeError, match="cannot be sent to a worker process"):
        corral.stage(lambda x: x, run_in="process")


async def test_fan_out_progress_callback_reports_to_the_end(flavour: Flavour, kind: Kind) -> None:
    seen: list[corral.Progress] = []
    flow = flavour.fan_out(kind.fn(lambda x: x), range(200), workers=2, progress=seen.append)
    assert len(await flavour.collect(flow)) == 200
    assert seen, "the final report is always sent"
    assert seen[-1].done == 200
    assert seen[-1].total == 200
    assert seen[-1].failed == 0
    assert [p.done for p in seen] == sorted(p.done for p in seen)


async def test_fan_out_progress_true_draws_a_tqdm_bar_when_installed(
    flavour: Flavour, monkeypatch: pytest.MonkeyPatch
) -> None:
    bars: list[Any] = []

    class FakeBar:
        def __init__(self, **kw: Any) -> None:
            self.kw = kw
            self.n = 0
            self.closed = False
            bars.append(self)

        def update(self, n: int) -> None:
            self.n += n

        def close(self) -> None:
            self.closed = True

    fake = types.ModuleType("tqdm")
    fake.tqdm = FakeBar  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tqdm", fake)
    await flavour.collect(flavour.fan_out(abs, range(50), workers=2, progress=True))
    assert len(bars) == 1
    assert bars[0].n == 50
    assert bars[0].closed
    assert bars[0].kw["total"] == 50


def test_progress_true_without_tqdm_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tqdm", None)  # makes `import tqdm` fail
    with pytest.raises(ImportError, match=r"corral\[tqdm\]"):
        corral.fan_out(abs, range(3), progress=True)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"workers": 0}, ValueError, "workers must be >= 1"),
        ({"workers": 2.5}, TypeError, "workers must be an int"),
        ({"buffer": -1}, ValueError, "buffer must be >= 0"),
        ({"errors": "ignore"}, ValueError, "errors must be one of"),
        ({"run_in": "gpu"}, ValueError, "run_in must be one of"),
        ({"executor": object()}, TypeError, "executor must be a concurrent.futures.Executor"),
        ({"window": 4}, ValueError, "window only applies with ordered=True"),
        ({"ordered": True, "window": 0}, ValueError, "window must be >= 1"),
        ({"ordered": 1}, TypeError, "ordered must be a bool"),
        ({"ctx": "ctx"}, TypeError, "ctx must be a corral Context"),
        ({"progress": 3}, TypeError, "progress must be a callable"),
    ],
)
def test_fan_out_bad_arguments_name_the_argument(
    kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    for mod in (corral, corral.threads):
        with pytest.raises(error, match=match):
            mod.fan_out(abs, range(3), **kwargs)


def test_fan_out_bad_function_and_items() -> None:
    for mod in (corral, corral.threads):
        with pytest.raises(TypeError, match="fn must be callable"):
            mod.fan_out(3, range(3))  # type: ignore[call-overload]
        with pytest.raises(TypeError, match="items must be an iterable"):
            mod.fan_out(abs, 3)  # type: ignore[call-overload]

    async def coro(x: int) -> int:
        return x

    with pytest.raises(TypeError, match="coroutine function; it cannot run in run_in='thread'"):
        corral.fan_out(coro, range(3), run_in="thread")
    with (
        concurrent.futures.ThreadPoolExecutor(1) as ex,
        pytest.raises(ValueError, match="run_in or executor, not both"),
    ):
        corral.fan_out(abs, range(3), run_in="thread", executor=ex)


async def test_fan_out_must_be_entered_and_only_once(flavour: Flavour) -> None:
    flow = flavour.fan_out(abs, range(3))
    with pytest.raises(RuntimeError, match="enter it first"):
        await flavour.next(flow)
    with pytest.raises(RuntimeError, match="not started yet"):
        flow.statistics()
    assert await flavour.collect(flow) != []
    with pytest.raises(RuntimeError, match="already started"):
        await flavour.collect(flow)


async def test_a_plain_function_returning_a_coroutine_is_an_item_error(flavour: Flavour) -> None:
    # A lambda around an async def is a plain function: it would run in a thread and
    # hand back a coroutine nobody awaits. It is an error instead (and the coroutine is
    # closed: no "never awaited" warning, which the harness would report).
    async def fetch(x: int) -> int:
        return x

    flow = flavour.fan_out(lambda x: fetch(x), range(3), workers=1, errors="collect")
    out = await flavour.collect(flow)
    assert len(out) == 3
    for o in out:
        assert isinstance(o.error, TypeError)
        assert "returned a coroutine: make it an `async def` function" in str(o.error)
