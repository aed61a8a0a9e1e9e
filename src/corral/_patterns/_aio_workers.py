"""The asyncio flavour's worker loops: ``work`` (one stage's worker) and ``feed``.

These loops serve both flavours: ``_aio_workers``'s are what *task* workers run,
``_threads_workers``'s what *thread* workers run (``_workers`` hands both to the engine).
``Pull`` (read a channel or an iterable one item at a time) is shared with the relays.

``_threads_workers.py`` is generated from ``_aio_workers.py`` by ``scripts/unasync_patterns.py``
(coroutines become functions, awaits go, ``_rt_aio`` becomes ``_rt_threads``, ``_aio_*``
modules become ``_threads_*``, ...): edit the ``_aio_*`` files only, with constructs the
rewrite understands, and put what truly differs between the flavours in ``_rt_aio`` /
``_rt_threads``.
"""

from __future__ import annotations

import time
from typing import Any

from .._core.channel import CLOSED, ChannelState
from .._core.context import Context
from .._core.semaphore import SemaphoreState
from .._errors import ChannelClosed
from .._shells import ChannelBase
from . import _rt_aio as rt
from . import _stage_run
from ._engine import FlowRun
from ._plan import COLLECT, RAISE, SKIP, SKIPPED, Outcome
from ._stage_run import StageRun, WorkerRecord, log_skipped

__all__ = ["InputEnded", "Pull", "feed", "is_failure", "work"]

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
    if not _stage_run.INLINE_FAST_PATHS:  # tests/inlines: every item through the originals
        ibuf, ocap = None, 0
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
                    # inline of corral._core.channel.ChannelState.recv (optionally lockless)
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
                # inline of corral._core.channel.ChannelState.send (optionally lockless)
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
        if is_failure(ctx, exc):
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
    src = Pull(source, run.plan.what, "source")
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
                except InputEnded:
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
        if is_failure(ctx, exc):
            run.fail(exc)
            if rt.must_reraise(exc):
                raise
    finally:
        chan.close()
        rec.t_end = _perf()
        await src.close_early()


def is_failure(ctx: Context, exc: BaseException) -> bool:
    """Whether ``exc`` ending a worker, feeder or relay is a real failure to record, not
    the run's (or relay's) own ``ctx`` being done: the one rule for all of them."""
    return ctx.err is None or not rt.is_cancellation(exc)


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


class InputEnded(Exception):
    """A relay's or feeder's input has ended."""


class Pull:
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
        """The next item; ``InputEnded`` at the end; ``Cancelled`` if ``pctx`` is done meanwhile."""
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
                raise InputEnded
            return r
        try:
            return await self._next()
        except StopAsyncIteration:
            self._done = True
            raise InputEnded from None

    async def close_early(self) -> None:
        """Close a generator we stopped reading before its end (its finally blocks run now)."""
        close = self._close
        if close is not None and not self._done:
            self._close = None
            await close()
