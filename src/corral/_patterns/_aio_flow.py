"""The asyncio flavour's ``fan_out`` and ``pipeline``: the :class:`Flow` handle.

A ``Flow`` plans nothing and runs nothing itself: it starts a ``FlowRun`` (``_engine``)
with the worker loops of both flavours (``_workers``), delivers its results, reports
progress, and stops it.

``_threads_flow.py`` is generated from ``_aio_flow.py`` by ``scripts/unasync_patterns.py``
(coroutines become functions, awaits go, ``_rt_aio`` becomes ``_rt_threads``, ``_aio_*``
modules become ``_threads_*``, ...): edit the ``_aio_*`` files only, with constructs the
rewrite understands, and put what truly differs between the flavours in ``_rt_aio`` /
``_rt_threads``.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Awaitable, Callable, Iterable
from types import TracebackType
from typing import Any, Generic, Literal, TypeVar, overload

from .._core.channel import CLOSED
from .._core.context import Context
from .._errors import Cancelled
from .._shells import ChannelBase, LimitsBase, RateLimitBase
from . import _rt_aio as rt
from . import _stage_run
from ._engine import FlowRun
from ._plan import (
    MISSING,
    SKIPPED,
    ErrorPolicy,
    ExecutorArg,
    FlowPlan,
    Outcome,
    RunIn,
    plan_fan_out,
    plan_pipeline,
)
from ._stats import PipelineStatistics, ProgressDriver, ProgressSpec
from ._workers import worker_bodies

__all__ = ["Flow", "fan_out", "pipeline"]

T = TypeVar("T")
R = TypeVar("R")


# -- fan_out and pipeline -----------------------------------------------------------------


class Flow(Generic[R]):
    """A running fan-out or pipeline: enter it, iterate its results, leave it.

    Made by :func:`fan_out` and :func:`pipeline`. Entering starts the workers; iterating
    gives results as they complete (in input order with ``ordered=True``); leaving the
    block (normally, by ``break``, by an error, or by cancellation) stops every worker and
    returns only once nothing the run started is still running. The first error of an
    ``errors="raise"`` stage is raised by the iteration (or, if the block ended without
    seeing it, when the block exits). ``collect()`` does all of this in one call.

    >>> import asyncio, corral
    >>> async def main():
    ...     async with corral.fan_out(abs, range(-5, 0), workers=2, ordered=True) as results:
    ...         first = [r async for r in results][:2]
    ...     return first, results.statistics().running
    >>> asyncio.run(main())
    ([5, 4], False)
    """

    __slots__ = (
        "_buf",
        "_done",
        "_next_seq",
        "_pending",
        "_plan",
        "_progress",
        "_raised",
        "_run",
        "_stopped",
    )

    def __init__(self, plan: FlowPlan) -> None:
        self._plan = plan
        self._run: FlowRun | None = None
        self._pending: dict[int, Any] = {}
        self._next_seq = 0
        self._progress: ProgressDriver | None = None
        self._done = False
        self._raised = False
        self._stopped = False
        self._buf: Any = ()

    def __repr__(self) -> str:
        run = self._run
        state = "new" if run is None else ("closed" if self._stopped else "running")
        return f"<corral {self._plan.what} ({len(self._plan.stages)} stage(s)) {state}>"

    async def __aenter__(self) -> Flow[R]:
        if self._run is not None:
            raise RuntimeError(f"{self._plan.what}: already started (make a new one per run)")
        run = FlowRun(self._plan, rt.FLAVOUR, rt.current_loop(), worker_bodies())
        self._run = run
        try:
            run.start()
        except BaseException:  # e.g. ThreadStartError: stop and wait for what did start
            await self.aclose()
            raise
        # The output's buffer, for the inlined receive below; an empty tuple sends every
        # item through ChannelState.recv instead (tests/inlines compare the two).
        self._buf = run.out.buf if _stage_run.INLINE_FAST_PATHS else ()
        if self._plan.progress:
            self._progress = ProgressDriver(self._plan.progress, run)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
        run = self._run
        assert run is not None
        # An error the consumer has not seen is raised, even when the block is left by a
        # cancellation (which becomes its __context__): a stage failure must not be lost
        # to a cancellation racing it (lessons-from-peers, item 12; TaskGroup does the
        # same). Any other exception leaving the block wins.
        unseen = run.error is not None and not self._raised
        if unseen and (e is None or rt.is_cancellation(e)):
            self._raised = True
            raise run.error  # type: ignore[misc]  # narrowed by `unseen`

    def __aiter__(self) -> Flow[R]:
        return self

    async def __anext__(self) -> R:
        run = self._run
        if run is None:
            what = self._plan.what
            raise RuntimeError(f"{what}: enter it first: `async with {what}(...) as results:`")
        if self._done:
            raise StopAsyncIteration
        if rt.owed:  # as every corral operation does (see corral._aio.wait)
            rt.pay_owed()
        st = run.out
        buf = self._buf
        lock = run.out_lock  # None: only this loop touches the output (no lock needed)
        while True:
            if run.error is not None:
                self._end()
            if run.ordered:
                v = self._pending.pop(self._next_seq, MISSING)
                if v is not MISSING:
                    self._next_seq += 1
                    assert run.gate is not None
                    run.gate.release(1)  # the window moves on
                    if v is SKIPPED:
                        continue
                    return self._deliver(v)
            # inline of corral._core.channel.ChannelState.recv (optionally lockless, see work)
            if lock is None:
                if buf and not st.sendq:
                    r = buf.popleft()
                else:
                    if not buf:
                        await rt.pause()  # empty: let the workers run once before parking
                    r = st.recv(rt.new_waiter)
            else:
                lock.acquire()
                if buf and not st.sendq:
                    r = buf.popleft()
                    lock.release()
                else:
                    lock.release()
                    r = st.recv(rt.new_waiter)
            if r.__class__ is rt.Waiter:
                try:
                    await rt.park(r, None, run.ctx)
                except Cancelled:
                    r = CLOSED  # the run was cancelled; _end says why (outside the except,
                    # so the error raised is not chained to this Cancelled)
                else:
                    r = r.value
            if r is CLOSED:
                self._end()
            if run.ordered:
                self._pending[r[0]] = r[1]
                continue
            return self._deliver(r)

    def _deliver(self, v: Any) -> R:
        run = self._run
        assert run is not None
        n = run.delivered = run.delivered + 1
        if not n & 31:
            run.sample()  # buffer occupancy, for statistics
        if self._progress is not None:
            self._progress.tick(n)
        return v  # type: ignore[no-any-return]

    def _end(self) -> Any:
        """The output ended or the run failed: raise its error once, then end iteration."""
        self._done = True
        run = self._run
        assert run is not None
        err = run.check_ended()
        if err is not None and not self._raised:
            self._raised = err is run.error
            raise err
        raise StopAsyncIteration

    async def collect(self) -> list[R]:
        """Run to the end and return every result in a list (raising the first error).

        Results are in completion order, or input order with ``ordered=True``.
        """
        async with self:
            return [x async for x in self]

    async def aclose(self) -> None:
        """Stop every worker and wait until they have stopped; idempotent.

        Leaving the ``async with`` block does this. A worker running a plain function in a
        thread cannot be interrupted: this waits for its current call to return.
        """
        run = self._run
        if run is None or self._stopped:
            return
        self._stopped = True
        self._done = True
        run.stop()
        await rt.wait_closed(run.finished)
        if run.needs_blocking_cleanup:
            await rt.blocking(run.finalize, self._plan.what)
        else:
            run.finalize()
        if self._progress is not None:
            self._progress.close(run.delivered)

    @property
    def ctx(self) -> Context:
        """The run's Context: cancelled by the first error or when the run is closed.

        Pass it to the work functions that should stop early with the run.
        """
        if self._run is None:
            raise RuntimeError(f"{self._plan.what}: not started yet")
        return self._run.ctx

    def statistics(self) -> PipelineStatistics:
        """Per-stage figures and the bottleneck (see :class:`corral.PipelineStatistics`)."""
        if self._run is None:
            raise RuntimeError(f"{self._plan.what}: not started yet")
        return self._run.statistics()


@overload
def fan_out(
    fn: Callable[[T], Awaitable[R]],
    items: Iterable[T] | AsyncIterable[T] | ChannelBase[T],
    *,
    workers: int | None = ...,
    buffer: int | None = ...,
    ordered: bool = ...,
    window: int | None = ...,
    errors: Literal["raise", "skip"] = ...,
    run_in: RunIn | None = ...,
    executor: ExecutorArg | None = ...,
    ctx: Context | None = ...,
    progress: ProgressSpec = ...,
    rate: RateLimitBase | LimitsBase | None = ...,
    cost: Callable[[T], Any] | None = ...,
) -> Flow[R]: ...
@overload
def fan_out(
    fn: Callable[[T], Awaitable[R]],
    items: Iterable[T] | AsyncIterable[T] | ChannelBase[T],
    *,
    workers: int | None = ...,
    buffer: int | None = ...,
    ordered: bool = ...,
    window: int | None = ...,
    errors: Literal["collect"],
    run_in: RunIn | None = ...,
    executor: ExecutorArg | None = ...,
    ctx: Context | None = ...,
    progress: ProgressSpec = ...,
    rate: RateLimitBase | LimitsBase | None = ...,
    cost: Callable[[T], Any] | None = ...,
) -> Flow[Outcome[T, R]]: ...
@overload
def fan_out(
    fn: Callable[[T], R],
    items: Iterable[T] | AsyncIterable[T] | ChannelBase[T],
    *,
    workers: int | None = ...,
    buffer: int | None = ...,
    ordered: bool = ...,
    window: int | None = ...,
    errors: Literal["raise", "skip"] = ...,
    run_in: RunIn | None = ...,
    executor: ExecutorArg | None = ...,
    ctx: Context | None = ...,
    progress: ProgressSpec = ...,
    rate: RateLimitBase | LimitsBase | None = ...,
    cost: Callable[[T], Any] | None = ...,
) -> Flow[R]: ...
@overload
def fan_out(
    fn: Callable[[T], R],
    items: Iterable[T] | AsyncIterable[T] | ChannelBase[T],
    *,
    workers: int | None = ...,
    buffer: int | None = ...,
    ordered: bool = ...,
    window: int | None = ...,
    errors: Literal["collect"],
    run_in: RunIn | None = ...,
    executor: ExecutorArg | None = ...,
    ctx: Context | None = ...,
    progress: ProgressSpec = ...,
    rate: RateLimitBase | LimitsBase | None = ...,
    cost: Callable[[T], Any] | None = ...,
) -> Flow[Outcome[T, R]]: ...


def fan_out(
    fn: Callable[[Any], Any],
    items: object,
    *,
    workers: int | None = None,
    buffer: int | None = None,
    ordered: bool = False,
    window: int | None = None,
    errors: ErrorPolicy = "raise",
    run_in: RunIn | None = None,
    executor: ExecutorArg | None = None,
    ctx: Context | None = None,
    progress: ProgressSpec = None,
    rate: RateLimitBase | LimitsBase | None = None,
    cost: Callable[[Any], Any] | None = None,
) -> Flow[Any]:
    """Run ``fn(item)`` for every item on ``workers`` concurrent workers; yield the results.

    ``items`` may be any iterable, an async iterable, or a corral Channel, endless or
    not: it is read lazily, and at most ``workers + buffer`` items are in flight (taken
    from ``items`` and not yet delivered; one more for an async iterable; ``buffer``
    defaults to 16, or to ``workers`` if that is more). Results come
    as they complete; with ``ordered=True``, in input order, with at most ``window`` items (default
    ``workers + buffer``) between the oldest unfinished one and the newest taken, so one
    slow item cannot make memory grow.

    ``errors``: ``"raise"`` (default: the first error cancels the rest and is raised),
    ``"collect"`` (every result is an :class:`corral.Outcome` tying the item to its value
    or error), ``"skip"`` (failed items are logged, as warnings on the ``corral``
    logger, and dropped). ``run_in`` / ``executor`` (an executor or a Dask client): see
    :func:`corral.stage`. ``ctx``:
    cancelling it stops the fan-out (iteration raises ``Cancelled``). ``progress``: a
    callback taking a :class:`corral.Progress` (called at most every 0.1 s, and once at
    the end), or ``True`` for a tqdm bar. Leaving the block early stops every worker.

    ``rate``: a :class:`corral.RateLimit` or :class:`corral.Limits` every call acquires
    first, ``cost(item)`` of it (default 1; for ``Limits`` a mapping, see
    :func:`corral.stage`), so a bounded fan-out is also rate-limited.

    >>> import asyncio, corral
    >>> async def double(x):
    ...     return 2 * x
    >>> async def main():
    ...     async with corral.fan_out(double, range(5), workers=2) as results:
    ...         return sorted([r async for r in results])
    >>> asyncio.run(main())
    [0, 2, 4, 6, 8]

    ``collect()`` runs it to the end in one call:

    >>> asyncio.run(corral.fan_out(double, range(5), workers=2, ordered=True).collect())
    [0, 2, 4, 6, 8]
    """
    return Flow(
        plan_fan_out(
            fn,
            items,
            workers=workers,
            buffer=buffer,
            ordered=ordered,
            window=window,
            errors=errors,
            run_in=run_in,
            executor=executor,
            ctx=ctx,
            progress=progress,
            rate=rate,
            cost=cost,
        )
    )


def pipeline(
    source: Iterable[Any] | AsyncIterable[Any] | ChannelBase[Any],
    *stages: object,
    ordered: bool = False,
    window: int | None = None,
    ctx: Context | None = None,
    progress: ProgressSpec = None,
) -> Flow[Any]:
    """Chain stages over bounded channels: each stage's results feed the next.

    Each stage (a :func:`corral.stage`, or a bare function for ``stage(fn)``) runs its
    own ``workers`` and queues up to ``buffer`` results for the next one, so the stages
    run concurrently and a slow stage holds the ones before it back (backpressure):
    at most ``sum(workers + buffer) + 1`` items are in flight. ``source`` is read lazily.
    Stages may run in tasks, threads, processes or an executor, mixed freely.

    The first error (from a stage, or raised by ``source``) cancels the whole pipeline
    and is raised by the iteration. ``ordered=True`` keeps the source's order end to end
    (``window`` as in :func:`fan_out`). ``statistics()`` gives per-stage figures and names
    the bottleneck.

    >>> import asyncio, corral
    >>> async def parse(line):
    ...     return int(line)
    >>> async def main():
    ...     lines = ["1", "2", "3", "4"]
    ...     async with corral.pipeline(
    ...         lines, corral.stage(parse, workers=2), corral.stage(abs), ordered=True
    ...     ) as out:
    ...         return [x async for x in out]
    >>> asyncio.run(main())
    [1, 2, 3, 4]
    """
    return Flow(
        plan_pipeline(source, stages, ordered=ordered, window=window, ctx=ctx, progress=progress)
    )
