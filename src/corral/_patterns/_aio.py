"""The asyncio flavour of the patterns: fan_out, pipeline, or_done, tee, fan_in.

``_threads.py`` is generated from ``_aio.py`` by ``scripts/unasync_patterns.py``
(coroutines become functions, awaits go, ``_rt_aio`` becomes ``_rt_threads``, ...):
edit ``_aio.py`` only, with constructs the rewrite understands, and put what truly
differs between the flavours in ``_rt_aio`` / ``_rt_threads``. The ``work`` and ``feed``
loops here serve both flavours: ``_aio``'s are what task workers run, ``_threads``'s what
thread workers run.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable
from concurrent.futures import Executor
from types import TracebackType
from typing import Any, Generic, Literal, TypeVar, overload

from .._core.channel import CLOSED, ChannelState
from .._core.context import CancelContext, Context, background, with_cancel
from .._core.semaphore import SemaphoreState
from .._errors import Cancelled, ChannelClosed, CorralError, EndOfChannel
from .._shells import ChannelBase
from . import _rt_aio as rt
from ._common import (
    COLLECT,
    MISSING,
    RAISE,
    SKIP,
    SKIPPED,
    ErrorPolicy,
    FlowPlan,
    FlowRun,
    Outcome,
    PipelineStatistics,
    ProgressDriver,
    ProgressSpec,
    RunIn,
    StageRun,
    WorkerRecord,
    check_int,
    log_skipped,
    offer_dropping,
    plan_fan_out,
    plan_pipeline,
)

__all__ = [
    "Flow",
    "RelayChannel",
    "fan_in",
    "fan_out",
    "feed",
    "or_done",
    "pipeline",
    "tee",
    "work",
]

T = TypeVar("T")
R = TypeVar("R")

_perf = time.perf_counter


# -- the loops workers run --------------------------------------------------------------------


async def work(run: FlowRun, sp: StageRun, rec: WorkerRecord) -> None:
    """One worker of one stage: take an item, call the stage's fn, pass the result on.

    Runs until its input ends (the last worker of the stage then closes the output) or
    the run is cancelled. It never raises: an error is recorded on the run (which cancels
    it), or handled by the stage's policy. The counters live in locals and are published
    to ``rec`` whenever the worker parks, and when it ends.

    The buffered fast paths of ``ChannelState.recv`` / ``send`` are inlined (the same
    tests, under the same lock): a call costs more than the operation itself, and this
    loop runs once per item per stage. Anything else goes through the real methods.

    On a loop-local channel that is empty (or full), the worker first yields once, then
    tries again, and only then parks: the other stages usually refill (or drain) it in
    that one step, and a yield costs a third of a park and wake-up. This matters with
    several workers per stage and cheap functions, where every worker otherwise parks
    and is woken once per buffer-full (measured: 3 stages x 4 workers, buffer 64,
    ~17k parks per 100k items).
    """
    ctx = run.ctx
    pctx = rt.park_ctx(ctx)
    src = sp.src
    recv = src.recv
    dst = sp.dst
    send = dst.send
    # A channel only this loop's tasks touch needs no lock (see FlowRun.local_channels).
    olock = None if sp.local_out else dst.lock
    obuf, orecvq, ocap = dst.buf, dst.recvq, dst.cap
    if isinstance(src, ChannelState):
        ilock = None if sp.local_in else src.lock
        ibuf, isendq = src.buf, src.sendq
    else:  # an IterSource
        ilock, ibuf, isendq = None, None, None
    call = sp.call
    policy = sp.policy
    collect = policy == COLLECT
    ordered = run.ordered
    gate = sp.gate
    waiter_class = rt.Waiter
    new_waiter = rt.new_waiter
    owed = rt.owed
    seq = 0
    n_in = n_out = n_err = 0
    try:
        async with rt.cancel_scope(ctx):
            while True:
                if owed:  # a cancellation owed to this task is paid at its next operation
                    rt.pay_owed()
                if gate is not None:  # ordered mode: a window slot before taking an item
                    await _acquire(gate, pctx, rec)
                if ibuf is not None:
                    if ilock is not None:
                        ilock.acquire()
                    if ibuf and not isendq:
                        r = ibuf.popleft()
                        if ilock is not None:
                            ilock.release()
                    else:
                        if ilock is not None:
                            ilock.release()
                        elif not ibuf:  # loop-local and empty: let producers run once
                            await rt.pause()
                        r = recv(new_waiter)
                else:
                    r = recv(new_waiter)
                if r.__class__ is waiter_class:
                    rec.n_in, rec.n_out, rec.n_err = n_in, n_out, n_err
                    rec.since = t = _perf()
                    rec.waiter = r
                    await rt.park(r, None, pctx)
                    rec.since = 0.0
                    rec.waiter = None
                    rec.wait_in += _perf() - t
                    r = r.value
                if r is CLOSED:
                    if gate is not None:
                        gate.release(1)
                    break
                n_in += 1
                if ordered:
                    seq, item = r
                else:
                    item = r
                if run.halted:  # failed or stopping: start no new call (the item is dropped)
                    break
                if item is SKIPPED:  # ordered mode: skipped upstream, keep its place
                    v = SKIPPED
                else:
                    try:
                        v = await call(item)
                    except Exception as exc:
                        if ctx.err is not None:
                            break  # the run is stopping: not this item's fault
                        if policy == RAISE:
                            run.fail(exc)
                            break
                        n_err += 1
                        if policy == SKIP:
                            log_skipped(sp, item, exc)
                            if not ordered:
                                continue
                            v = SKIPPED
                        else:
                            v = Outcome(item, None, exc)
                    else:
                        if collect:
                            v = Outcome(item, v, None)
                if ordered:
                    v = (seq, v)
                if olock is not None:
                    olock.acquire()
                if not orecvq and len(obuf) < ocap and not dst.closed:
                    obuf.append(v)
                    if olock is not None:
                        olock.release()
                else:
                    if olock is not None:
                        olock.release()
                    elif not orecvq and len(obuf) >= ocap:  # loop-local and full: let
                        await rt.pause()  # the consumers run once before parking
                    w = send(v, new_waiter)
                    if w is not None:
                        rec.n_in, rec.n_out, rec.n_err = n_in, n_out, n_err
                        rec.since_out = t = _perf()
                        rec.waiter = w
                        await rt.park(w, None, pctx)  # type: ignore[arg-type]
                        rec.since_out = 0.0
                        rec.waiter = None
                        rec.wait_out += _perf() - t
                        if w.value is CLOSED:  # pragma: no cover - only the stage closes it
                            break
                n_out += 1
    except BaseException as exc:
        if ctx.err is None or not rt.is_cancellation(exc):
            run.fail(exc)
            if rt.must_reraise(exc):
                raise
    finally:
        rec.n_in, rec.n_out, rec.n_err = n_in, n_out, n_err
        rec.since = rec.since_out = 0.0
        rec.waiter = None
        rec.t_end = _perf()  # run.worker_exit, called by whoever started us, counts the exit


async def feed(run: FlowRun, source: object, chan: ChannelState[Any], rec: WorkerRecord) -> None:
    """Hand a source's items to the first stage through ``chan``, a rendezvous channel.

    For sources the first stage's workers cannot read directly: an async iterable (read
    on a loop), or a channel in ordered mode (items must be numbered as they are taken).
    """
    ctx = run.ctx
    pctx = rt.park_ctx(ctx)
    gate = run.gate
    src = _Pull(source, run.plan.what, "source")
    seq = 0
    try:
        async with rt.cancel_scope(ctx):
            while True:
                if rt.owed:
                    rt.pay_owed()
                if gate is not None:
                    await _acquire(gate, pctx, rec)
                try:
                    item = await src.next(pctx)
                except _End:
                    if gate is not None:
                        gate.release(1)
                    break
                rec.n_in += 1
                if gate is not None:
                    item = (seq, item)
                    seq += 1
                await _send(chan, item, pctx)
                rec.n_out += 1
    except BaseException as exc:
        if ctx.err is None or not rt.is_cancellation(exc):
            run.fail(exc)
            if rt.must_reraise(exc):
                raise
    finally:
        chan.close()
        rec.t_end = _perf()
        await src.close_early()


async def _acquire(gate: SemaphoreState, pctx: Context | None, rec: WorkerRecord) -> None:
    """Take a slot of the ordered-mode window (waiting counts as waiting for input)."""
    w = gate.acquire(1, rt.new_waiter)
    if w is not None:
        assert isinstance(w, rt.Waiter)
        rec.since = t = _perf()
        rec.waiter = w
        try:
            await rt.park(w, None, pctx, lambda _: gate.release(1))
        finally:
            rec.since = 0.0
            rec.waiter = None
            rec.wait_in += _perf() - t


async def _send(st: ChannelState[Any], item: object, pctx: Context | None) -> None:
    w = st.send(item, rt.new_waiter)
    if w is not None:
        assert isinstance(w, rt.Waiter)
        await rt.park(w, None, pctx)
        if w.value is CLOSED:
            raise ChannelClosed("channel closed while the send was waiting")


class _End(Exception):
    """A relay's or feeder's input has ended."""


class _Pull:
    """Read a corral Channel (of either flavour) or an iterable one item at a time."""

    __slots__ = ("_close", "_done", "_next", "_st")

    def __init__(self, source: object, what: str, arg: str) -> None:
        self._done = False
        if isinstance(source, ChannelBase):
            self._st: ChannelState[Any] | None = source._st
            self._next: Any = None
            self._close: Any = None
        else:
            self._st = None
            self._next, self._close = rt.iterate(source, what, arg)

    async def next(self, pctx: Context | None) -> Any:
        """The next item; ``_End`` at the end; ``Cancelled`` if ``pctx`` is done meanwhile."""
        if rt.owed:
            rt.pay_owed()
        st = self._st
        if st is not None:
            r = st.recv(rt.new_waiter)
            if r.__class__ is rt.Waiter:
                await rt.park(r, None, pctx)
                r = r.value
            if r is CLOSED:
                self._done = True
                raise _End
            return r
        try:
            return await self._next()
        except StopAsyncIteration:
            self._done = True
            raise _End from None

    async def close_early(self) -> None:
        """Close a generator we stopped reading before its end (its finally blocks run now)."""
        close = self._close
        if close is not None and not self._done:
            self._close = None
            await close()


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

    def __repr__(self) -> str:
        run = self._run
        state = "new" if run is None else ("closed" if self._stopped else "running")
        return f"<corral {self._plan.what} ({len(self._plan.stages)} stage(s)) {state}>"

    async def __aenter__(self) -> Flow[R]:
        if self._run is not None:
            raise RuntimeError(f"{self._plan.what}: already started (make a new one per run)")
        run = FlowRun(self._plan, rt.FLAVOUR, rt.current_loop())
        self._run = run
        run.start()
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
        buf = st.buf
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
            # ChannelState.recv's fast path, inlined (see ``work``)
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
            await rt.blocking(run.finalize)
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
    executor: Executor | None = ...,
    ctx: Context | None = ...,
    progress: ProgressSpec = ...,
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
    executor: Executor | None = ...,
    ctx: Context | None = ...,
    progress: ProgressSpec = ...,
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
    executor: Executor | None = ...,
    ctx: Context | None = ...,
    progress: ProgressSpec = ...,
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
    executor: Executor | None = ...,
    ctx: Context | None = ...,
    progress: ProgressSpec = ...,
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
    executor: Executor | None = None,
    ctx: Context | None = None,
    progress: ProgressSpec = None,
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
    logger, and dropped). ``run_in`` / ``executor``: see :func:`corral.stage`. ``ctx``:
    cancelling it stops the fan-out (iteration raises ``Cancelled``). ``progress``: a
    callback taking a :class:`corral.Progress` (called at most every 0.1 s, and once at
    the end), or ``True`` for a tqdm bar. Leaving the block early stops every worker.

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


# -- or_done, tee, fan_in: channels fed by a relay worker ---------------------------------


class RelayChannel(rt.Channel[T]):
    """A corral Channel fed by a relay worker (``or_done``, ``tee``, ``fan_in``).

    A plain channel with three additions: once the relay's ctx is done, receiving ends at
    once (what is still buffered is dropped, as Go's ``select`` may pick ``ctx.Done()``);
    when the worker stops because an input *raised*, receivers get that error once the
    buffered items are drained (instead of a normal end); and ``dropped`` counts the items
    a ``tee(policy="drop")`` dropped for this output. Closing it tells the worker this
    consumer has left. (``select`` on it sees a plain channel.)

    >>> import asyncio, corral
    >>> async def main():
    ...     out = corral.or_done(corral.background(), ["a", "b"])
    ...     return [x async for x in out], out.dropped, out.closed
    >>> asyncio.run(main())
    (['a', 'b'], 0, True)
    """

    __slots__ = ("_ctx", "_dropped", "_failure", "_failure_raised")

    def __init__(self, capacity: float = 0, ctx: Context | None = None) -> None:
        super().__init__(capacity)
        self._ctx = ctx
        self._failure: BaseException | None = None
        self._failure_raised = False
        self._dropped = 0

    @property
    def dropped(self) -> int:
        """How many items were dropped for this output because it was full (tee "drop")."""
        return self._dropped

    def _failure_error(self) -> BaseException:
        # The first receiver gets the original; later ones a copy that points to it (one
        # exception object raised in many tasks would splice their tracebacks).
        err = self._failure
        assert err is not None
        if not self._failure_raised:
            self._failure_raised = True
            return err
        try:
            dup = copy.copy(err)
        except Exception:
            dup = CorralError(f"a relay input failed: {err!r}")
        dup.__traceback__ = None
        dup.__cause__ = err
        return dup

    def _ctx_done(self) -> bool:
        ctx = self._ctx
        return ctx is not None and ctx.err is not None

    async def recv(self, *, timeout: float | None = None, ctx: Context | None = None) -> T:
        if not self._ctx_done():
            try:
                return await super().recv(timeout=timeout, ctx=ctx)
            except EndOfChannel:
                if self._failure is None:
                    raise
        if self._failure is not None:
            raise self._failure_error()
        raise EndOfChannel("the relay's ctx is done")

    def __aiter__(self) -> RelayChannel[T]:
        return self

    async def __anext__(self) -> T:
        if rt.owed:
            rt.pay_owed()
        if self._ctx_done():
            r: Any = CLOSED
        else:
            r = self._st.recv(rt.new_waiter)
            if r.__class__ is rt.Waiter:
                await rt.park(r, None, None)
                r = r.value
        if r is CLOSED:
            if self._failure is not None:
                raise self._failure_error()
            raise StopAsyncIteration
        return r  # type: ignore[no-any-return]


def _check_relay_ctx(ctx: object, what: str) -> Context:
    if not isinstance(ctx, Context):
        raise TypeError(f"{what}: ctx must be a corral Context, got {type(ctx).__name__}")
    return ctx


def _relay_failed(ctx: Context, exc: BaseException) -> bool:
    """Whether ``exc`` is a real failure (not the relay's ctx being done)."""
    return ctx.err is None or not rt.is_cancellation(exc)


async def _or_done_body(ctx: Context, src: _Pull, out: RelayChannel[Any]) -> None:
    pctx = rt.park_ctx(ctx)
    try:
        async with rt.cancel_scope(ctx):
            while True:
                ctx.raise_if_cancelled()
                item = await src.next(pctx)
                await out.send(item, ctx=pctx)
    except (_End, ChannelClosed):
        pass
    except BaseException as exc:
        if _relay_failed(ctx, exc):
            out._failure = exc
            if rt.must_reraise(exc):
                raise
    finally:
        out.close()
        await src.close_early()


def or_done(
    ctx: Context,
    channel: ChannelBase[T] | AsyncIterable[T] | Iterable[T],
    *,
    buffer: int = 0,
) -> RelayChannel[T]:
    """A channel carrying ``channel``'s items until it ends or ``ctx`` is done (Go's orDone).

    Reading the result never blocks past ``ctx``: once it is done, reading it ends at once
    (iteration just stops, as in Go; check ``ctx.err`` to tell why). ``channel`` may be a
    corral Channel of either flavour or an (async) iterable; if an iterable raises, the
    result's receivers get that error. ``buffer`` is the result's capacity.

    Cleanup: a relay worker (a task in ``corral``, a daemon thread in ``corral.threads``) feeds the
    result. It ends when the input ends, when ``ctx`` is done, or, at its next item, when
    the consumer has closed the result; it then closes the result. Cancel ``ctx`` (or drain
    or close the result) so it does not wait forever on an idle input.

    >>> import asyncio, corral
    >>> async def main():
    ...     ch = corral.Channel(3)
    ...     for i in range(3):
    ...         await ch.send(i)
    ...     ch.close()
    ...     with corral.with_cancel(corral.background()) as ctx:
    ...         return [x async for x in corral.or_done(ctx, ch)]
    >>> asyncio.run(main())
    [0, 1, 2]
    """
    what = "or_done"
    _check_relay_ctx(ctx, what)
    check_int(buffer, what, "buffer", 0)
    src = _Pull(channel, what, "channel")
    out: RelayChannel[T] = RelayChannel(buffer, ctx)
    rt.spawn(_or_done_body, (ctx, src, out), what)
    return out


TeePolicy = Literal["lockstep", "buffer", "drop"]
_TEE_POLICIES = ("lockstep", "buffer", "drop")


async def _tee_body(
    ctx: Context, src: _Pull, outs: tuple[RelayChannel[Any], ...], policy: str
) -> None:
    pctx = rt.park_ctx(ctx)
    live = list(outs)
    try:
        async with rt.cancel_scope(ctx):
            while live:
                ctx.raise_if_cancelled()
                item = await src.next(pctx)
                if policy == "drop":
                    live = [o for o in live if offer_dropping(o, item)]
                    continue
                # Every live output gets the item before the next one is read: whichever
                # consumer is ready first is served first (Go's tee, with select).
                pending = list(live)
                while pending:
                    try:
                        if len(pending) == 1:
                            await pending[0].send(item, ctx=pctx)
                            break
                        cases = [o.send_case(item) for o in pending]
                        s = await rt.select(*cases, ctx=pctx)
                    except ChannelClosed:  # a consumer closed its output: it has left
                        gone = [o for o in pending if o.closed]
                        pending = [o for o in pending if not o.closed]
                        live = [o for o in live if o not in gone]
                        continue
                    del pending[s.index]
    except _End:
        pass
    except BaseException as exc:
        if _relay_failed(ctx, exc):
            for o in outs:
                o._failure = exc
            if rt.must_reraise(exc):
                raise
    finally:
        for o in outs:
            o.close()
        await src.close_early()


def tee(
    ctx: Context,
    channel: ChannelBase[T] | AsyncIterable[T] | Iterable[T],
    n: int = 2,
    *,
    policy: TeePolicy = "lockstep",
    buffer: int | None = None,
) -> tuple[RelayChannel[T], ...]:
    """Copy every item of ``channel`` to ``n`` output channels, with an explicit policy
    for a slow consumer.

    * ``"lockstep"`` (default, Go's tee): unbuffered outputs; each item reaches every
      output before the next is read, so all consumers advance together at the pace of
      the slowest. Use it when consumers run at similar speeds, or must stay in step.
    * ``"buffer"``: each output buffers up to ``buffer`` items (default 16), so a
      consumer may run that far ahead of the slowest before it is held back. Use it to
      absorb bursts and jitter without losing anything.
    * ``"drop"``: never wait; an output whose ``buffer`` (default 16) is full drops its
      *oldest* item and counts it in ``out.dropped`` (like tokio's broadcast ``Lagged``).
      Use it for live data where fresh beats complete (metrics, UI updates), so a stalled
      consumer can never stall the source or the others.

    A consumer that leaves should close its output: the others then go on without it.
    Cleanup is as for :func:`or_done`: the relay ends with the input, with ``ctx``, or
    when every output is closed, and closes all outputs.

    >>> import asyncio, corral
    >>> async def main():
    ...     ctx = corral.background()
    ...     a, b = corral.tee(ctx, range(3), policy="buffer", buffer=3)
    ...     return [x async for x in a], [x async for x in b]
    >>> asyncio.run(main())
    ([0, 1, 2], [0, 1, 2])
    """
    what = "tee"
    _check_relay_ctx(ctx, what)
    check_int(n, what, "n", 1)
    if policy not in _TEE_POLICIES:
        raise ValueError(f"tee: policy must be one of {_TEE_POLICIES}, got {policy!r}")
    if policy == "lockstep":
        if buffer not in (None, 0):
            raise ValueError("tee: policy='lockstep' has no buffer; use policy='buffer'")
        size = 0
    else:
        size = 16 if buffer is None else check_int(buffer, what, "buffer", 1)
    src = _Pull(channel, what, "channel")
    outs: tuple[RelayChannel[T], ...] = tuple(RelayChannel(size, ctx) for _ in range(n))
    rt.spawn(_tee_body, (ctx, src, outs, policy), what)
    return outs


class _Merge:
    """fan_in's shared state: the inner ctx and how many relays are still running."""

    __slots__ = ("ctx", "live", "lock", "out")

    def __init__(self, ctx: CancelContext, live: int, out: RelayChannel[Any]) -> None:
        self.ctx = ctx
        self.live = live
        self.lock = threading.Lock()
        self.out = out

    def fail(self, exc: BaseException) -> None:
        with self.lock:
            first = self.out._failure is None
            if first:
                self.out._failure = exc
        if first:
            self.ctx.cancel(exc)  # stop the other relays now
            self.out.close()

    def exit(self) -> None:
        with self.lock:
            self.live -= 1
            last = self.live == 0
        if last:
            self.out.close()
            self.ctx.cancel()  # release the inner ctx from its parent


async def _fan_in_body(ctx: Context, src: _Pull, merge: _Merge) -> None:
    pctx = rt.park_ctx(ctx)
    out = merge.out
    try:
        async with rt.cancel_scope(ctx):
            while True:
                ctx.raise_if_cancelled()
                item = await src.next(pctx)
                await out.send(item, ctx=pctx)
    except (_End, ChannelClosed):
        pass
    except BaseException as exc:
        if _relay_failed(ctx, exc):
            merge.fail(exc)
            if rt.must_reraise(exc):
                raise
    finally:
        try:
            await src.close_early()
        finally:
            merge.exit()


def fan_in(
    *inputs: ChannelBase[T] | AsyncIterable[T] | Iterable[T],
    ctx: Context | None = None,
    buffer: int = 0,
) -> RelayChannel[T]:
    """Merge ``inputs`` into one channel that ends when every input has ended.

    Inputs are corral Channels (either flavour) or (async) iterables, such as another
    fan-out's results; each gets its own relay worker. If an input raises, the merge
    stops (the other relays are cancelled) and the result's receivers get that error
    after the items already buffered. ``ctx`` (default: never cancelled) bounds the
    relays' lifetime as in :func:`or_done`: when it is done the result simply ends.

    >>> import asyncio, corral
    >>> async def main():
    ...     merged = corral.fan_in(range(3), range(10, 13))
    ...     return sorted([x async for x in merged])
    >>> asyncio.run(main())
    [0, 1, 2, 10, 11, 12]
    """
    what = "fan_in"
    if ctx is None:
        ctx = background()
    _check_relay_ctx(ctx, what)
    check_int(buffer, what, "buffer", 0)
    pulls = [_Pull(x, what, "inputs") for x in inputs]
    out: RelayChannel[T] = RelayChannel(buffer, ctx)  # the caller's ctx, not the inner one
    if not pulls:
        out.close()
        return out
    inner = with_cancel(ctx)
    merge = _Merge(inner, len(pulls), out)
    for p in pulls:
        rt.spawn(_fan_in_body, (inner, p, merge), what)
    return out
